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

so the total equals the single-device loss. Every term is also reported as a metric. The losses
are computed from the scorer's outputs cast to float32 (a mixed-precision scorer's are bfloat16,
:mod:`rmcompress.training.precision`).

Keras' ``compile`` is honoured (:meth:`RewardTrainingModel.compile`):

- ``optimizer`` trains every variable that is in no term's optimizer group (the scorer's weights);
  a term's own variables keep their optimizers (the complexity term: gates Adam, multipliers SGD);
- ``loss``, when given, replaces the task's per-example loss by the Keras loss on the task's
  ``(y_true, y_pred)`` (:meth:`rmcompress.training.tasks.Task.keras_targets`; pointwise
  ``loss(y, reward)``, pairwise ``loss(ones, r_c - r_r)``), kept per example
  (:class:`rmcompress.training.tasks.KerasLoss`) so per-example terms still compose; without it
  the task's loss trains;
- ``metrics`` and ``weighted_metrics`` are updated every step with the same ``(y_true, y_pred)``
  (the labels after per-example terms, e.g. the teacher's decision where a row has no label),
  reported under their names in ``fit``'s logs and history, and reset each epoch; a name the
  model already reports (``loss``, ``accuracy``, ...) is refused;
- sample weights (``fit(x, y, sample_weight=...)``, ``class_weight``, or a dataset's third
  element) weight the per-example loss (``sum(w * l) / B``, as Keras' default reduction) and the
  ``weighted_metrics``; the task's quality metrics and ``metrics`` stay unweighted, as in Keras;
- ``loss_weights`` is refused (it weighs several outputs; a reward model has one).
"""
from __future__ import annotations

from dataclasses import dataclass

from rmcompress._keras import keras, tf
from rmcompress.errors import UsageError
from rmcompress.training.tasks import KerasLoss, Task, make_task

from rmcompress.config.choices import TASKS
from rmcompress.training.interrupt import StopAtStepBoundary, interrupts_at_step_boundaries
from rmcompress.training.precision import float32_outputs


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
    ``loss`` and ``center_coefficient``) or a :class:`~rmcompress.training.tasks.Task`; a loss given
    to :meth:`compile` replaces the task's."""

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
        self.keras_loss: KerasLoss | None = None
        self._terms: list = []
        for term in terms:
            self.add_term(term)

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None, weighted_metrics=None,
                **kwargs):
        """``keras.Model.compile``: ``optimizer`` trains the weights (each loss term's own variables
        keep the term's optimizers, e.g. the complexity term's gates and multipliers); ``loss``
        (a Keras loss name, function or ``Loss``) replaces the task's per-example loss;
        ``metrics``/``weighted_metrics`` are reported in ``fit``; ``loss_weights`` is refused. See
        the module docstring for how each sees a batch."""
        if loss_weights is not None:
            raise UsageError("compile(loss_weights=...) weighs the losses of several outputs; a reward model has "
                             "one output: scale the loss itself")
        self.keras_loss = None if loss is None else KerasLoss(loss)
        super().compile(optimizer=optimizer, loss=None, metrics=metrics, weighted_metrics=weighted_metrics, **kwargs)

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
        """Per-example losses ``[B]`` (the task's or the compiled Keras loss, rewritten by
        per-example terms, times the sample weights) and the quality values ``[B]`` of each quality
        metric."""
        per_example, quality, _ = self._task_outputs(data, training)
        return per_example, quality

    def _task_outputs(self, data, training: bool):
        """:meth:`task_losses` and ``(y_true, y_pred, sample_weight)`` for the compiled metrics."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        outputs = extra = None
        for term in self._terms:
            got = term.forward(self, x, training)
            if got is not None:
                outputs, extra = got
                break
        if outputs is None:
            outputs = self(x, training=training)
        outputs, extra = float32_outputs(outputs), float32_outputs(extra)  # bfloat16 under mixed precision
        task = self.task_object
        if self.keras_loss is None:
            per_example = task.per_example_loss(outputs, x, y)
        else:
            per_example = self.keras_loss.per_example(*task.keras_targets(outputs, y))
        value = task.value(outputs)
        labels = y
        for term in self._terms:
            got = term.per_example(self, x, y, value, extra, per_example)
            if got is not None:
                per_example, labels = got
        if sample_weight is not None:
            per_example = per_example * tf.reshape(tf.cast(sample_weight, per_example.dtype), [-1])
        y_true, y_pred = task.keras_targets(outputs, labels)
        return per_example, task.quality(value, labels), (y_true, y_pred, sample_weight)

    def add_auxiliary_metric(self, name: str) -> None:
        """Declare a metric (call in ``__init__``, outside any ``tf.function`` or replica context)."""
        if name not in self._aux_trackers:
            self._aux_trackers[name] = keras.metrics.Mean(name=name)

    def auxiliary_losses(self, data, training: bool) -> dict:
        """Extra scalar loss terms of a subclass (name -> scalar, already weighted). None by default."""
        return {}

    def _step_loss(self, data, training: bool):
        """``(total, per_example, quality, aux, compiled)``: the step's loss on this replica, its
        parts, and ``(y_true, y_pred, sample_weight)`` for the compiled metrics."""
        per_example, quality, compiled = self._task_outputs(data, training)
        task_loss = tf.nn.compute_average_loss(per_example)
        aux = dict(self.auxiliary_losses(data, training))
        for term in self._terms:
            aux.update(term.scalars(self, data, training))
        total = task_loss
        for value in aux.values():
            total = total + tf.nn.scale_regularization_loss(value)
        return total, per_example, quality, aux, compiled

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
        """One step's ``(loss, gradients, variables, (per_example, quality, aux, compiled))`` on
        this replica (see :meth:`_step_loss`)."""
        with tf.GradientTape() as tape:
            total, *parts = self._step_loss(data, training=True)
        variables = self.trainable_variables
        return total, tape.gradient(total, variables), variables, tuple(parts)

    def train_step(self, data):
        _, grads, variables, parts = self.gradients(data)
        self.apply_gradients(grads, variables)
        return self._update_metrics(*parts)

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
        _, *parts = self._step_loss(data, training=False)
        return self._update_metrics(*parts)

    def _update_metrics(self, per_example, quality, aux, compiled=None):
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
        if compiled is not None and self.compiled_metrics is not None:
            self.compiled_metrics.update_state(*compiled)
            own = {m.name for m in self._own_metrics()}
            for metric in self.compiled_metrics.metrics:
                if metric.name in own:
                    raise UsageError(f"compile(metrics=...): the model already reports a metric named {metric.name!r} "
                                     "(its task's or a loss term's); drop yours or give it another name")
        return {m.name: m.result() for m in self.metrics}

    def _own_metrics(self) -> list:
        terms = [m for t in getattr(self, "_terms", []) for m in t.metrics]
        return [self.loss_tracker, self.task_loss_tracker, *self.quality, *self._aux_trackers.values(), *terms]

    @property
    def metrics(self):
        """The model's own metrics (loss, task loss, quality, loss terms') and the compiled ones, so
        that Keras resets them all at each epoch."""
        compiled = getattr(self, "compiled_metrics", None)
        return [*self._own_metrics(), *(compiled.metrics if compiled is not None else [])]
