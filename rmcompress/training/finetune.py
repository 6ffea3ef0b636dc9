"""The one loop that trains a reward model for a number of steps: :func:`fit_model` (a training
model on a batch stream) and :func:`finetune` (a scorer, a task and steps), used by ``train()``
(its main fit, and the shrunk model's fine-tuning), ``budget_compress`` and the compression passes.

Optimisers: ``schedule="cosine"``: AdamW (``weight_decay``) with linear warm-up over
``warmup_fraction`` of the steps to ``learning_rate``, then cosine decay to 0
(:func:`warmup_cosine`); ``schedule="constant"``: Adam at ``learning_rate``.

``distill`` (:class:`rmcompress.training.distill.DistillSettings`): the training model gets a
:class:`~rmcompress.training.distill.DistillationTerm`; the batches then carry teacher targets.

Progress (:class:`rmcompress.config.progress.Progress`): every ``fit`` shows Keras' progress at the
run's verbosity and, with a TensorBoard directory, gets Keras' own ``TensorBoard`` callback writing
there (:func:`tensorboard_callback`): every metric of the training model, so the complexity ones
(expected FLOPs/params fractions, budget gaps, multipliers) too, as ``epoch_<name>`` and, about
:data:`TENSORBOARD_POINTS` times per ``fit``, ``batch_<name>`` (Keras' running mean over the epoch so
far) scalars, with the learning rate and steps per second.
"""
from __future__ import annotations

from rmcompress._keras import keras, tf
from rmcompress.config.progress import Progress
from rmcompress.models.structure import infer_arch_config, is_architecture
from rmcompress.models.architectures import build_reward_model
from rmcompress.training.distill import DistillationTerm
from rmcompress.training.model import RewardTrainingModel
from rmcompress.training.tasks import Task

SCHEDULES = ("cosine", "constant")
#: batch-level TensorBoard points per ``fit`` (the write interval is the steps divided by this)
TENSORBOARD_POINTS = 200


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


def tensorboard_callback(log_dir, total_steps: int):
    """Keras' ``TensorBoard`` callback writing to ``log_dir`` (``train/``, ``validation/``) for a
    ``fit`` of ``total_steps`` steps: epoch scalars, and batch scalars every
    ``total_steps / TENSORBOARD_POINTS`` steps (module docstring)."""
    return keras.callbacks.TensorBoard(str(log_dir), update_freq=max(1, int(total_steps) // TENSORBOARD_POINTS),
                                       write_steps_per_second=True)


def fit_model(model: RewardTrainingModel, ds, steps_per_epoch: int, epochs: int = 1, validation_data=None,
              callbacks=(), progress: Progress = Progress()) -> dict:
    """``model.fit`` (compiled) over ``epochs`` x ``steps_per_epoch`` batches of the repeated
    stream ``ds``, showing and logging ``progress`` (module docstring); returns
    ``{metric: [float per epoch]}``."""
    callbacks = list(callbacks)
    if progress.tensorboard is not None:
        callbacks.append(tensorboard_callback(progress.tensorboard, int(steps_per_epoch) * int(epochs)))
    hist = model.fit(ds, validation_data=validation_data, epochs=epochs, steps_per_epoch=int(steps_per_epoch),
                     callbacks=callbacks, verbose=progress.verbose)
    return {k: [float(v) for v in vs] for k, vs in hist.history.items()}


def finetune(scorer: keras.Model, task: Task, ds, steps: int, *, learning_rate: float, schedule: str = "cosine",
             warmup_fraction: float = 0.05, weight_decay: float = 0.01, distill=None, callbacks=(),
             progress: Progress = Progress(), copy: bool = False, strategy: tf.distribute.Strategy | None = None):
    """Train ``scorer`` ``steps`` batches of ``ds`` on ``task``'s loss (plus ``distill``'s term),
    showing and logging ``progress``; returns ``(scorer, history)``. ``copy``: train a copy rebuilt
    under ``strategy`` (a shrunk model leaving the gated run's scope), else ``scorer`` itself in place."""
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        if copy:
            model = (build_reward_model(infer_arch_config(scorer), name=scorer.name) if is_architecture(scorer)
                     else keras.models.clone_model(scorer))
            model.set_weights(scorer.get_weights())
            scorer = model
        wrapper = RewardTrainingModel(scorer, task, terms=[DistillationTerm(distill)] if distill else ())
        wrapper.compile(optimizer=make_optimizer(learning_rate, steps, schedule, warmup_fraction, weight_decay))
    history = fit_model(wrapper, ds, steps, 1, callbacks=callbacks, progress=progress)
    return wrapper.scorer, history
