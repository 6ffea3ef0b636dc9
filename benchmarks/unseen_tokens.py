"""``factorise: {unseen_tokens: ...}`` on compressed pretrained encoders: validation and test accuracy,
file size and latency of the same compressions with the vocabulary cut (``split``), the dropped
tokens read as [UNK] (``unk``) or as their nearest kept row (``nearest``).

    python benchmarks/unseen_tokens.py --source OUT/models/minilm --data-dir OUT/data --out UT \\
        --split OUT/models/minilm-pretrained-aggressive-s0 ... --nearest NEAREST-s0 ...

``--split``: ``compress`` output folders of a recipe with ``unseen_tokens: split`` (the default).
From each the script also makes the ``unk`` model the factorise pass makes with the same seed: its
fine-tuning reads only training texts, which hold no dropped token, so their ids, the fine-tuning and
the kept table are those of ``split`` (pinned by
``tests/compression/test_factorise.py::test_unseen_tokens_do_not_change_the_fine_tuning``); the
script adds the pass's remap (:func:`rmcompress.compression.factorise.alias_targets`,
:func:`~rmcompress.compression.factorise.insert_token_remap`) and the full tokenizer, then exports it
with the recipe's last passes (``length: buckets``, ``quantise: dynamic``). The ``split`` model is
re-exported the same way, so the two files differ only in the remap. ``--nearest``: ``compress``
output folders of the recipe with ``unseen_tokens: nearest`` (the pass itself); from each the
script makes the ``split``, ``unk`` and ``nearest`` models of the same seed (the remap removed with
the dropped tokens, sent to [UNK], or kept; rebuilt by the current library) and exports all three
the same way: three files per seed from one compression.
Every file is scored on ``DATA_DIR/val.tsv`` and ``test.tsv`` with ``rmcompress evaluate``; the
results go to ``OUT/results.json``. Latency: ``benchmarks/remeasure_latency.py`` on the files.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

EXPORT_RECIPE = """name: export
passes:
  - length: {mode: buckets}
  - quantise: {mode: dynamic}
export:
  strip_names: true
