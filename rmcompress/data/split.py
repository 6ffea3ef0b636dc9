"""Deterministic train/validation splits.

``random``: a seeded permutation; the last ``round(n * fraction)`` indices are validation.
``disjoint``: as ``random``, then every training text that occurs *inside* a validation text is
dropped from training. SST-2's training file holds sentences and their sub-phrases; without this
a random split leaks validation sentences into training through their phrases.
``sentences``: validation rows are drawn only from *root* texts (texts not contained in any other
text: SST-2's full sentences), ``fraction`` of them; then as ``disjoint``. This gives a validation
set of full-length sentences like GLUE's dev set, with none of their phrases in training.
``hash``: a row is validation when ``crc32(key) % HASH_BUCKETS < fraction * HASH_BUCKETS``
(:mod:`rmcompress.config.streaming`), the key the UTF-8 text (a pair: chosen, NUL, rejected): the
same rows every run and on every machine, decided row by row, so streamed data is split without
loading it; the share held out is ``fraction`` on average, not exactly.
``auto`` (the default): ``hash`` for streamed data (:mod:`rmcompress.data.shards`); else ``sentences`` when some text of a pointwise file occurs inside another (or
twice), else ``random``; pairs (pairwise files) are split ``random``. A random split of a file whose
texts contain one another puts a validation sentence's phrases (or its copy) in training, and the
validation figure overstates what held-out text gets. The containment check scans the text of
the file once per row, so its cost grows as rows x characters (about 20 s for SST-2's 67k rows x
3.6M characters); above :data:`AUTO_CHECK_WORK` it is skipped, ``random`` is used and
:func:`resolve_mode` says so. With ``sentences``, ``fraction`` is a share of the full texts, not
of the rows. ``random``, ``disjoint`` and ``sentences`` need every row in memory: on streamed
data they are a :class:`UsageError`.
"""
from __future__ import annotations

import functools
import zlib

import numpy as np

from rmcompress.config.choices import IN_MEMORY_SPLIT_MODES, SPLIT_MODES
from rmcompress.config.streaming import HASH_BUCKETS
from rmcompress.errors import DataError, UsageError

#: above this many rows x characters of text, ``auto`` does not look for texts inside others
AUTO_CHECK_WORK = 3e11


def validation_size(n: int, fraction: float) -> int:
    """Rows held out of ``n`` for ``fraction``: ``round(n * fraction)``, at least 1 when
    ``fraction > 0``."""
    n_val = int(round(n * fraction))
    return max(n_val, 1) if fraction > 0 else n_val


def check_split_sizes(n: int, fraction: float, source: str = "", what: str = "rows") -> None:
    """A :class:`DataError` naming ``source`` and the counts unless ``n`` rows leave at least one
    for training and (``fraction > 0``) at least one for validation."""
    if not 0.0 <= fraction < 1.0:
        raise UsageError(f"validation fraction {fraction} out of range; allowed: 0 <= f < 1")
    n_val = validation_size(n, fraction)
    if fraction > 0 and n - n_val < 1:
        raise DataError(f"{source or 'the data'}: {n} usable {what}: too few to hold out {fraction:g} of them for "
                        f"validation ({n_val}) and train on the rest (0); give at least 2, --val-data FILE, "
                        "or --val-fraction 0 (no validation metric)")


def split_indices(n: int, fraction: float, seed: int = 0, source: str = "",
                  what: str = "rows") -> tuple[np.ndarray, np.ndarray]:
    """Return sorted ``(train_idx, val_idx)``; ``0 <= fraction < 1``; at least one row on each side
    when ``fraction > 0`` (:func:`check_split_sizes`)."""
    check_split_sizes(n, fraction, source, what)
    perm = np.random.RandomState(seed).permutation(n)
    n_val = validation_size(n, fraction)
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
    return _roots(tuple(texts))


@functools.lru_cache(maxsize=1)
def _roots(texts: tuple[str, ...]) -> np.ndarray:
    """:func:`root_indices`, cached: ``auto`` and the ``sentences`` split it picks read them once."""
    norm = [t.strip().lower() for t in texts]
    order = sorted(range(len(norm)), key=lambda i: (-len(norm[i]), i))
    haystack = "\x00".join(norm[i] for i in order)
    roots, pos = [], 0
    for i in order:
        if haystack.find(norm[i]) == pos:
            roots.append(i)
        pos += len(norm[i]) + 1
    roots = np.sort(np.asarray(roots, dtype=np.int64))
    roots.setflags(write=False)
    return roots


def pair_key(chosen: str, rejected: str) -> str:
    """The hash key of a pair: its chosen and rejected texts joined by a NUL."""
    return chosen + "\x00" + rejected


