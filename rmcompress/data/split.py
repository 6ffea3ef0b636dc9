"""Deterministic train/validation splits.

``random``: a seeded permutation; the last ``round(n * fraction)`` indices are validation.
``disjoint``: as ``random``, then every training text that occurs *inside* a validation text is
dropped from training. SST-2's training file holds sentences and their sub-phrases; without this
a random split leaks validation sentences into training through their phrases.
"""
from __future__ import annotations

import numpy as np

from rmcompress.errors import UsageError

SPLIT_MODES = ("random", "disjoint")


def split_indices(n: int, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return sorted ``(train_idx, val_idx)``; ``0 <= fraction < 1``; at least one training row."""
    if not 0.0 <= fraction < 1.0:
        raise UsageError(f"validation fraction {fraction} out of range; allowed: 0 <= f < 1")
    perm = np.random.RandomState(seed).permutation(n)
    n_val = int(round(n * fraction))
    if fraction > 0 and n_val == 0 and n >= 2:
        n_val = 1
    if n - n_val < 1:
        raise UsageError(f"only {n} examples: too few to keep {fraction:.0%} for validation")
    return np.sort(perm[: n - n_val]), np.sort(perm[n - n_val:])


def drop_contained(texts: list[str], train_idx: np.ndarray, val_idx: np.ndarray) -> np.ndarray:
    """Training indices whose text is not a substring of any validation text."""
    haystack = "\x00".join(texts[i].strip().lower() for i in val_idx)
    return np.asarray([i for i in train_idx if texts[i].strip().lower() not in haystack], dtype=np.int64)


def split_data(data, fraction: float, seed: int = 0, mode: str = "random"):
    """Split a :class:`PointwiseData`/:class:`PairwiseData` into ``(train, validation)``."""
    if mode not in SPLIT_MODES:
        raise UsageError(f"split mode {mode!r} unknown; allowed: {', '.join(SPLIT_MODES)}")
    tr, va = split_indices(len(data), fraction, seed)
    if mode == "disjoint" and len(va):
        texts = data.texts if data.task == "pointwise" else data.chosen
        tr = drop_contained(texts, tr, va)
    return data.subset(tr), data.subset(va)
