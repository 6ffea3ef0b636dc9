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

A Keras loss or metric (``model.compile(loss=..., metrics=...)``) sees a batch the way plain Keras
would, through :meth:`Task.keras_targets` ``(y_true, y_pred)``:

- pointwise: ``(y, reward)``: the batch's labels and the scorer's output, as ``model.fit`` gives
  them to a compiled loss;
- pairwise: ``(ones, r_c - r_r)``: the margin, with target 1 (chosen preferred; a batch's own
  pair labels when it has them). ``BinaryCrossentropy(from_logits=True)`` then is the
  Bradley-Terry loss ``-log sigmoid(r_c - r_r)`` (the ``margin`` input and reward centering belong
  to the task's own loss and are not applied).

:class:`KerasLoss` turns a Keras loss into a per-example loss ``[B]``: its unreduced value (the
mean over any axes after the batch's), whose batch mean is the loss ``fit`` reports for a plain
Keras model with the same loss (Keras' default ``sum_over_batch_size`` reduction).
"""
from __future__ import annotations

from rmcompress._keras import keras, tf
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

    def keras_targets(self, outputs, y):
        """``(y_true, y_pred)`` a compiled Keras loss or metric reads (module docstring)."""
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

    def keras_targets(self, outputs, y):
        return y, outputs

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

    def keras_targets(self, outputs, y):
        rc, rr = outputs
        margin = rc - rr
        if y is None:
            return tf.ones_like(margin), margin
        return tf.reshape(tf.cast(y, margin.dtype), tf.shape(margin)), margin

    def quality(self, value, y):
        right = value > 0 if y is None else tf.equal(value > 0, tf.reshape(y, [-1]) > 0.5)
        return [tf.cast(right, tf.float32), value]

    def teacher_labels(self, y, teacher, has_label):
        return tf.where(has_label, tf.ones_like(teacher), tf.cast(teacher > 0, tf.float32))

    def monitor(self):
        return "val_pairwise_accuracy", "max"

    def first_example(self, x):
        return {k: v[:1] for k, v in x.items()}


class KerasLoss:
    """A Keras loss (a name, a function ``fn(y_true, y_pred)`` or a ``keras.losses.Loss``) as a
    per-example loss of a task (module docstring). A ``Loss`` with ``reduction="sum"`` is refused:
    the training loss is a mean over the batch."""

    def __init__(self, loss):
        if isinstance(loss, (dict, list, tuple)):
            raise UsageError(f"compile(loss=...) takes one loss for the reward output, not a {type(loss).__name__}")
        try:
            got = keras.losses.get(loss)
        except ValueError as e:
            raise UsageError(f"compile(loss={loss!r}): {e}") from None
        if isinstance(got, keras.losses.Loss):
            if getattr(got, "reduction", None) == "sum":
                raise UsageError(f"compile(loss=...): {type(got).__name__} with reduction='sum' is not supported; "
                                 "the training loss is the mean over the batch (use the default reduction)")
            self._fn = got.call
        elif callable(got):
            self._fn = got
        else:
            raise UsageError(f"compile(loss={loss!r}) is not a loss: give a name, a function or a keras.losses.Loss")
        self.loss = got

    def per_example(self, y_true, y_pred):
        """``[B]``: the unreduced loss, averaged over the axes after the batch's (a loss that
        reduces to a scalar itself gives that scalar for every example). ``y_true`` is matched to
        ``y_pred`` as ``fit`` does: labels ``[B]`` become ``[B, 1]`` beside an output ``[B, 1]``, and
        take the output's dtype when both are floating (or both integer)."""
        y_pred = tf.convert_to_tensor(y_pred)
        y_true = tf.convert_to_tensor(y_true)
        if y_true.shape.rank == 1 and y_pred.shape.rank == 2:
            y_true = tf.expand_dims(y_true, -1)
        if (y_true.dtype.is_floating and y_pred.dtype.is_floating) or (
                y_true.dtype.is_integer and y_pred.dtype.is_integer):
            y_true = tf.cast(y_true, y_pred.dtype)
        values = tf.cast(self._fn(y_true, y_pred), tf.float32)
        if values.shape.rank == 0:
            return tf.fill([tf.shape(y_pred)[0]], values)
        if values.shape.rank == 1:
            return values
        return tf.reduce_mean(tf.reshape(values, [tf.shape(values)[0], -1]), axis=1)


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


__all__ = ["Task", "PointwiseTask", "PairwiseTask", "KerasLoss", "make_task"]