"""


def cli(*argv: str) -> str:
    r = subprocess.run([sys.executable, "-m", "rmcompress", *argv], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"rmcompress {argv[0]} failed ({r.returncode}): {r.stderr.strip().splitlines()[-1:]}")
    return r.stdout


def with_unk(compressed: Path, source: Path, dest: Path) -> dict:
    """The model directory ``unseen_tokens: unk`` gives for the ``split`` compression ``compressed``."""
    import numpy as np

    from rmcompress.compression.factorise import alias_targets, insert_token_remap, token_embedding_names
    from rmcompress.compression.graph import Graph, rebuild
    from rmcompress.data.tokenizer import RESERVED, Tokenizer
    from rmcompress.models.modeldir import load_model_dir, save_model_dir

    comp, src = load_model_dir(compressed / "model"), load_model_dir(source)
    vocab = src.tokenizer.vocabulary
    old_id = {t: i for i, t in enumerate(vocab)}
    keep = np.array([old_id[t] for t in comp.tokenizer.vocabulary])
    dropped = np.setdiff1d(np.arange(len(vocab)), keep)
    specials = src.tokenizer.special_ids()
    table = alias_targets(np.zeros((len(vocab), 1)), keep, dropped, "unk", specials["unk"],
                          list(range(len(RESERVED))) + list(specials.values()))
    g = Graph(comp.model)
    weights: dict = {}
    insert_token_remap(g, token_embedding_names(comp.model)[0], table, weights)
    model = rebuild(comp.model, g, weights, name=comp.model.name)
    tok = Tokenizer(list(comp.tokenizer.vocabulary) + [vocab[i] for i in dropped], comp.tokenizer.config)
    save_model_dir(dest, model, tok, comp.metadata)
    return {"kept": int(len(keep)), "aliased": int(len(dropped))}


def from_nearest(compressed: Path, mode: str, dest: Path) -> dict:
    """The model directory the pass gives with ``unseen_tokens`` ``mode`` for the same seed as the
    ``nearest`` compression ``compressed``: the same kept table, without the remap and the dropped
    tokens (``split``), with every dropped token sent to the [UNK] row (``unk``), or with the run's
    own targets (``nearest``); the remap is rebuilt by the current
    :func:`~rmcompress.compression.factorise.insert_token_remap` in every case."""
    import numpy as np

    from rmcompress.compression.factorise import insert_token_remap
    from rmcompress.compression.graph import Graph, rebuild
    from rmcompress.data.tokenizer import Tokenizer
    from rmcompress.models.modeldir import load_model_dir, save_model_dir

    comp = load_model_dir(compressed / "model")
    table = comp.model.get_layer("token_remap").get_weights()[0].astype(np.int64)
    moved = np.flatnonzero(table != np.arange(len(table)))
    kept = int(moved[0]) if len(moved) else len(table)
    embedding = Graph(comp.model).consumers_of("token_remap")[0]
    vocab = comp.tokenizer.vocabulary
    g = Graph(comp.model)
    g.bypass("token_remap")
    weights: dict = {}
    tok = comp.tokenizer
    if mode == "split":
        tok = Tokenizer(vocab[:kept], comp.tokenizer.config)
    else:
        if mode == "unk":
            table = np.where(np.arange(len(table)) < kept, table, vocab.index("[UNK]"))
        insert_token_remap(g, embedding, table, weights)
    model = rebuild(comp.model, g, weights, name=comp.model.name)
    save_model_dir(dest, model, tok, comp.metadata)
    return {"kept": kept, "aliased": int(len(table) - kept)}


def export(model_dir: Path, data_dir: Path, dest: Path, recipe: Path) -> None:
    if not (dest / "model.tflite").is_file():
        cli("compress", "--model", str(model_dir), "--recipe", str(recipe), "--data", str(data_dir / "train.tsv"),
            "--val-data", str(data_dir / "val.tsv"), "--out", str(dest), "--latency-runs", "0", "--overwrite")


def score(folder: Path, data_dir: Path) -> dict:
    out = {}
    for split in ("val", "test"):
        r = json.loads(cli("evaluate", "--model", str(folder), "--data", str(data_dir / f"{split}.tsv"),
                           "--latency-runs", "0", "--json"))
        out[split] = r["accuracy"]
    out["size_bytes"] = (folder / "model.tflite").stat().st_size
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--source", type=Path, required=True, help="the fine-tuned model directory")
    p.add_argument("--data-dir", type=Path, required=True, help="holds train.tsv, val.tsv, test.tsv")
    p.add_argument("--split", type=Path, nargs="*", default=[], help="compress outputs with unseen_tokens: split")
    p.add_argument("--nearest", type=Path, nargs="*", default=[], help="compress outputs with unseen_tokens: nearest")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    recipe = args.out / "export.yaml"
    recipe.write_text(EXPORT_RECIPE)
    results = {}
    for k, comp in enumerate(args.split):
        for mode in ("split", "unk"):
            model_dir = comp / "model"
            info = {}
            if mode == "unk":
                model_dir = args.out / f"unk-s{k}-keras"
                if not (model_dir / "model.keras").is_file():
                    info = with_unk(comp, args.source, model_dir)
            dest = args.out / f"{mode}-s{k}"
            export(model_dir, args.data_dir, dest, recipe)
            results[f"{mode}-s{k}"] = {"from": str(comp), **info, **score(dest, args.data_dir)}
            print(f"{mode}-s{k}", json.dumps(results[f"{mode}-s{k}"]), flush=True)
    for k, comp in enumerate(args.nearest):
        for mode in ("nearest", "split", "unk"):
            info = {}
            model_dir = args.out / f"pass-{mode}-s{k}-keras"
            if not (model_dir / "model.keras").is_file():
                info = from_nearest(comp, mode, model_dir)
            dest = args.out / f"pass-{mode}-s{k}"
            export(model_dir, args.data_dir, dest, recipe)
            results[f"pass-{mode}-s{k}"] = {"from": str(comp), **info, **score(dest, args.data_dir)}
            print(f"pass-{mode}-s{k}", json.dumps(results[f"pass-{mode}-s{k}"]), flush=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
