"""Keras callbacks for complexity-aware training (add them to ``fit``; ``train()`` does). Each reads
the model's :class:`~rmcompress.training.complexity_model.ComplexityTerm`
(:func:`~rmcompress.training.complexity_model.complexity_term`), so they work on any model that
carries one (``ComplexityAwareModel`` around any supported model, or a ``RewardTrainingModel`` with
the term); on a model without one, ``fit`` stops at ``on_train_begin`` with a ``UsageError``.

- :class:`BudgetController`: holds each budget's target at ``start`` (1.0 = dense) for
  ``delay_steps``, moves it linearly to the budget over ``warmup_steps`` steps, then holds it (the Lagrange multipliers
  of the complexity term pull the expected cost onto the moving target).
- :class:`ComplexityLogger`: every ``every`` steps and at each epoch end, a row of the Keras logs
  plus the model's complexity state (expected and deterministic FLOPs/params, gaps, multipliers)
  to a CSV file and/or TensorBoard scalars (``complexity/<name>``); rows are also kept in ``rows``.
  A column has the unit of the Keras metric of the same name (counts, or ``*_fraction`` of the
  dense model: :mod:`rmcompress.training.complexity_model`); where the state and the logs share a
  name the row holds the state's value at that step (the logs hold the epoch's running mean).
- :class:`BudgetEarlyStopping`: early stopping that ignores epochs whose deterministic
  (shrunk) model is over budget: they are never "best", do not use up patience, and training
  never stops before the budget is met; the best in-budget weights are restored at the end.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rmcompress._keras import keras, tf
from rmcompress.errors import UsageError
from rmcompress.fileio import atomic_write_text
from rmcompress.training.complexity_model import complexity_term


def _scalar_summary(tag: str, value: float, step: int) -> None:
    """A TensorBoard scalar written with core TF only (``tf.summary.scalar`` needs the tensorboard
    package): the same event record, tagged for TensorBoard's scalars plugin."""
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    tf.summary.write(tag, tf.constant(float(value), tf.float32), step=step, metadata=metadata)


def _step(model) -> int:
    return int(model.optimizer.iterations.numpy())


class _ComplexityCallback(keras.callbacks.Callback):
    """A callback that reads the model's complexity term (``self.term``); a model without one is
    a ``UsageError`` when training begins."""

    @property
    def term(self):
        """The model's complexity term; a ``UsageError`` when it has none."""
        return self._require_term()

    def _require_term(self):
        term = complexity_term(self.model)
        if term is None:
            model = getattr(self.model, "name", type(self.model).__name__)
            raise UsageError(f"{type(self).__name__} needs a model with a complexity term, and model {model!r} has "
                             "none: wrap the model in rmcompress.ComplexityAwareModel or add a ComplexityTerm "
                             "(RewardTrainingModel(scorer, terms=[ComplexityTerm(...)]))")
        return term

    def on_train_begin(self, logs=None):
        self._require_term()


class BudgetController(_ComplexityCallback):
    """Budget targets: ``start`` for the first ``delay_steps`` steps, then linearly to the budget
    over ``warmup_steps`` steps, then the budget."""

    def __init__(self, warmup_steps: int, start: float = 1.0, delay_steps: int = 0):
        super().__init__()
        self.warmup_steps = max(0, int(warmup_steps))
        self.delay_steps = max(0, int(delay_steps))
        self.start = float(start)

    def target(self, step: int, budget: float) -> float:
        step = step - self.delay_steps
        if step < 0:
            return self.start
        if self.warmup_steps == 0:
            return float(budget)
        t = min(1.0, step / self.warmup_steps)
        return self.start + (float(budget) - self.start) * t

    def _update(self):
        step = _step(self.model)
        for kind, var in self.term.targets.items():
            var.assign(self.target(step, self.term.budgets[kind]))

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._update()

    def on_train_batch_begin(self, batch, logs=None):
        self._update()


class ComplexityLogger(_ComplexityCallback):
    """Log the complexity state to ``csv_path`` and/or ``tensorboard_dir`` (see module docstring)."""

    def __init__(self, csv_path=None, tensorboard_dir=None, every: int = 10):
        super().__init__()
        self.csv_path = Path(csv_path) if csv_path else None
        self.tensorboard_dir = str(tensorboard_dir) if tensorboard_dir else None
        self.every = max(1, int(every))
        self.rows: list[dict] = []
        self._writer = None
        self._epoch = 0

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.tensorboard_dir and self._writer is None:
            self._writer = tf.summary.create_file_writer(self.tensorboard_dir)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def _row(self, kind: str, logs) -> dict:
        row = {"kind": kind, "epoch": self._epoch, "step": _step(self.model)}
        for k, v in (logs or {}).items():
            try:
                row[k] = float(np.asarray(v))
            except (TypeError, ValueError):
                continue
        row.update(self.term.complexity_state())
        self.rows.append(row)
        if self._writer is not None:
            with self._writer.as_default(step=row["step"]):
                prefix = "complexity_epoch" if kind == "epoch" else "complexity"
                for k, v in row.items():
                    if k not in ("kind", "epoch", "step"):
                        _scalar_summary(f"{prefix}/{k}", v, row["step"])
            self._writer.flush()
        return row

    def on_train_batch_end(self, batch, logs=None):
        if (_step(self.model)) % self.every == 0:
            self._row("step", logs)

    def on_epoch_end(self, epoch, logs=None):
        self._row("epoch", logs)
        self.write()

    def on_train_end(self, logs=None):
        self.write()
        if self._writer is not None:  # the event file is complete when fit returns
            self._writer.close()
            self._writer = None

    def write(self, path=None):
        """Write every row so far to ``path`` (default ``csv_path``) as CSV."""
        path = Path(path) if path else self.csv_path
        if path is None or not self.rows:
            return
        import pandas as pd


        atomic_write_text(path, pd.DataFrame(self.rows).to_csv(index=False))


class BudgetEarlyStopping(_ComplexityCallback):
    """Early stopping on ``monitor`` that only counts epochs whose shrunk model meets the budget."""

    def __init__(self, monitor: str = "val_loss", mode: str = "min", patience: int = 2,
                 min_delta: float = 0.0, restore_best_weights: bool = True, tolerance: float = 0.02):
        super().__init__()
        if mode not in ("min", "max"):
            raise ValueError(f"mode {mode!r} must be min or max")
        self.monitor, self.mode, self.patience = monitor, mode, int(patience)
        self.min_delta, self.restore_best_weights = float(min_delta), bool(restore_best_weights)
        self.tolerance = float(tolerance)
        self.best = None
        self.best_epoch = None
        self.best_weights = None
        self.wait = 0
        self.stopped_epoch = None

    def _better(self, value) -> bool:
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not self.term.budget_met(self.tolerance):
            return
        value = logs.get(self.monitor)
        if value is None:
            return
        value = float(value)
        if self._better(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)
