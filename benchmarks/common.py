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


def _fmt(x: float) -> str:
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.3f}" if abs(x) >= 0.01 or x == 0 else f"{x:.4f}"


def mean_sd(values) -> str:
    """'mean +- sd' (sample sd over seeds); just the value when there is one or no spread."""
    import numpy as np

    v = np.asarray(list(values), float)
    if len(v) == 1 or v.std() == 0:
        return _fmt(v.mean())
    return f"{_fmt(v.mean())} +- {_fmt(v.std(ddof=1))}"


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


def artifact_scores(path, texts: list[str], batch_size: int = 64):
    """Rewards of ``texts`` from any artifact the suite writes (model dir, SavedModel, ``.tflite``),
    tokenised with the tokenizer beside it, scored ``batch_size`` rows at a time."""
    import numpy as np

    from rmcompress.evaluation.artifacts import open_artifact

    art = open_artifact(path)
    ids = art.tokenizer.encode(texts)
    return np.concatenate([np.asarray(art.score(ids[i:i + batch_size])).ravel()
                           for i in range(0, len(ids), batch_size)])


#: the benchmark protocol's split of each task's data (:func:`protocol_splits`): shares and mode
PROTOCOL = {"sst2": {"path": SST2, "kind": "pointwise", "mode": "sentences", "test": 0.15, "val": 0.15},
            "hh": {"path": HH, "kind": "pairwise", "mode": "random", "test": 0.15, "val": 0.15 / 0.85}}


class Protocol:
    """One task's data split once: ``train``, ``val``, ``test`` (loaded data); ``rest`` = what is
    not test (``train`` + ``val``, which a recipe splits back with ``data_settings``)."""

    def __init__(self, task, rest, train, val, test, data_settings):
        self.task, self.rest, self.train, self.val, self.test = task, rest, train, val, test
        self.data_settings = data_settings

    def sizes(self) -> dict:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def protocol_splits(task: str, seed: int = 0, path=None) -> Protocol:
    """Split ``task``'s shared data once into train / validation / test (the rule in
    docs/benchmarks.md, "Protocol").

    SST-2 (``sentences``): test = 15% of the full sentences (texts inside no other text), every
    text contained in a test sentence removed from the rest; validation = 15% of the full sentences
    of the rest, the same way; train = what remains. HH-RLHF harmless (``random``): a seeded
    permutation of the pairs, 15% test, then 15% of all (15/85 of the rest) validation, 70% train.
    ``data_settings`` is the recipe ``data`` section (and search's ``Settings.data``) that splits
    ``rest`` back into exactly ``train`` / ``val``: every choice a recipe or search makes sees
    validation only, and nothing sees test.
    """
    from rmcompress.data.loaders import load_data
    from rmcompress.data.split import split_data

    p = PROTOCOL[task]
    data = load_data(require(Path(path or p["path"])), p["kind"])
    rest, test = split_data(data, p["test"], seed, p["mode"])
    train, val = split_data(rest, p["val"], seed, p["mode"])
    settings = {"val_fraction": p["val"], "seed": seed, "split": p["mode"]}
    return Protocol(task, rest, train, val, test, settings)
