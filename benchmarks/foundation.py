"""Foundation figures: each architecture at its default size on SST-2, and the pairwise
model on HH-RLHF against the "shorter dialogue is chosen" rule.

SST-2: validation = 15% of the full sentences in train.tsv (``--split sentences``: texts that are
not part of another text), none of their sub-phrases in training; train on the rest.
HH-RLHF: random 80/20 split of the 1,850 pairs. Each row is a mean +- sd over ``--seeds`` seeds.
Latency: float32 TFLite, LiteRT interpreter, batch 1, one thread, 200 timed runs (p50).

    python benchmarks/foundation.py [--seeds 0 1 2] [--archs transformer cnn bow] [--skip-hh]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from common import HH, RESULTS, SST2, require, summarise


def run_sst2(archs, seeds, epochs):
    from rmcompress.data.loaders import load_data
    from rmcompress.evaluation.latency import measure_latency
    from rmcompress.runtime.tflite import convert
    from rmcompress.training.trainer import TrainConfig, train

    data = load_data(require(SST2), "pointwise")
    rows = []
    for arch in archs:
        for seed in seeds:
            cfg = TrainConfig.from_flat(arch=arch, epochs=epochs, seed=seed, val_fraction=0.15, split_mode="sentences")
            t0 = time.time()
            res = train(data, cfg, None, verbose=0)
            flat = convert(res.bundle.model)
            lat = measure_latency(flat, res.val_data.ids[:256])
            rows.append({"arch": arch, "seed": seed, "val_accuracy": res.report["accuracy"],
                         "n_train": res.report["n_train"], "n_val": res.report["n_examples"],
                         "params": res.report["params"], "flops": res.report["flops"],
                         "tflite_bytes": len(flat), "latency_ms_p50": lat["latency_ms_p50"],
                         "train_seconds": res.report["train_seconds"], "epochs_run": res.report["epochs_run"],
                         "wall_seconds": round(time.time() - t0, 1)})
            print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def shorter_rule(chosen, rejected) -> float:
    c = np.array([len(t) for t in chosen])
    r = np.array([len(t) for t in rejected])
    return float(np.mean(np.where(c == r, 0.5, c < r)))


def run_hh(seeds, epochs):
    from rmcompress.data.loaders import load_data
    from rmcompress.data.split import split_data
    from rmcompress.training.trainer import TrainConfig, train

    data = load_data(require(HH), "pairwise")
    rows = []
    for seed in seeds:
        cfg = TrainConfig.from_flat(task="pairwise", arch="transformer", epochs=epochs, seed=seed, val_fraction=0.2)
        _, val = split_data(data, 0.2, seed)
        res = train(data, cfg, None, verbose=0)
        rows.append({"model": "transformer (pairwise loss)", "seed": seed,
                     "pairwise_accuracy": res.report["pairwise_accuracy"], "n_val": res.report["n_examples"],
                     "params": res.report["params"], "train_seconds": res.report["train_seconds"]})
        rows.append({"model": "rule: shorter dialogue is chosen", "seed": seed,
                     "pairwise_accuracy": shorter_rule(val.chosen, val.rejected), "n_val": len(val)})
        print(rows[-2], rows[-1], flush=True)
    return pd.DataFrame(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--archs", nargs="+", default=["transformer", "cnn", "bow"])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--skip-sst2", action="store_true")
    ap.add_argument("--skip-hh", action="store_true")
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if not args.skip_sst2:
        df = run_sst2(args.archs, args.seeds, args.epochs)
        df.to_csv(RESULTS / "foundation_sst2.csv", index=False)
        s = summarise(df, "arch", ["val_accuracy", "params", "flops", "tflite_bytes", "latency_ms_p50",
                                   "train_seconds", "epochs_run"])
        print("\nSST-2 (validation: 15% of full sentences; defaults; mean +- sd over seeds)")
        print(s.to_markdown(index=False))
    if not args.skip_hh:
        df = run_hh(args.seeds, args.epochs)
        df.to_csv(RESULTS / "foundation_hh.csv", index=False)
        print("\nHH-RLHF harmless (80/20 split; mean +- sd over seeds)")
        print(summarise(df, "model", ["pairwise_accuracy", "n_val", "params", "train_seconds"]).to_markdown(index=False))


if __name__ == "__main__":
    main()
