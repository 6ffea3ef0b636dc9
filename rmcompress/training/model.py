"""``RewardTrainingModel``: wraps a scorer (ids -> reward) with its task's loss and any loss terms.

The task object (:mod:`rmcompress.training.tasks`) fixes the batch layout, the per-example task
loss and the quality metrics. Loss terms (:class:`LossTerm`) compose on the same model:

- a *per-example* term rewrites the per-example loss (distillation,
  :class:`rmcompress.training.distill.DistillationTerm`: ``(1 - a) * labeled * l + a * d``);
- a *scalar* term adds a value once per step (the complexity term,
  :class:`rmcompress.training.complexity_model.ComplexityTerm`: a FLOPs/params penalty or the
  Lagrangian of a budget); subclasses may add scalar terms through
  :meth:`RewardTrainingModel.auxiliary_losses` too.

A term may own variables that another optimizer updates (:class:`OptimizerGroup`): the complexity
term's gates use their own Adam and its Lagrange multipliers *ascend* the loss (gradient negated).
Every trainable variable in no group goes to the compiled optimizer; the groups' optimizers are
tracked by the model, so checkpoints and ``train --resume`` keep their state.

Loss of one step, per replica under ``tf.distribute`` (gradients are summed over replicas)::

    loss = sum(per_example_loss) / global_batch + sum(scalar_terms) / num_replicas

so the total equals the single-device loss. Every term is also reported as a metric.
"""
from __future__ import annotations

from dataclasses import dataclass

from rmcompress._keras import keras, tf
from rmcompress.training.tasks import Task, make_task

from rmcompress.config.choices import TASKS
from rmcompress.training.interrupt import StopAtStepBoundary, interrupts_at_step_boundaries


def monitor_metric(task: str, loss: str) -> tuple[str, str]:
    """The validation metric early stopping watches and its mode (the task object's)."""
    return make_task(task, loss).monitor()


@dataclass(frozen=True)
class OptimizerGroup:
    """Variables of a loss term that ``optimizer`` updates instead of the compiled one; ``ascent``:
    their gradient is negated (they climb the loss, e.g. Lagrange multipliers). ``name`` keys the
    optimizer in the model's checkpoint (``model.term_optimizers[name]``)."""

    name: str
    variables: tuple
    optimizer: object
    ascent: bool = False


class LossTerm:
    """One term of the training loss beside the task's (module docstring). Hooks, all optional:

    - :meth:`attach`: called once when the term joins a model (create metrics and variables here,
      variables with ``model.add_weight`` so the model tracks them);
    - :meth:`forward`: replace the scorer call for a batch (``(outputs, extra)``, or None);
    - :meth:`per_example`: ``(per_example_loss, labels for quality)`` from the task's, or None;
    - :meth:`scalars`: ``{name: scalar}`` added once per step (declare each name with
      ``model.add_auxiliary_metric`` in :meth:`attach`);
    - :meth:`optimizer_groups`: variables with their own optimizer (:class:`OptimizerGroup`);
    - :meth:`update_metrics`: update the term's metrics after a step."""

    metrics: list = []

    def attach(self, model) -> None:
        pass

    def forward(self, model, x, training: bool):
        return None

    def per_example(self, model, x, y, value, extra, task_loss):
        return None

    def scalars(self, model, data, training: bool) -> dict:
        return {}

    def optimizer_groups(self, model) -> list:
        return []

    def update_metrics(self, model, per_example, quality, aux) -> None:
        pass