def hash_validation(keys, fraction: float) -> np.ndarray:
    """Boolean mask: which of ``keys`` (texts, or :func:`pair_key` of pairs) are validation rows
    under the ``hash`` split of ``fraction`` (module docstring)."""
    cut = fraction * HASH_BUCKETS
    return np.fromiter((zlib.crc32(k.encode("utf-8")) % HASH_BUCKETS < cut for k in keys), bool, len(keys))


def streamed_mode(mode: str, source: str) -> tuple[str, str]:
    """``(mode, note)`` of a split of streamed data: ``hash`` (with a note when ``auto`` chose
    it); a mode that needs the rows in memory is a :class:`UsageError` naming ``source``."""
    if mode not in SPLIT_MODES:
        raise UsageError(f"split mode {mode!r} unknown; allowed: {', '.join(SPLIT_MODES)}")
    if mode in IN_MEMORY_SPLIT_MODES:
        raise UsageError(f"{source}: --split {mode} needs the data in memory, and this data is streamed (a "
                         "directory, a glob or a large file); use --split hash (or auto), or --val-data FILE")
    note = "" if mode == "hash" else (f"{source}: streamed; validation rows chosen by a hash of their text "
                                      "(split hash)")
    return "hash", note


def resolve_mode(data, mode: str) -> tuple[str, str]:
    """``(mode, note)``: the split ``mode`` stands for on ``data`` (``auto`` resolved, module
    docstring) and a one-line note saying why when ``auto`` chose, else ``""``."""
    if mode not in SPLIT_MODES:
        raise UsageError(f"split mode {mode!r} unknown; allowed: {', '.join(SPLIT_MODES)}")
    if getattr(data, "streamed", False):
        return streamed_mode(mode, str(getattr(data, "source", "") or "the data"))
    if mode != "auto":
        return mode, ""
    if data.task != "pointwise":
        return "random", ""
    source = getattr(data, "source", "") or "the data"
    chars = sum(len(t) for t in data.texts)
    if len(data) * chars > AUTO_CHECK_WORK:
        return "random", (f"{source}: {len(data):,} rows, {chars:,} characters: too large to check for texts "
                          "inside other texts (split random); if some are, use --split sentences so none of a "
                          "validation text's phrases train")
    roots = root_indices(data.texts)
    inside = len(data) - len(roots)
    if not inside or len(roots) < 2:
        return "random", ""
    return "sentences", (f"{source}: {inside:,} of {len(data):,} texts occur inside another text (phrases "
                         f"or repeats): validation is drawn from the {len(roots):,} full texts and training "
                         "keeps none of their phrases (split sentences; --split random to mix them)")


def split_data(data, fraction: float, seed: int = 0, mode: str = "auto"):
    """Split a :class:`PointwiseData`/:class:`PairwiseData` into ``(train, validation)``."""
    if not callable(getattr(data, "subset", None)) or getattr(data, "task", None) not in ("pointwise", "pairwise"):
        raise UsageError(f"split_data: data is a {type(data).__name__}; pass loaded data "
                         "(load_data(data, task) reads a file, a DataFrame or a datasets.Dataset)")
    if mode not in SPLIT_MODES:
        raise UsageError(f"split mode {mode!r} unknown; allowed: {', '.join(SPLIT_MODES)}")
    mode = resolve_mode(data, mode)[0] if fraction > 0 else "random"
    texts = data.texts if data.task == "pointwise" else data.chosen
    source = getattr(data, "source", "")
    if mode == "hash":
        keys = texts if data.task == "pointwise" else [pair_key(c, r) for c, r in zip(data.chosen, data.rejected)]
        tr, va = _hash_indices(keys, fraction, source)
    elif mode == "sentences":
        roots = root_indices(texts)
        _, va_pos = split_indices(len(roots), fraction, seed, source, "full texts (not inside another text)")
        va = roots[va_pos]
        tr = np.setdiff1d(np.arange(len(data)), va)
    else:
        tr, va = split_indices(len(data), fraction, seed, source)
    if mode in ("disjoint", "sentences") and len(va):
        kept = drop_contained(texts, tr, va)
        if not len(kept):
            raise DataError(f"{source or 'the data'}: --split {mode} leaves no training rows: all {len(tr)} "
                            f"training texts occur inside the {len(va)} validation texts (repeated texts?); "
                            "use --split random or remove the repeats")
        tr = kept
    return data.subset(tr), data.subset(va)


def _hash_indices(keys: list[str], fraction: float, source: str) -> tuple[np.ndarray, np.ndarray]:
    """``(train_idx, val_idx)`` of the ``hash`` split; a :class:`DataError` when a side is empty."""
    check_split_sizes(len(keys), fraction, source)
    mask = hash_validation(keys, fraction)
    va, tr = np.flatnonzero(mask), np.flatnonzero(~mask)
    if fraction > 0 and (not len(va) or not len(tr)):
        raise DataError(f"{source or 'the data'}: --split hash puts {len(va)} of {len(keys)} rows in validation "
                        f"at fraction {fraction:g}; give more rows, --split random or --val-data FILE")
    return tr, va
