"""Deterministic train/validation splits.

``random``: a seeded permutation; the last ``round(n * fraction)`` indices are validation.
``disjoint``: as ``random``, then every training text that occurs *inside* a validation text is
dropped from training. SST-2's training file holds sentences and their sub-phrases; without this
a random split leaks validation sentences into training through their phrases.
``sentences``: validation rows are drawn only from *root* texts (texts not contained in any other
text: SST-2's full sentences), ``fraction`` of them; then as ``disjoint``. This gives a validation
set of full-length sentences like GLUE's dev set, with none of their phrases in training.
"""
from __future__ import annotations

import numpy as np

from rmcompress.errors import UsageError

SPLIT_MODES = ("random", "disjoint", "sentences")


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


def root_indices(texts: list[str]) -> np.ndarray:
    """Sorted indices of texts not contained in any other (longer or earlier equal) text.

    One pass over a haystack of all texts sorted by decreasing length: a text is a root when its
    first occurrence in the haystack is its own position. About 20 s for SST-2's 67k rows.
    """
    norm = [t.strip().lower() for t in texts]
    order = sorted(range(len(norm)), key=lambda i: (-len(norm[i]), i))
    haystack = "\x00".join(norm[i] for i in order)
    roots, pos = [], 0
    for i in order:
        if haystack.find(norm[i]) == pos:
            roots.append(i)
        pos += len(norm[i]) + 1
    return np.sort(np.asarray(roots, dtype=np.int64))


def split_data(data, fraction: float, seed: int = 0, mode: str = "random"):
    """Split a :class:`PointwiseData`/:class:`PairwiseData` into ``(train, validation)``."""
    if mode not in SPLIT_MODES:
        raise UsageError(f"split mode {mode!r} unknown; allowed: {', '.join(SPLIT_MODES)}")
    texts = data.texts if data.task == "pointwise" else data.chosen
    if mode == "sentences":
        roots = root_indices(texts)
        _, va_pos = split_indices(len(roots), fraction, seed)
        va = roots[va_pos]
        tr = np.setdiff1d(np.arange(len(data)), va)
    else:
        tr, va = split_indices(len(data), fraction, seed)
    if mode in ("disjoint", "sentences") and len(va):
        tr = drop_contained(texts, tr, va)
    return data.subset(tr), data.subset(va)