class RewardTrainingModel(keras.Model):
    """Training wrapper around ``scorer`` (see module docstring). ``task``: a task name (with
    ``loss`` and ``center_coefficient``) or a :class:`~rmcompress.training.tasks.Task`."""

    def __init__(self, scorer: keras.Model, task: str | Task = "pointwise", loss: str = "bce",
                 center_coefficient: float = 0.0, terms=(), **kwargs):
        super().__init__(**kwargs)
        if not isinstance(task, Task):
            if task not in TASKS:
                raise ValueError(f"task {task!r} unknown; allowed: {', '.join(TASKS)}")
            task = make_task(task, loss, center_coefficient)
        self.scorer = scorer
        self.task_object = task
        self.task = task.name
        self.loss_name = task.loss
        self.center_coefficient = float(getattr(task, "center_coefficient", center_coefficient))
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.task_loss_tracker = keras.metrics.Mean(name="task_loss")
        self.quality = [keras.metrics.Mean(name=n) for n in task.quality_names]
        self._aux_trackers: dict[str, keras.metrics.Mean] = {}
        self.term_optimizers: dict = {}
        self._terms: list = []
        for term in terms:
            self.add_term(term)

    @property
    def terms(self) -> list:
        """The loss terms beside the task's, in the order they apply."""
        return list(self._terms)

    def add_term(self, term: LossTerm) -> None:
        """Compose ``term`` into the loss (call outside any ``tf.function`` or replica context)."""
        self._terms.append(term)
        term.attach(self)
        for group in term.optimizer_groups(self):
            known = self.term_optimizers.get(group.name)
            if known is not None and known is not group.optimizer:
                raise ValueError(f"two loss terms name an optimizer group {group.name!r}")
            self.term_optimizers[group.name] = group.optimizer

    # -- forward ----------------------------------------------------------------------------------
    def call(self, inputs, training=False):
        return self.task_object.call(self.scorer, inputs, training)

    def task_losses(self, data, training: bool):
        """Per-example losses ``[B]`` (the task's, rewritten by per-example terms) and the quality
        values ``[B]`` of each quality metric."""
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        outputs = extra = None
        for term in self._terms:
            got = term.forward(self, x, training)
            if got is not None:
                outputs, extra = got
                break
        if outputs is None:
            outputs = self(x, training=training)
        task = self.task_object
        per_example = task.per_example_loss(outputs, x, y)
        value = task.value(outputs)
        labels = y
        for term in self._terms:
            got = term.per_example(self, x, y, value, extra, per_example)
            if got is not None:
                per_example, labels = got
        return per_example, task.quality(value, labels)

    def add_auxiliary_metric(self, name: str) -> None:
        """Declare a metric (call in ``__init__``, outside any ``tf.function`` or replica context)."""
        if name not in self._aux_trackers:
            self._aux_trackers[name] = keras.metrics.Mean(name=name)

    def auxiliary_losses(self, data, training: bool) -> dict:
        """Extra scalar loss terms of a subclass (name -> scalar, already weighted). None by default."""
        return {}

    def _step_loss(self, data, training: bool):
        per_example, quality = self.task_losses(data, training)
        task_loss = tf.nn.compute_average_loss(per_example)
        aux = dict(self.auxiliary_losses(data, training))
        for term in self._terms:
            aux.update(term.scalars(self, data, training))
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

    def gradients(self, data):
        """One step's ``(loss, gradients, variables, (per_example, quality, aux))`` on this replica."""
        with tf.GradientTape() as tape:
            total, per_example, quality, aux = self._step_loss(data, training=True)
        variables = self.trainable_variables
        return total, tape.gradient(total, variables), variables, (per_example, quality, aux)

    def train_step(self, data):
        _, grads, variables, (per_example, quality, aux) = self.gradients(data)
        self.apply_gradients(grads, variables)
        return self._update_metrics(per_example, quality, aux)

    def apply_gradients(self, grads, variables):
        """The terms' optimizer groups get their variables' gradients (negated for ``ascent``), in
        the order the terms declare them, after the compiled optimizer has every other variable's."""
        groups = [group for term in self._terms for group in term.optimizer_groups(self)]
        owner = {}
        for i, group in enumerate(groups):
            for v in group.variables:
                owner.setdefault(v.ref(), i)
        main, grouped = [], [[] for _ in groups]
        for g, v in zip(grads, variables):
            if g is None:
                continue
            i = owner.get(v.ref())
            if i is None:
                main.append((g, v))
            else:
                grouped[i].append((-g if groups[i].ascent else g, v))
        if main or not groups:
            self.optimizer.apply_gradients(main)
        for group, pairs in zip(groups, grouped):
            if pairs:
                group.optimizer.apply_gradients(pairs)

    def test_step(self, data):
        _, per_example, quality, aux = self._step_loss(data, training=False)
        return self._update_metrics(per_example, quality, aux)

    def _update_metrics(self, per_example, quality, aux):
        for term in self._terms:
            term.update_metrics(self, per_example, quality, aux)
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
        terms = [m for t in getattr(self, "_terms", []) for m in t.metrics]
        return [self.loss_tracker, self.task_loss_tracker, *self.quality, *self._aux_trackers.values(), *terms]
