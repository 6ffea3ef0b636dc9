"""Whether, and with how much slack, a scorer may train on batches cut to their rows' length
(``--group-by-length``, recipe ``data.group_by_length``; :func:`rmcompress.data.pipeline.batch_by_length`).

Contract: a row of ``n`` tokens padded to ``T`` and the same row cut to ``n + s`` tokens (only
padding removed) get the same reward, ``max |r(x) - r(x[:, :n + s])| <= atol + rtol * max |r(x)|``
over the rows checked (``atol = rtol = 1e-4``; the maximum on the right is the largest reward of
those rows). ``s`` is the model's *slack*: 0 for masked attention and pooling with positions counted
from the start; ``k - 1`` for a ``valid`` convolution of width ``k`` (its windows start at every
real token). :func:`find_slack` builds its rows from up to 8 real training rows, each also truncated
to 8 lengths spread over ``1 .. T - 1`` (so the check does not depend on how short the data's rows
are), cuts each to exactly ``n + s`` tokens, the tightest cut a batch can give, for ``s = 0, 1, 2, ...``
(up to ``min(T / 2, 32)``), and returns the first ``s`` that meets the contract for every model
given (a student and the teacher whose hidden states it matches). A model that flattens ``[T, D]``
into a fixed-size Dense, reads a fixed-length input or pools over padding meets it for no ``s``,
and the run stops before training with one line naming the model. The check runs in float32: the
slack is a property of the graph, not of the compute precision.
"""
from __future__ import annotations

import numpy as np

from rmcompress._keras import tf
from rmcompress.data.pipeline import EncodedData, all_ids
from rmcompress.errors import UsageError
from rmcompress.training.precision import FLOAT32, is_mixed, recast

#: tolerance of the contract (float32 rewards; masked softmax rounds differently at another length)
ATOL, RTOL = 1e-4, 1e-4
#: real rows the check starts from, and the lengths each is truncated to
BASE_ROWS, LENGTHS = 8, 8
#: the largest slack tried
MAX_SLACK = 32


def row_lengths(ids: np.ndarray) -> np.ndarray:
    """Position of each row's last non-padding id plus one (0 for an empty row)."""
    nonzero = np.asarray(ids) != 0
    return np.where(nonzero.any(axis=1), ids.shape[1] - np.argmax(nonzero[:, ::-1], axis=1), 0)


def check_rows(ids: np.ndarray, base: int = BASE_ROWS, lengths: int = LENGTHS) -> np.ndarray:
    """The rows of the check: the ``base`` longest distinct rows of ``ids``, each as it is and
    truncated (the rest set to padding) to ``lengths`` lengths spread over ``1 .. T - 1``."""
    ids = np.asarray(ids)
    seq_len = ids.shape[1]
    full = row_lengths(ids)
    order = np.argsort(-full, kind="stable")
    rows = np.unique(ids[order[: 4 * base]], axis=0)
    rows = rows[np.argsort(-row_lengths(rows), kind="stable")][:base]
    rows = rows[row_lengths(rows) > 0]
    cuts = np.unique(np.linspace(1, max(1, seq_len - 1), lengths).round().astype(int))
    out = [rows]
    for m in cuts:
        t = rows.copy()
        t[:, m:] = 0
        out.append(t)
    out = np.concatenate(out)
    keep = row_lengths(out) < seq_len  # a full row cannot be cut
    return np.unique(out[keep], axis=0)


def find_slack(models, data: EncodedData, what: str = "--group-by-length") -> int:
    """The smallest slack ``s`` of the module docstring for every model of ``models`` (one model or
    a list); :class:`UsageError` naming ``what`` (the setting that asked) and the model when none up
    to ``min(T / 2, 32)`` meets the contract, or the model takes no shorter input at all."""
    models = models if isinstance(models, (list, tuple)) else [models]
    ids = check_rows(all_ids(data))
    if not len(ids):
        return 0
    return max(_slack(m, ids, what) for m in models)


def slack_or_none(model, ids: np.ndarray) -> int | None:
    """:func:`find_slack` of one model on raw ``ids`` rows; None where no slack meets the contract."""
    rows = check_rows(ids)
    if not len(rows):
        return 0
    try:
        return _slack(model, rows, "scoring by length")
    except UsageError:
        return None


def predict_by_length(model, ids: np.ndarray, slack: int, batch_size: int = 512) -> list[np.ndarray]:
    """``model``'s outputs (a list, one array ``[n, ...]`` per output) on ``ids`` ``[n, T]``, scored in
    length-sorted batches of ``batch_size`` rows cut to their longest row plus ``slack`` tokens
    (module docstring); one traced call for every batch length."""
    ids = np.asarray(ids)
    n, seq_len = ids.shape
    lengths = row_lengths(ids)
    order = np.argsort(lengths, kind="stable")
    call = tf.function(lambda x: model(x, training=False),
                       input_signature=[tf.TensorSpec([None, None], tf.as_dtype(ids.dtype))])
    outs: list[np.ndarray] = []
    for start in range(0, n, batch_size):
        rows = order[start:start + batch_size]
        width = min(seq_len, max(1, int(lengths[rows].max()) + slack))
        got = call(ids[rows, :width])
        got = [np.asarray(t) for t in (got if isinstance(got, (list, tuple)) else [got])]
        if not outs:
            outs = [np.empty((n, *t.shape[1:]), t.dtype) for t in got]
        for out, t in zip(outs, got):
            out[rows] = t
    return outs


def _slack(model, ids: np.ndarray, what: str) -> int:
    scorer = recast(model, FLOAT32) if is_mixed(model) else model
    name = model.name
    seq_len = ids.shape[1]
    call = tf.function(lambda x: scorer(x, training=False),
                       input_signature=[tf.TensorSpec([None, None], tf.as_dtype(ids.dtype))])
    try:
        full = np.asarray(call(ids), np.float64).reshape(-1)
    except (ValueError, TypeError, tf.errors.InvalidArgumentError) as e:
        raise UsageError(f"{what}: model {name!r} cannot be called on rows of another length than "
                         f"{seq_len} ({_first_line(e)}); turn {what} off") from None
    lengths = row_lengths(ids)
    tolerance = ATOL + RTOL * float(np.max(np.abs(full)))
    worst, error = None, None
    for slack in range(0, min(seq_len // 2, MAX_SLACK) + 1):
        try:
            cut = np.array([np.asarray(call(row[None, :min(n + slack, seq_len)]), np.float64).reshape(-1)[0]
                            for row, n in zip(ids, lengths)])
        except (ValueError, TypeError, tf.errors.InvalidArgumentError) as e:
            error = e  # e.g. a row shorter than a convolution's window: more slack may do
            continue
        worst = float(np.max(np.abs(cut - full)))
        if worst <= tolerance:
            return slack
    if worst is None:
        raise UsageError(f"{what}: model {name!r} does not take rows shorter than {seq_len} tokens "
                         f"({_first_line(error)}); turn {what} off")
    raise UsageError(f"{what}: model {name!r} scores rows cut short of {seq_len} tokens differently (by up "
                     f"to {worst:.3g} with {min(seq_len // 2, MAX_SLACK)} tokens of padding kept): it reads "
                     f"the padding; turn {what} off")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


__all__ = ["check_rows", "find_slack", "predict_by_length", "row_lengths", "slack_or_none"]
