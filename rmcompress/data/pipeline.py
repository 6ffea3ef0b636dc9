"""Encoded datasets: texts -> token ids -> ``tf.data`` batches in the shape ``fit`` expects.

Pointwise: ``(ids [B, T], labels [B])``. Pairwise: ``{"chosen", "rejected", "margin"}`` (no labels).
Texts are tokenised once up front (numpy), so the input pipeline is cheap and deterministic.
With teacher rewards attached (distillation, ``rmcompress.training.distill``) the inputs also carry
``teacher`` (pointwise: the teacher's reward; pairwise: its margin ``t_c - t_r``) and ``labeled``
(1 = the row has a label, 0 = an unlabeled row scored only by the teacher); pointwise x becomes
``{"ids", "teacher", "labeled"}``.
"""
from __future__ import annotations

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
                drop_remainder: bool = False) -> tf.data.Dataset:
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
        return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


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
