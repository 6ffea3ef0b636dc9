"""The one loop that trains a reward model for a number of steps: :func:`fit_model` (a training
model on a batch stream) and :func:`finetune` (a scorer, a task and steps), used by ``train()``
(its main fit, and the shrunk model's fine-tuning), ``budget_compress`` and the compression passes.

Optimisers: ``schedule="cosine"``: AdamW (``weight_decay``) with linear warm-up over
``warmup_fraction`` of the steps to ``learning_rate``, then cosine decay to 0
(:func:`warmup_cosine`); ``schedule="constant"``: Adam at ``learning_rate``.

``distill`` (:class:`rmcompress.training.distill.DistillSettings`): the training model gets a
:class:`~rmcompress.training.distill.DistillationTerm`; the batches then carry teacher targets.
"""
from __future__ import annotations

from rmcompress._keras import keras, tf
from rmcompress.models.structure import infer_arch_config, is_architecture
from rmcompress.models.architectures import build_reward_model
from rmcompress.training.distill import DistillationTerm
from rmcompress.training.model import RewardTrainingModel
from rmcompress.training.tasks import Task

SCHEDULES = ("cosine", "constant")


def warmup_cosine(learning_rate: float, total_steps: int, warmup_fraction: float):
    """Linear warm-up to ``learning_rate`` over ``warmup_fraction`` of steps, then cosine to 0."""
    warmup = max(1, int(total_steps * warmup_fraction))
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(1, total_steps - warmup), warmup_target=learning_rate, warmup_steps=warmup)


def make_optimizer(learning_rate: float, total_steps: int, schedule: str = "cosine",
                   warmup_fraction: float = 0.05, weight_decay: float = 0.01):
    """The optimiser of a run of ``total_steps`` (module docstring)."""
    if schedule == "constant":
        return keras.optimizers.Adam(learning_rate=learning_rate)
    if schedule != "cosine":
        raise ValueError(f"schedule {schedule!r} unknown; allowed: {', '.join(SCHEDULES)}")
    return keras.optimizers.AdamW(learning_rate=warmup_cosine(learning_rate, total_steps, warmup_fraction),
                                  weight_decay=weight_decay)


def fit_model(model: RewardTrainingModel, ds, steps_per_epoch: int, epochs: int = 1, validation_data=None,
              callbacks=(), verbose=0) -> dict:
    """``model.fit`` (compiled) over ``epochs`` x ``steps_per_epoch`` batches of the repeated
    stream ``ds``; returns ``{metric: [float per epoch]}``."""
    hist = model.fit(ds, validation_data=validation_data, epochs=epochs, steps_per_epoch=int(steps_per_epoch),
                     callbacks=list(callbacks), verbose=verbose)
    return {k: [float(v) for v in vs] for k, vs in hist.history.items()}


def finetune(scorer: keras.Model, task: Task, ds, steps: int, *, learning_rate: float, schedule: str = "cosine",
             warmup_fraction: float = 0.05, weight_decay: float = 0.01, distill=None, callbacks=(),
             verbose=0, copy: bool = False, strategy: tf.distribute.Strategy | None = None):
    """Train ``scorer`` ``steps`` batches of ``ds`` on ``task``'s loss (plus ``distill``'s term);
    returns ``(scorer, history)``. ``copy``: train a copy rebuilt under ``strategy`` (a shrunk
    model leaving the gated run's scope), else ``scorer`` itself in place."""
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        if copy:
            model = (build_reward_model(infer_arch_config(scorer), name=scorer.name) if is_architecture(scorer)
                     else keras.models.clone_model(scorer))
            model.set_weights(scorer.get_weights())
            scorer = model
        wrapper = RewardTrainingModel(scorer, task, terms=[DistillationTerm(distill)] if distill else ())
        wrapper.compile(optimizer=make_optimizer(learning_rate, steps, schedule, warmup_fraction, weight_decay))
    history = fit_model(wrapper, ds, steps, 1, callbacks=callbacks, verbose=verbose)
    return wrapper.scorer, history
