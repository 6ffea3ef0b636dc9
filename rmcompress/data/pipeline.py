"""Encoded datasets: texts -> token ids -> ``tf.data`` batches in the shape ``fit`` expects.

Pointwise: ``(ids [B, T], labels [B])``. Pairwise: ``{"chosen", "rejected", "margin"}`` (no labels).
Texts are tokenised once up front (numpy), so the input pipeline is cheap and deterministic.
With teacher rewards attached (distillation, ``rmcompress.training.distill``) the inputs also carry
``teacher`` (pointwise: the teacher's reward; pairwise: its margin ``t_c - t_r``) and ``labeled``
(1 = the row has a label, 0 = an unlabeled row scored only by the teacher); pointwise x becomes
``{"ids", "teacher", "labeled"}``.

Grouping by length (``group_by_length``, :func:`batch_by_length`): a row's length ``n`` is the
position of its last non-padding id (id 0 is padding) plus one; a pair's is the longer of its two
texts. Rows go to the bucket ``min(ceil((n + s) / w) * w, T)`` with ``w = ceil(T / 8)`` (at most 8
lengths, so a training step is traced at most 8 times) and ``s`` the model's *slack*, the padding it
needs after the last token (0 for attention and pooling; ``k - 1`` for a ``valid`` convolution of
width ``k``, whose windows start at every real token); each batch holds rows of one bucket, and its id
arrays are cut to ``[B, bucket]``. A length-agnostic model (masked attention and pooling, positions
counted from the start) gives the same rewards on the cut rows
(:mod:`rmcompress.training.lengths` finds ``s`` and checks it); a batch of short rows then costs
what its tokens cost, not ``T``. Order: shuffle, repeat, then group, so the stream is a function of
the seed. Inside :func:`grouped_by_length` every repeated (training) stream that does not say
otherwise is grouped with that slack: how ``compress`` applies a recipe's ``data.group_by_length``
to the training streams of all its passes.
"""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass

import numpy as np

from rmcompress._keras import tf
from rmcompress.data.loaders import PairwiseData, PointwiseData
from rmcompress.data.tokenizer import Tokenizer


@dataclass
class EncodedData:
    """Token-id arrays for one split. Pointwise uses ``ids``/``labels``; pairwise the others."""

    task: str
    ids: np.ndarray | None = None
    labels: np.ndarray | None = None
    chosen: np.ndarray | None = None
    rejected: np.ndarray | None = None
    margin: np.ndarray | None = None
    teacher: np.ndarray | None = None
    labeled: np.ndarray | None = None
    #: ``[n, D]`` the teacher's pooled features, scaled (representation distillation; pointwise)
    teacher_features: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids if self.task == "pointwise" else self.chosen)

    def inputs(self):
        """What ``fit``/``predict`` take as x."""
        if self.task == "pointwise":
            return self.ids
        return {"chosen": self.chosen, "rejected": self.rejected, "margin": self.margin}

    def dataset(self, batch_size: int, shuffle: bool = False, seed: int = 0, repeat: bool = False,
                drop_remainder: bool = False, group_by_length: bool | None = None,
                slack: int | None = None) -> tf.data.Dataset:
        """Batches of the rows (shuffled by ``seed``, repeated, grouped by length with ``slack``: module
        docstring; ``None``: as :func:`grouped_by_length` says for a repeated stream)."""
        group_by_length, slack = grouping(group_by_length, slack, repeat)
        if self.teacher is not None:
            extra = {"teacher": np.asarray(self.teacher, np.float32),
                     "labeled": np.asarray(self.labeled if self.labeled is not None
                                           else np.ones(len(self)), np.float32)}
            if self.teacher_features is not None:
                extra["teacher_features"] = np.asarray(self.teacher_features, np.float32)
            if self.task == "pointwise":
                ds = tf.data.Dataset.from_tensor_slices(({"ids": self.ids, **extra}, self.labels))
            else:
                ds = tf.data.Dataset.from_tensor_slices({**self.inputs(), **extra})
        elif self.task == "pointwise":
            ds = tf.data.Dataset.from_tensor_slices((self.ids, self.labels))
        else:
            ds = tf.data.Dataset.from_tensor_slices(self.inputs())
        if shuffle:
            ds = ds.shuffle(min(len(self), 100_000), seed=seed, reshuffle_each_iteration=True)
        if repeat:
            ds = ds.repeat()
        if group_by_length:
            return batch_by_length(ds, batch_size, drop_remainder, slack=slack).prefetch(tf.data.AUTOTUNE)
        return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


_SLACK: contextvars.ContextVar = contextvars.ContextVar("rmcompress_length_slack", default=None)


