"""Shared helpers for the benchmark scripts: data paths, seeds, mean +- sd tables."""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
SHARED = (ROOT / ".." / "shared" / "data").resolve()
SST2 = SHARED / "sst2" / "train.tsv"
HH = SHARED / "hh-rlhf-harmless" / "pairs.jsonl.gz"
RESULTS = ROOT / "benchmarks" / "results"


def require(path: Path) -> Path:
    if not path.exists():
        raise SystemExit(f"benchmark needs {path} (the shared data folder beside the project)")
    return path


def mean_sd(values) -> str:
    import numpy as np

    v = np.asarray(list(values), float)
    if len(v) == 1:
        return f"{v[0]:.3f}"
    return f"{v.mean():.3f} +- {v.std(ddof=1):.3f}"


def summarise(df, by, metrics):
    """Group rows by ``by``; each metric as 'mean +- sd' (sd over seeds), plus n."""
    import pandas as pd

    out = []
    for key, g in df.groupby(by, sort=False):
        row = dict(zip(by if isinstance(by, list) else [by], key if isinstance(key, tuple) else [key]))
        row["seeds"] = len(g)
        for m in metrics:
            if m in g:
                row[m] = mean_sd(g[m])
        out.append(row)
    return pd.DataFrame(out)
