"""Task objects: what a pointwise or a pairwise reward model trains on and how it is judged.

A task owns the loss choice, the batch layout, the per-example loss, the in-training quality
metrics and the metric early stopping watches:

- :class:`PointwiseTask` (loss ``bce``, ``mse`` or ``mae``): batches ``(ids [B, T], labels [B])``
  (or ``({"ids": ids, ...}, labels)`` when extra columns such as teacher targets ride along); the
  model's value per example is its reward ``r``; quality: ``accuracy`` (``r > 0`` agrees with
  ``y > 0.5``) for ``bce``, else ``mae``.
- :class:`PairwiseTask` (loss ``pairwise``, optional reward centering ``c``): batches
  ``{"chosen": ids, "rejected": ids, "margin": [B]}`` without labels, scored as one concatenated
  batch of ``2B``; the value per example is the margin ``r_c - r_r``; quality:
  ``pairwise_accuracy`` (``r_c > r_r``) and ``mean_margin``.

Losses are :mod:`rmcompress.models.losses`. :func:`make_task` builds one from a task name and the
loss name (``None``: the default for the labels' kind).
"""
from __future__ import annotations

from rmcompress._keras import tf
from rmcompress.config.choices import POINTWISE_LOSSES, TASKS
from rmcompress.errors import UsageError
from rmcompress.models.losses import pairwise_loss, pointwise_loss


class Task:
    """The common interface (module docstring); ``name`` is the task, ``loss`` the loss name."""

    name: str = ""
    loss: str = ""
    #: names of the in-training quality metrics, in the order :meth:`quality` returns them
    quality_names: tuple = ()

    def call(self, scorer, inputs, training: bool):
        """The scorer's outputs for a batch's inputs."""
        raise NotImplementedError

    def value(self, outputs):
        """``[B]``: what distillation and quality compare (reward, or margin)."""
        raise NotImplementedError

    def per_example_loss(self, outputs, x, y):
        """``[B]`` task losses."""
        raise NotImplementedError

    def quality(self, value, y):
        """``[B]`` values of each quality metric (``y``: labels, or None)."""
        raise NotImplementedError

    def teacher_labels(self, y, teacher, has_label):
        """Labels where rows without one take the teacher's decision (for quality metrics)."""
        raise NotImplementedError

    def monitor(self) -> tuple[str, str]:
        """The validation metric early stopping watches and its mode."""
        raise NotImplementedError

    def first_example(self, x):
        """The first example of a batch's inputs (to build a model's variables)."""
        return x[:1]

    def scorer_inputs(self, x):
        """The part of a batch's inputs the scorer reads."""
        return x


class PointwiseTask(Task):
    name = "pointwise"

    def __init__(self, loss: str = "bce"):
        if loss not in POINTWISE_LOSSES:
            raise UsageError(f"--loss {loss!r} unknown; allowed: {', '.join(POINTWISE_LOSSES)}")
        self.loss = loss
        self.quality_names = ("accuracy",) if loss == "bce" else ("mae",)

    def scorer_inputs(self, x):
        return x["ids"] if isinstance(x, dict) else x

    def call(self, scorer, inputs, training: bool):
        return scorer(self.scorer_inputs(inputs), training=training)

    def value(self, outputs):
        return tf.reshape(outputs, [-1])

    def per_example_loss(self, outputs, x, y):
        return pointwise_loss(self.loss, outputs, y)

    def quality(self, value, y):
        yy = tf.reshape(tf.cast(y, tf.float32), [-1])
        if self.loss == "bce":
            return [tf.cast(tf.equal(value > 0, yy > 0.5), tf.float32)]
        return [tf.abs(value - yy)]

    def teacher_labels(self, y, teacher, has_label):
        yy = tf.reshape(tf.cast(y, tf.float32), [-1])
        if self.loss == "bce":
            return tf.where(has_label, yy, tf.cast(teacher > 0, tf.float32))
        return tf.where(has_label, yy, teacher)

    def monitor(self):
        return ("val_accuracy", "max") if self.loss == "bce" else ("val_task_loss", "min")


class PairwiseTask(Task):
    name = "pairwise"
    loss = "pairwise"
    quality_names = ("pairwise_accuracy", "mean_margin")

    def __init__(self, center_coefficient: float = 0.0):
        self.center_coefficient = float(center_coefficient)

    def call(self, scorer, inputs, training: bool):
        c, r = inputs["chosen"], inputs["rejected"]
        both = scorer(tf.concat([c, r], axis=0), training=training)
        n = tf.shape(c)[0]
        return both[:n], both[n:]

    def value(self, outputs):
        rc, rr = outputs
        return tf.reshape(rc - rr, [-1])

    def per_example_loss(self, outputs, x, y):
        rc, rr = outputs
        margin = x.get("margin") if isinstance(x, dict) else None
        return pairwise_loss(rc, rr, margin, self.center_coefficient)

    def quality(self, value, y):
        right = value > 0 if y is None else tf.equal(value > 0, tf.reshape(y, [-1]) > 0.5)
        return [tf.cast(right, tf.float32), value]

    def teacher_labels(self, y, teacher, has_label):
        return tf.where(has_label, tf.ones_like(teacher), tf.cast(teacher > 0, tf.float32))

    def monitor(self):
        return "val_pairwise_accuracy", "max"

    def first_example(self, x):
        return {k: v[:1] for k, v in x.items()}


def make_task(name: str, loss: str | None = None, center_coefficient: float = 0.0,
              label_kind: str | None = None) -> Task:
    """The task object for ``name``; pointwise ``loss`` None: ``bce`` for binary labels (or
    unknown ones), else ``mse``. A pairwise task ignores ``loss``."""
    if name == "pairwise":
        return PairwiseTask(center_coefficient)
    if name != "pointwise":
        raise ValueError(f"task {name!r} unknown; allowed: {', '.join(TASKS)}")
    if loss is None or loss == "pairwise":
        loss = "mse" if label_kind not in (None, "binary") else "bce"
    return PointwiseTask(loss)


__all__ = ["Task", "PointwiseTask", "PairwiseTask", "make_task"]
