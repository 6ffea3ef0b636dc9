"""``length``: export with a dynamic sequence dimension so a short text does not pay for padding.

The reward models mask padding exactly (attention gives padded keys a bounded -30 score, pooling
multiplies by the mask), so scoring a text's ids cut to ``L >= real length`` gives the same reward
as scoring them padded to ``seq_len`` (float: within 1e-5; checked by :func:`check_trim_parity`).
A 'valid' convolution of width ``k`` also reads the ``k - 1`` positions after the last token (zeros
at full length), so for the CNN the cut must be ``L >= real length + k - 1`` (``margin``).

- ``mode: dynamic``: the TFLite input is ``[batch, None]``; an app passes each text at its own
  length (at least :func:`min_length`) and resizes the interpreter per call;
- ``mode: buckets`` (default): the same dynamic file, used with a few fixed lengths chosen from the
  training data: the ``quantiles`` of the real token lengths, rounded up to a multiple of 8, plus
  ``seq_len``. An app keeps one interpreter per bucket (allocated once) and pads a text to the
  smallest bucket that holds it -- no per-call resize.

:func:`latency_at_lengths` measures p50/p90 over the validation texts at their real lengths (each
padded to its bucket, or cut to its length in dynamic mode), next to the p50 at ``seq_len``.

A model whose reward depends on the padding (a user's model without a padding mask: an average
over every position, a recurrent layer reading the padded steps), or that cannot take a free
length (``Flatten``, a recurrent layer, which TFLite runs unrolled over the fixed length), keeps its
fixed length: :func:`fixed_length_reason` says why, checked on the Keras model before anything is
planned, and the recipe's ``length`` pass records that reason instead of a plan.
"""
from __future__ import annotations

import time

import numpy as np

from rmcompress._keras import keras
from rmcompress.compression.graph import Graph, rebuild
from rmcompress.errors import ModelError


def real_lengths(ids: np.ndarray) -> np.ndarray:
    """Tokens up to and including the last non-padding id of each row (padding is at the end)."""
    ids = np.asarray(ids)
    nz = ids != 0
    last = ids.shape[1] - np.argmax(nz[:, ::-1], axis=1)
    return np.where(nz.any(axis=1), last, 0)


def min_length(model: keras.Model) -> int:
    """Shortest input the model accepts: the widest 'valid' convolution kernel (else 1)."""
    k = [l.kernel_size[0] for l in model.layers if isinstance(l, keras.layers.Conv1D) and l.padding == "valid"]
    return max(k + [1])


def needed_lengths(ids: np.ndarray, margin: int, seq_len: int) -> np.ndarray:
    """The shortest cut of each row that scores like the full row: its real length plus ``margin``
    (a 'valid' convolution of width k reads k - 1 padding positions after the last token; see
    :func:`min_length`), at least 1, at most ``seq_len``."""
    return np.clip(real_lengths(ids) + int(margin), 1, int(seq_len))


def choose_buckets(train_ids: np.ndarray, seq_len: int, quantiles=(0.5, 0.9), multiple: int = 8,
                   floor: int = 1, margin: int = 0) -> list[int]:
    """Bucket lengths from the training data (module docstring); always ends with ``seq_len``."""
    lens = needed_lengths(train_ids, margin, seq_len)
    out = set()
    for q in quantiles:
        L = int(np.ceil(np.quantile(lens, q) / multiple) * multiple) if len(lens) else seq_len
        out.add(min(seq_len, max(floor, multiple, L)))
    out.add(int(seq_len))
    return sorted(out)


def bucket_for(length: int, buckets: list[int]) -> int:
    for b in buckets:
        if length <= b:
            return b
    return buckets[-1]


def dynamic_length_model(model: keras.Model, custom_objects: dict | None = None) -> keras.Model:
    """A copy of ``model`` whose token-id input is ``[batch, None]`` (same layers and weights)."""

    g = Graph(model)
    for e in g.entries:
        if e["class_name"] == "InputLayer":
            shape = list(e["config"]["batch_input_shape"])
            e["config"]["batch_input_shape"] = [shape[0], None] + shape[2:]
    return rebuild(model, g, name=model.name, custom_objects=custom_objects)


#: largest reward change allowed when a row is cut to its bucket (float rounding only)
TRIM_TOLERANCE = 1e-5


