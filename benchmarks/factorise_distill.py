"""How to factorise the token table of a compressed MiniLM: one low-rank basis or two tiers, and which fine-tuning after it.

Runs the ``pretrained-aggressive`` recipe's passes up to (not including) ``factorise`` once -- the
expensive part, the Taylor-pruned, distilled budget pass -- and then, from that same model, the rest
of the recipe once per variant of the ``factorise`` pass (its fine-tuning: label loss only, or
self-distillation from the model before factorisation, :mod:`rmcompress.compression.finetune`; its
rank; ``full_rows``: the most used tokens keep exact rows, :mod:`rmcompress.compression.factorise`). Every variant is exported exactly as ``rmcompress compress`` exports (same code path) and its
TFLite file is scored on the validation sentences of a ``benchmarks/pretrained.py`` output folder:
accuracy, decision agreement with the fine-tuned MiniLM's TFLite file, size and p50 latency; plus the
accuracy on the recipe's internal validation rows (training-file rows).

Usage (the run the README quotes; BENCH is a ``benchmarks/pretrained.py`` output folder holding
``data/{train,val,unlabeled}.tsv``, ``models/minilm`` and ``exports/minilm/model.tflite``)::

    python benchmarks/factorise_distill.py --bench BENCH --out saved_models/factorise_distill

``--snapshot DIR`` starts from the ``before-factorise`` model directory a previous run saved (same
budget model, no 28-minute budget pass); the distilling variants then train on the training and
unlabeled texts only (the budget pass's augmented variants are not in the snapshot).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from common import artifact_scores  # noqa: E402

#: name -> factorise settings replacing the recipe's (``labels-200``: one rank-192 table, then 200 label steps)
VARIANTS = {
    "labels-200": {"steps": 200, "distill": 0.0},
    "labels-600": {"steps": 600, "distill": 0.0},
    "distill-600": {"steps": 600, "distill": 0.9},
    "distill-600-r224": {"steps": 600, "distill": 0.9, "rank": 224},
    "tiers-none": {"steps": 0, "distill": 0.0, "full_rows": 1000, "rank": 176},
    "tiers-labels-200": {"steps": 200, "distill": 0.0, "full_rows": 1000, "rank": 176},
    "tiers-distill-600": {"steps": 600, "distill": 0.9, "full_rows": 1000, "rank": 176},
    "none-rank192": {"steps": 0, "distill": 0.0},
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bench", required=True, help="a benchmarks/pretrained.py output folder")
    p.add_argument("--out", required=True)
    p.add_argument("--recipe", default="pretrained-aggressive")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    p.add_argument("--latency-runs", type=int, default=200)
    p.add_argument("--snapshot", help="start from this before-factorise model directory (module docstring)")
    args = p.parse_args(argv)

    import pandas as pd

    from rmcompress.compression.pipeline import _export, _source_baseline, run_passes
    from rmcompress.compression.recipe import PassSpec, Recipe
    from rmcompress.compression.state import prepare_state
    from rmcompress.fileio import atomic_dir, write_json
    from rmcompress.models.modeldir import load_model_dir, save_model_dir

    bench, out = Path(args.bench), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}; allowed: {', '.join(VARIANTS)}")
    recipe = Recipe.resolve(args.recipe)
    cut = next(i for i, s in enumerate(recipe.passes) if s.name == "factorise")
    val = pd.read_csv(bench / "data" / "val.tsv", sep="\t", quoting=3)
    texts, labels = val.iloc[:, 0].astype(str).tolist(), val.iloc[:, 1].to_numpy()
    teacher = artifact_scores(bench / "exports" / "minilm" / "model.tflite", texts)
    t0 = time.time()
    state = prepare_state(load_model_dir(bench / "models" / "minilm"), bench / "data" / "train.tsv", recipe.data,
                          unlabeled=bench / "data" / "unlabeled.tsv")
    source = _source_baseline(state, args.latency_runs)
    if args.snapshot:
        snap = Path(args.snapshot)
        state.model = load_model_dir(snap).model
        state.notes.append({"pass": "snapshot", "model": str(snap)})
    else:
        state = run_passes(state, recipe.passes[:cut], log)
    shared_seconds = time.time() - t0
    if not args.snapshot:
        snap = save_model_dir(out / "before-factorise", state.model, state.tokenizer, state.metadata, overwrite=True)
    rows = []
    for name in names:
        log(f"variant {name}")
        t = time.time()
        v = copy.copy(state)
        v.model, v.notes = load_model_dir(snap).model, list(state.notes)
        specs = [PassSpec(s.name, dataclasses.replace(s.settings, **VARIANTS[name])) if s.name == "factorise" else s
                 for s in recipe.passes[cut:]]
        v = run_passes(v, specs)
        with atomic_dir(out / name, overwrite=True) as tmp:
            report = _export(v, recipe, tmp, source, args.latency_runs)
            write_json(tmp / "report.json", report)
        s = artifact_scores(out / name / "model.tflite", texts)
        fact = next(n for n in report["passes"] if n["pass"] == "factorise")
        rows.append({"variant": name, **{"full_rows": 0, **VARIANTS[name]}, "rank": fact.get("rank"),
                     "accuracy": float(np.mean((s > 0) == (labels > 0.5))),
                     "agreement": float(np.mean((s > 0) == (teacher > 0))),
                     "mse_vs_teacher": float(np.mean((s - teacher) ** 2)),
                     "internal_val_accuracy": report.get("accuracy"), "size_mb": report["size_bytes"] / 1e6,
                     "p50_ms": report.get("latency_ms_p50"), "source_p50_ms": report.get("source_latency_ms_p50"),
                     "seconds": round(time.time() - t, 1)})
        log(json.dumps(rows[-1]))
        write_json(out / "results.json", {"args": vars(args), "shared_seconds": round(shared_seconds, 1),
                                          "teacher_accuracy": float(np.mean((teacher > 0) == (labels > 0.5))),
                                          "rows": rows})
    table = pd.DataFrame(rows)
    print(f"fine-tuned MiniLM (teacher) on {len(texts)} validation sentences: "
          f"{np.mean((teacher > 0) == (labels > 0.5)):.4f}; passes before factorise: {shared_seconds:.0f}s")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
