"""Benchmark: 4-bit weights (``quantise: {mode: int4}``) against float32 and dynamic-range int8.

For each model width: train the SST-2 transformer (a disjoint validation split that training never
sees), fuse it (as every recipe does), then build four TFLite files of the same fused model with
:func:`rmcompress.compression.quantise.build_tflite`:

- ``float32``;  ``dynamic``: int8 weights, float activations (the ``light`` recipe's precision);
- ``int4``: every fully-connected weight and the token-embedding table in 4 bits, float activations;
- ``mixed``: ``int4`` with ``min_layer_agreement`` (each Keras layer 4-bit alone, scored on 64
  training rows; a layer below the bar keeps int8 weights).

Every row: validation accuracy and decision agreement with float32 (the sign of the reward), raw
and gzip bytes, and LiteRT latency at batch 1, one thread, 64 tokens: the files of one width are
timed interleaved in one process (``--rounds`` rounds of ``--runs`` calls per file, round-robin),
median over rounds; ``vs_dynamic`` is the time relative to the dynamic file. Prints a markdown table
and writes ``OUT/rows.csv``.

    PYTHONPATH=. python benchmarks/int4_weights.py --sst-examples 15000 --epochs 2 --widths 64,256
"""
from __future__ import annotations

import argparse
import gzip
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import SST2, require  # noqa: E402


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def train_model(data, width: int, seed: int, out: Path, args):
    from rmcompress.training.trainer import TrainConfig, train

    cfg = TrainConfig.from_flat(task="pointwise", arch="transformer", width=width, depth=2, heads=4,
                                ffn=2 * width, epochs=args.epochs, seed=seed, split_mode="disjoint", seq_len=64)
    return train(data, cfg, out, overwrite=True, verbose=0)


def files_of(model, state, agreement: float) -> tuple[dict, dict]:
    from rmcompress.compression.quantise import build_tflite

    cal = state.calibration_ids(64)
    files, notes = {}, {}
    for name, mode, extra in (("float32", "none", {}), ("dynamic", "dynamic", {}), ("int4", "int4", {}),
                              ("mixed", "int4", {"min_layer_agreement": agreement, "debug_ids": cal})):
        files[name], notes[name] = build_tflite(model, mode, **extra)
    return files, notes


def interleaved_ms(files: dict, seq_len: int, rounds: int, runs: int) -> dict:
    from rmcompress.evaluation.latency import interleaved_latency

    ids = np.random.RandomState(0).randint(5, 2000, size=(1, seq_len)).astype(np.int32)
    timed = interleaved_latency(list(files.values()), ids, runs=runs * rounds, rounds=rounds)
    return {k: t["latency_ms_p50"] for k, t in zip(files, timed)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sst", default=str(SST2))
    p.add_argument("--sst-examples", type=int, default=15000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--widths", default="64,256")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--agreement", type=float, default=0.99, help="mixed: min_layer_agreement")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "int4_weights"))
    p.add_argument("--reuse", action="store_true", help="use the models a previous run trained in OUT/work")
    args = p.parse_args(argv)

    from rmcompress import _quiet

    _quiet.silence()
    from rmcompress.compression.fuse import fuse
    from rmcompress.compression.state import prepare_state
    from rmcompress.data.loaders import load_data
    from rmcompress.models.modeldir import load_model_dir
    from rmcompress.runtime.int4 import weight_bits
    from rmcompress.runtime.tflite import TFLiteRunner

    data = load_data(require(Path(args.sst)), "pointwise")
    if args.sst_examples and len(data) > args.sst_examples:
        data = data.subset(np.sort(np.random.RandomState(0).choice(len(data), args.sst_examples, replace=False)))
    out = Path(args.out)
    rows = []
    for width in [int(w) for w in args.widths.split(",")]:
        work = out / "work" / f"w{width}"
        if args.reuse and (work / "model.keras").exists():
            bundle = load_model_dir(work)
        else:
            log(f"width {width}: training")
            bundle = train_model(data, width, args.seed, work, args).bundle
        state = prepare_state(bundle, data)
        model, _ = fuse(state.model, state.val_ids(256))
        log(f"width {width}: converting")
        files, notes = files_of(model, state, args.agreement)
        ids, labels = state.val.ids, np.asarray(state.val.labels)
        scores = {k: TFLiteRunner(v).score(ids) for k, v in files.items()}
        log(f"width {width}: timing")
        ms = interleaved_ms(files, ids.shape[1], args.rounds, args.runs)
        for name, flat in files.items():
            s = scores[name]
            bits = weight_bits(flat)
            rows.append({"width": width, "file": name, "accuracy": float(np.mean((s > 0) == (labels > 0.5))),
                         "agreement_vs_float32": float(np.mean((s > 0) == (scores["float32"] > 0))),
                         "size_bytes": len(flat), "size_gzip_bytes": len(gzip.compress(flat, 9, mtime=0)),
                         "latency_ms_p50": ms[name], "vs_dynamic": ms[name] / ms["dynamic"],
                         "int4_weights": sum(1 for b in bits.values() if b == 4),
                         "int8_weights": sum(1 for b in bits.values() if b == 8),
                         "int8_layers": ",".join(notes[name].get("int8_layers", [])),
                         "n_val": len(labels)})
        log(f"width {width}: mixed kept int8 in {notes['mixed'].get('int8_layers')}; "
            f"agreement {notes['mixed'].get('int4_layer_agreement')}")
    df = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "rows.csv", index=False)
    print(df.to_markdown(index=False, floatfmt=".4g"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