def fixed_length_reason(model: keras.Model, ids: np.ndarray, buckets: list[int] | None, margin: int) -> str | None:
    """Why ``model`` must keep its fixed sequence length (module docstring), or ``None`` when scoring
    ``ids`` cut to their buckets gives the full-length rewards within :data:`TRIM_TOLERANCE`."""
    rnn = [l.name for l in model.layers if isinstance(l, (keras.layers.RNN, keras.layers.Bidirectional))]
    if rnn:
        return (f"recurrent layer {rnn[0]!r}: TFLite runs it unrolled over the fixed sequence length "
                f"({model.input_shape[1]})")
    try:
        dynamic = dynamic_length_model(model)
    except ModelError as e:
        return f"the model does not take a free sequence length ({e})"
    ids = np.asarray(ids, np.int32)
    if not len(ids):
        return None

    def score(m):
        return lambda x: m.predict(np.asarray(x, np.int32), batch_size=256, verbose=0).reshape(-1)

    try:
        diff = check_trim_parity(score(model), score(dynamic), ids, parity_buckets(buckets, ids.shape[1]), margin)
    except Exception as e:  # a layer that needs the full length at run time (e.g. a fixed Reshape)
        return f"the model does not run at a shorter length ({type(e).__name__}: {str(e).splitlines()[0][:160]})"
    if diff > TRIM_TOLERANCE:
        return (f"the reward depends on the padding: a text cut to its length scores up to {diff:.3g} "
                "differently (no padding mask before a pooling or recurrence?)")
    return None


def parity_buckets(buckets: list[int] | None, seq_len: int) -> list[int]:
    """Widths to check trimming at: the buckets, or (dynamic mode: none) every multiple of 8."""
    if buckets:
        return list(buckets)
    return sorted(set(range(8, seq_len, 8)) | {seq_len})


def trim(ids: np.ndarray, length: int) -> np.ndarray:
    return np.asarray(ids, np.int32)[:, :length]


def check_trim_parity(score_full, score_at, ids: np.ndarray, buckets: list[int], margin: int = 0) -> float:
    """Max |score(row at seq_len) - score(row cut to its bucket)| over ``ids`` (``score_at(ids)``
    scores a batch whose width is the bucket)."""
    full = np.asarray(score_full(ids)).reshape(-1)
    lens = needed_lengths(ids, margin, ids.shape[1])
    worst = 0.0
    for b in buckets:
        rows = np.flatnonzero([bucket_for(max(int(L), 1), buckets) == b for L in lens])
        if len(rows):
            got = np.asarray(score_at(trim(ids[rows], b))).reshape(-1)
            worst = max(worst, float(np.max(np.abs(got - full[rows]))))
    return worst


def latency_at_lengths(model_bytes: bytes, ids: np.ndarray, buckets: list[int] | None, margin: int = 0,
                       runs: int = 200, warmup: int = 20) -> dict:
    """LiteRT latency (batch 1, one thread) over ``ids`` rows at their real lengths.

    ``buckets``: one interpreter per bucket, each row padded to its bucket; ``None``: one
    interpreter resized to each row's own length (``dynamic``; the resize is timed too).
    """
    from ai_edge_litert.interpreter import Interpreter

    ids = np.asarray(ids, np.int32)
    lens = needed_lengths(ids, margin, ids.shape[1])
    if buckets:
        interps = {}
        for b in buckets:
            it = Interpreter(model_content=bytes(model_bytes), num_threads=1)
            inp = it.get_input_details()[0]
            it.resize_tensor_input(inp["index"], [1, b], strict=False)
            it.allocate_tensors()
            interps[b] = (it, inp["index"])
        plan = [(interps[bucket_for(int(L), buckets)], bucket_for(int(L), buckets)) for L in lens]

        def run(i):
            (it, idx), b = plan[i % len(plan)]
            it.set_tensor(idx, ids[i % len(ids)][None, :b])
            it.invoke()
    else:
        it = Interpreter(model_content=bytes(model_bytes), num_threads=1)
        idx = it.get_input_details()[0]["index"]
        current = [None]

        def run(i):
            L = int(lens[i % len(lens)])
            if L != current[0]:
                it.resize_tensor_input(idx, [1, L], strict=False)
                it.allocate_tensors()
                current[0] = L
            it.set_tensor(idx, ids[i % len(ids)][None, :L])
            it.invoke()
    for i in range(warmup):
        run(i)
    times = np.empty(runs)
    for i in range(runs):
        t = time.perf_counter()
        run(i)
        times[i] = time.perf_counter() - t
    out = {"latency_ms_p50_real_length": float(np.percentile(times, 50) * 1e3),
           "latency_ms_p90_real_length": float(np.percentile(times, 90) * 1e3),
           "mean_scored_length": float(np.mean(lens))}
    if buckets:
        counts = {str(b): int(sum(1 for L in lens if bucket_for(int(L), buckets) == b)) for b in buckets}
        out["bucket_counts"] = counts
    return out
