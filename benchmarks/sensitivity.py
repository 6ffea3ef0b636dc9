"""Sensitivity tables of SST-2 reward models: each layer int8 alone, each prunable group pruned 50% alone.

For every architecture in ``--archs``: ``rmcompress train`` on SST-2's ``train.tsv`` (the default
``auto`` split: validation drawn from full sentences, none of their phrases in training; ``minilm``:
all-MiniLM-L6-v2 bridged with ``--backbone`` and fine-tuned ``--minilm-steps`` batches of 32 at 64
tokens, learning rate 1e-4 with 10% warm-up, the settings of ``benchmarks/pretrained.py``), then
``rmcompress sensitivity`` on the same file (it splits as training did, so every row it scores is
a validation sentence). Models go to ``benchmarks/results/sensitivity/``; writes ``OUT/<arch>/`` (the sensitivity directory: CSV, markdown, PNG,
report.json) and prints each table.

    python benchmarks/sensitivity.py --archs transformer,cnn,minilm --out docs/sensitivity
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from common import RESULTS, SST2, require
from user_models import rmc


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--archs", default="transformer,cnn,minilm")
    p.add_argument("--epochs", default="3")
    p.add_argument("--max-examples", default="1000")
    p.add_argument("--minilm-steps", default="375", help="fine-tuning batches of MiniLM (375 x 32 = 12,000 rows)")
    p.add_argument("--out", default="docs/sensitivity")
    args = p.parse_args(argv)
    data = Path(os.path.relpath(require(SST2)))
    for arch in args.archs.split(","):
        model = Path(os.path.relpath(RESULTS / "sensitivity" / f"{arch}-model"))  # as the table names it
        if arch == "minilm":
            from pretrained import minilm_dir

            how = ["--backbone", str(minilm_dir()), "--seq-len", "64", "--epochs", "1", "--max-steps", args.minilm_steps,
                   "--batch-size", "32", "--learning-rate", "1e-4", "--warmup-fraction", "0.1"]
        else:
            how = ["--arch", arch, "--epochs", args.epochs]
        rmc("train", "--data", str(data), "--task", "pointwise", *how, "--out", str(model), "--quiet", "--overwrite")
        print(rmc("sensitivity", "--model", str(model), "--data", str(data), "--max-examples", args.max_examples,
                  "--out", str(Path(args.out) / arch), "--overwrite"), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
