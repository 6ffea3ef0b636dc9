"""Whether, and with how much slack, a scorer may train on batches cut to their rows' length
(``--group-by-length``, :func:`rmcompress.data.pipeline.batch_by_length`).

Contract: a row of ``n`` tokens padded to ``T`` and the same row cut to ``n + s`` tokens (only
padding removed) get the same reward, ``max |r(x) - r(x[:, :n + s])| <= atol + rtol * max |r(x)|``
(``atol = rtol = 1e-4``). ``s`` is the model's *slack*: 0 for masked attention and pooling with
positions counted from the start; ``k - 1`` for a ``valid`` convolution of width ``k`` (its windows
start at every real token). :func:`find_slack` scores up to 64 training rows of as many distinct
lengths as there are, each cut to exactly ``n + s``, the tightest cut a batch can give, for
``s = 0, 1, 2, ...`` (up to ``T / 2``), and returns the first ``s`` that meets the contract. A model
that flattens ``[T, D]`` into a fixed-size Dense, reads a fixed-length input or pools over padding
meets it for no ``s``, and the run stops before training with one line naming the model.
"""
from __future__ import annotations

import numpy as np

from rmcompress._keras import tf
from rmcompress.data.pipeline import EncodedData, all_ids
from rmcompress.errors import UsageError

#: tolerance of the contract (float32 rewards; masked softmax rounds differently at another length)
ATOL, RTOL = 1e-4, 1e-4
#: training rows the check scores
CHECK_ROWS = 64


def row_lengths(ids: np.ndarray) -> np.ndarray:
    """Position of each row's last non-padding id plus one (0 for an empty row)."""
    nonzero = np.asarray(ids) != 0
    return np.where(nonzero.any(axis=1), ids.shape[1] - np.argmax(nonzero[:, ::-1], axis=1), 0)


def sample_rows(ids: np.ndarray, rows: int = CHECK_ROWS) -> np.ndarray:
    """Up to ``rows`` rows shorter than ``T``, of as many distinct lengths as there are, spread
    evenly over them (the shortest and the longest included)."""
    lengths = row_lengths(ids)
    short = np.flatnonzero((lengths > 0) & (lengths < ids.shape[1]))
    distinct = np.unique(lengths[short])
    if not len(distinct):
        return ids[:0]
    chosen = distinct[np.unique(np.linspace(0, len(distinct) - 1, min(rows, len(distinct))).round().astype(int))]
    first = {int(n): int(i) for i, n in reversed(list(zip(short, lengths[short])))}
    return ids[[first[int(n)] for n in chosen]]


def find_slack(scorer, data: EncodedData, rows: int = CHECK_ROWS) -> int:
    """The smallest slack ``s`` of the module docstring; :class:`UsageError` when none up to ``T / 2``
    meets the contract (or the model takes no shorter input at all)."""
    ids = sample_rows(all_ids(data), rows)
    if not len(ids):
        return 0  # every row fills the length: nothing is ever cut
    seq_len = ids.shape[1]
    call = tf.function(lambda x: scorer(x, training=False),
                       input_signature=[tf.TensorSpec([None, None], tf.as_dtype(ids.dtype))])
    try:
        full = np.asarray(call(ids)).reshape(-1)
    except (ValueError, TypeError, tf.errors.InvalidArgumentError) as e:
        raise UsageError(f"--group-by-length: model {scorer.name!r} cannot be called on rows of any length "
                         f"({_first_line(e)}); train without it") from None
    lengths = row_lengths(ids)
    tolerance = ATOL + RTOL * float(np.max(np.abs(full)))
    worst, error = None, None
    for slack in range(0, seq_len // 2 + 1):
        try:
            cut = np.array([np.asarray(call(row[None, :min(n + slack, seq_len)])).reshape(-1)[0]
                            for row, n in zip(ids, lengths)])
        except (ValueError, TypeError, tf.errors.InvalidArgumentError) as e:
            error = e  # e.g. a row shorter than a convolution's window: more slack may do
            continue
        worst = float(np.max(np.abs(cut - full)))
        if worst <= tolerance:
            return slack
    if worst is None:
        raise UsageError(f"--group-by-length: model {scorer.name!r} does not take rows shorter than "
                         f"{seq_len} tokens ({_first_line(error)}); train without it")
    raise UsageError(f"--group-by-length: model {scorer.name!r} scores rows cut short of {seq_len} tokens "
                     f"differently (by up to {worst:.3g} with {seq_len // 2} tokens of padding kept): it "
                     "reads the padding; train without it")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


__all__ = ["find_slack", "row_lengths", "sample_rows"]