@contextlib.contextmanager
def grouped_by_length(slack: int | None):
    """Within: every repeated stream whose ``group_by_length`` is ``None`` is grouped with ``slack``
    (``None``: nothing changes)."""
    token = _SLACK.set(None if slack is None else int(slack))
    try:
        yield
    finally:
        _SLACK.reset(token)


def grouping(group_by_length: bool | None, slack: int | None, repeat: bool) -> tuple[bool, int]:
    """``(group, slack)`` of a stream: as asked, else as :func:`grouped_by_length` says (repeated
    streams only). Grouping asked for outside the context needs its ``slack`` (a model's own,
    :func:`rmcompress.training.lengths.find_slack`)."""
    active = _SLACK.get()
    if group_by_length is None:
        group_by_length = bool(repeat and active is not None)
    if not group_by_length:
        return False, 0
    if slack is None:
        if active is None:
            raise ValueError("group_by_length=True needs the model's slack (rmcompress.training.lengths.find_slack)")
        slack = active
    return True, int(slack)


#: the keys of a row's token-id arrays (pointwise x as a dict; pairwise)
ID_KEYS = ("ids", "chosen", "rejected")


def _id_arrays(element) -> dict:
    """``{key: [T] or [B, T] ids}`` of an element ``(x, y)`` or a dict (pointwise x as an array: ``ids``)."""
    x = element[0] if isinstance(element, tuple) else element
    if isinstance(x, dict):
        return {k: x[k] for k in ID_KEYS if k in x}
    return {"ids": x}


def _with_ids(element, ids: dict):
    """``element`` with its id arrays replaced by ``ids``."""
    if isinstance(element, tuple):
        return (_with_ids(element[0], ids),) + tuple(element[1:])
    if isinstance(element, dict):
        return {**element, **{k: v for k, v in ids.items() if k in element}}
    return ids["ids"]


def length_step(seq_len: int) -> int:
    """The bucket width ``w = ceil(T / 8)`` of the module docstring."""
    return max(1, -(-int(seq_len) // 8))


def bucket_length(n: tf.Tensor, seq_len: int, slack: int = 0) -> tf.Tensor:
    """The bucket ``min(ceil((n + s) / w) * w, T)`` of a row of ``n`` tokens."""
    step = length_step(seq_len)
    return tf.minimum((n + slack + step - 1) // step * step, seq_len)


def batch_by_length(ds: tf.data.Dataset, batch_size: int, drop_remainder: bool = False,
                    seq_len: int | None = None, slack: int = 0) -> tf.data.Dataset:
    """Batches of ``batch_size`` rows of one length bucket, their id arrays cut to the bucket's length
    (module docstring); ``ds`` yields single rows padded to one length ``T`` (``seq_len``; by default
    the rows' static length)."""
    seq_len = int(seq_len or next(iter(_id_arrays(ds.element_spec).values())).shape[-1])

    def bucket(*element):
        """The bucket of a row, or of a batch of rows of one bucket (its longest row's)."""
        ids = _id_arrays(element[0] if len(element) == 1 else element)
        n = tf.reduce_max(tf.stack([tf.reduce_max(tf.where(tf.not_equal(v, 0), tf.range(1, seq_len + 1), 0))
                                    for v in ids.values()]))
        return bucket_length(tf.maximum(n, 1), seq_len, slack)

    def cut(*element):
        element = element[0] if len(element) == 1 else element
        keep = bucket(element)
        return _with_ids(element, {k: v[:, :keep] for k, v in _id_arrays(element).items()})

    ds = ds.group_by_window(lambda *e: tf.cast(bucket(*e), tf.int64),
                            lambda _, rows: rows.batch(batch_size, drop_remainder=drop_remainder),
                            window_size=batch_size)
    return ds.map(cut, num_parallel_calls=tf.data.AUTOTUNE)


def encode(data: PointwiseData | PairwiseData, tokenizer: Tokenizer) -> EncodedData:
    if data.task == "pointwise":
        return EncodedData("pointwise", ids=tokenizer.encode(data.texts),
                           labels=np.asarray(data.labels, np.float32))
    return EncodedData("pairwise", chosen=tokenizer.encode(data.chosen),
                       rejected=tokenizer.encode(data.rejected),
                       margin=np.asarray(data.margin, np.float32))


def all_ids(data: EncodedData) -> np.ndarray:
    """Every token-id row of a split (pairwise: chosen rows then rejected rows)."""
    if data.task == "pointwise":
        return data.ids
    return np.concatenate([data.chosen, data.rejected], axis=0)
