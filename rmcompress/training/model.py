"""``RewardTrainingModel``: wraps a scorer (ids -> reward) with the task's loss in ``train_step``.

Data the model takes from ``fit``:
- pointwise: ``(ids [B, T], labels [B])``;
- pairwise: ``{"chosen": ids, "rejected": ids, "margin": [B]}`` with no labels (chosen and
  rejected go through the scorer as one concatenated batch of ``2B``).

Loss of one step, per replica under ``tf.distribute`` (gradients are summed over replicas)::

    loss = sum(per_example_task_loss) / global_batch + sum(auxiliary_losses) / num_replicas

so the total equals the single-device loss. Subclasses (complexity penalty, distillation) add
terms by overriding :meth:`auxiliary_losses`; every term is also reported as a metric.
"""
from __future__ import annotations

from rmcompress._keras import keras, tf
from rmcompress.models.losses import pairwise_loss, pointwise_loss

from rmcompress.config.choices import TASKS
from rmcompress.training.interrupt import StopAtStepBoundary, interrupts_at_step_boundaries


def monitor_metric(task: str, loss: str) -> tuple[str, str]:
    """The validation metric early stopping watches and its mode."""
    if task == "pairwise":
        return "val_pairwise_accuracy", "max"
    if loss == "bce":
        return "val_accuracy", "max"
    return "val_task_loss", "min"


class RewardTrainingModel(keras.Model):
    """Training wrapper around ``scorer`` (see module docstring)."""

    def __init__(self, scorer: keras.Model, task: str = "pointwise", loss: str = "bce",
                 center_coefficient: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if task not in TASKS:
            raise ValueError(f"task {task!r} unknown; allowed: {', '.join(TASKS)}")
        self.scorer = scorer
        self.task = task
        self.loss_name = "pairwise" if task == "pairwise" else loss
        self.center_coefficient = float(center_coefficient)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.task_loss_tracker = keras.metrics.Mean(name="task_loss")
        if task == "pairwise":
            self.quality = [keras.metrics.Mean(name="pairwise_accuracy"), keras.metrics.Mean(name="mean_margin")]
        elif loss == "bce":
            self.quality = [keras.metrics.Mean(name="accuracy")]
        else:
            self.quality = [keras.metrics.Mean(name="mae")]
        self._aux_trackers: dict[str, keras.metrics.Mean] = {}

    # -- forward ----------------------------------------------------------------------------------
    def call(self, inputs, training=False):
        if self.task == "pairwise":
            c, r = inputs["chosen"], inputs["rejected"]
            both = self.scorer(tf.concat([c, r], axis=0), training=training)
            n = tf.shape(c)[0]
            return both[:n], both[n:]
        return self.scorer(inputs, training=training)

    def task_losses(self, data, training: bool):
        """Per-example task losses ``[B]`` and the quality values ``[B]`` of each quality metric."""
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        if self.task == "pairwise":
            rc, rr = self(x, training=training)
            margin = x.get("margin") if isinstance(x, dict) else None
            per_example = pairwise_loss(rc, rr, margin, self.center_coefficient)
            diff = tf.reshape(rc - rr, [-1])
            quality = [tf.cast(diff > 0, tf.float32), diff]
        else:
            r = self(x, training=training)
            per_example = pointwise_loss(self.loss_name, r, y)
            r = tf.reshape(r, [-1])
            yy = tf.reshape(tf.cast(y, tf.float32), [-1])
            if self.loss_name == "bce":
                quality = [tf.cast(tf.equal(r > 0, yy > 0.5), tf.float32)]
            else:
                quality = [tf.abs(r - yy)]
        return per_example, quality

    def add_auxiliary_metric(self, name: str) -> None:
        """Declare a metric (call in ``__init__``, outside any ``tf.function`` or replica context)."""
        if name not in self._aux_trackers:
            self._aux_trackers[name] = keras.metrics.Mean(name=name)

    def auxiliary_losses(self, data, training: bool) -> dict:
        """Extra scalar loss terms (name -> scalar, already weighted). None by default."""
        return {}

    def _step_loss(self, data, training: bool):
        per_example, quality = self.task_losses(data, training)
        task_loss = tf.nn.compute_average_loss(per_example)
        aux = self.auxiliary_losses(data, training)
        total = task_loss
        for value in aux.values():
            total = total + tf.nn.scale_regularization_loss(value)
        return total, per_example, quality, aux

    # -- steps ------------------------------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None, **kwargs):
        """``keras.Model.fit``, with Ctrl-C taking effect at the next step boundary
        (:mod:`rmcompress.training.interrupt`): the first SIGINT ends the ``fit`` with
        ``KeyboardInterrupt`` once the step, and any epoch-end backup, is complete."""

        with interrupts_at_step_boundaries() as pending:
            if pending is not None:
                callbacks = [*(callbacks or []), StopAtStepBoundary(pending)]
            return super().fit(x, y, batch_size, epochs, verbose, callbacks, **kwargs)

    def train_step(self, data):
        with tf.GradientTape() as tape:
            total, per_example, quality, aux = self._step_loss(data, training=True)
        variables = self.trainable_variables
        grads = tape.gradient(total, variables)
        self.apply_gradients(grads, variables)
        return self._update_metrics(per_example, quality, aux)

    def apply_gradients(self, grads, variables):
        """Hook for subclasses that treat some variables differently (e.g. gradient ascent)."""
        self.optimizer.apply_gradients(
            [(g, v) for g, v in zip(grads, variables) if g is not None])

    def test_step(self, data):
        _, per_example, quality, aux = self._step_loss(data, training=False)
        return self._update_metrics(per_example, quality, aux)

    def _update_metrics(self, per_example, quality, aux):
        task_loss = tf.reduce_mean(per_example)
        total = task_loss + tf.add_n(list(aux.values())) if aux else task_loss
        self.loss_tracker.update_state(total)
        self.task_loss_tracker.update_state(task_loss)
        for metric, values in zip(self.quality, quality):
            metric.update_state(values)
        for name, value in aux.items():
            if name not in self._aux_trackers:
                raise ValueError(f"auxiliary loss {name!r} was not declared with add_auxiliary_metric")
            self._aux_trackers[name].update_state(value)
        return {m.name: m.result() for m in self.metrics}

    @property
    def metrics(self):
        return [self.loss_tracker, self.task_loss_tracker, *self.quality, *self._aux_trackers.values()]
