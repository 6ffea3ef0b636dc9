"""Sensitivity tables of SST-2 reward models: each layer int8 alone, each prunable group pruned 50% alone.

For every architecture in ``--archs``: ``rmcompress train`` on SST-2's ``train.tsv`` (the default
``auto`` split: validation drawn from full sentences, none of their phrases in training), then
``rmcompress sensitivity`` on the same file (it splits as training did, so every row it scores is
a validation sentence). Models go to ``benchmarks/results/sensitivity/``; writes ``OUT/<arch>/`` (the sensitivity directory: CSV, markdown, PNG,
report.json) and prints each table.

    python benchmarks/sensitivity.py --archs transformer,cnn --out docs/sensitivity
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from common import RESULTS, SST2, require
from user_models import rmc


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--archs", default="transformer,cnn")
    p.add_argument("--epochs", default="3")
    p.add_argument("--max-examples", default="1000")
    p.add_argument("--out", default="docs/sensitivity")
    args = p.parse_args(argv)
    data = Path(os.path.relpath(require(SST2)))
    for arch in args.archs.split(","):
        model = Path(os.path.relpath(RESULTS / "sensitivity" / f"{arch}-model"))  # as the table names it
        rmc("train", "--data", str(data), "--task", "pointwise", "--arch", arch, "--epochs", args.epochs,
            "--out", str(model), "--quiet", "--overwrite")
        print(rmc("sensitivity", "--model", str(model), "--data", str(data), "--max-examples", args.max_examples,
                  "--out", str(Path(args.out) / arch), "--overwrite"), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
