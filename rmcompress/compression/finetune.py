"""Fine-tuning steps inside passes (pruning, clustering, QAT): the task loss of the model's own task.

The passes' adapter of the one training loop (:func:`rmcompress.training.finetune.finetune`,
same losses as training) with Adam at a small constant
learning rate, ``steps`` batches from the training split (shuffled, seeded, repeated), and any
callbacks a pass needs (``UpdatePruningStep``, ...), showing and logging ``state.progress``. Returns
the per-step history.

``distill`` ``a`` > 0 with ``data`` from :func:`self_distillation_rows`: the loss is
``(1 - a) * task + a * (s - t)^2`` over those rows (``t``: the reward -- pairwise, the margin -- of the
model the pass started from; unlabeled and augmented rows carry the second term only), so the
fine-tuning repairs what the pass changed instead of re-fitting the labels alone.

:func:`capped_steps`: a pass never fine-tunes for more than :data:`MAX_EPOCHS_PER_PASS` passes over
the training split -- recipe step counts are written for a dataset the size of SST-2; on a small one
(1,665 HH-RLHF pairs) four passes of a few hundred steps each overfit badly (measured: pairwise
accuracy 0.62 -> 0.52 with the training loss at 0.05). The cap does not depend on ``steps``, so
every pass that fine-tunes reports ``steps`` (run) and ``steps_requested`` (the recipe's) in its note:
a run that stopped at the cap trains the same at any larger request, which the search uses not to
repeat it at full steps (:func:`rmcompress.compression.search.same_model_at`).
"""
from __future__ import annotations

from rmcompress._keras import keras
from rmcompress.compression.state import CompressState
from rmcompress.data.pipeline import encode
from rmcompress.training.budget import with_teacher_targets
from rmcompress.training.distill import DistillSettings, concat_encoded
from rmcompress.training.finetune import finetune as train_steps
from rmcompress.training.tasks import make_task


MAX_EPOCHS_PER_PASS = 1.0


def capped_steps(state: CompressState, steps: int, batch_size: int,
                 max_epochs: float = MAX_EPOCHS_PER_PASS, extra_rows: int = 0) -> int:
    """``steps``, at most ``max_epochs`` epochs of the training split plus ``extra_rows`` (a pass
    that also trains on unlabeled texts) (and >= 1 if > 0)."""
    import math

    if steps <= 0:
        return 0
    per_epoch = max(1, math.ceil((len(state.train) + int(extra_rows)) / max(1, batch_size)))
    return max(1, min(int(steps), int(max_epochs * per_epoch)))


def finetune(scorer: keras.Model, state: CompressState, steps: int, learning_rate: float,
             batch_size: int, callbacks=(), data=None, distill: float = 0.0) -> dict:
    """Train ``scorer`` in place for ``steps`` batches of ``data`` (default: the training split);
    return ``{metric: [values]}``. ``distill`` > 0: ``data`` carries teacher targets (module docstring).
    The loop is :func:`rmcompress.training.finetune.finetune`."""
    if steps <= 0:
        return {}
    keras.utils.set_random_seed(state.seed)
    data = state.train if data is None else data
    settings = None
    if distill:
        if data.teacher is None:
            raise ValueError("finetune: distill > 0 needs rows with teacher targets (self_distillation_rows)")
        settings = DistillSettings(weight=float(distill))
    ds = data.dataset(batch_size, shuffle=True, seed=state.seed, repeat=True)
    _, history = train_steps(scorer, make_task(state.task, state.loss), ds, int(steps), learning_rate=learning_rate,
                             schedule="constant", distill=settings, callbacks=callbacks,
                             progress=state.progress)
    return history


def extra_raw(state: CompressState) -> list:
    """The label-free texts a distilling pass trains on: ``compress --unlabeled`` and the budget
    pass's word-replacement variants (in that order; absent ones left out)."""
    return [r for r in (state.unlabeled_raw, state.augmented_raw) if r is not None and len(r)]


def self_distillation_rows(state: CompressState):
    """Score the training rows and :func:`extra_raw` with the current model (the teacher of a pass
    that changes it) and return ``reencode(tokenizer) -> EncodedData``: the same rows encoded with
    ``tokenizer`` (a pass may change the vocabulary) carrying those targets; training rows first
    (``labeled = 1``), then the extra rows (``labeled = 0``)."""
    import numpy as np


    raws = extra_raw(state)

    def encoded(tokenizer):
        parts = [encode(r, tokenizer) for r in raws]
        extra = parts[0] if parts else None
        for p in parts[1:]:
            extra = concat_encoded(extra, p)
        return extra

    scored = with_teacher_targets(state.model, encode(state.train_raw, state.tokenizer), encoded(state.tokenizer))

    def reencode(tokenizer):
        new = encode(state.train_raw, tokenizer)
        extra = encoded(tokenizer)
        if extra is not None:
            new = concat_encoded(new, extra)
        if len(new) != len(scored):
            raise ValueError(f"self_distillation_rows: {len(new)} rows re-encoded for {len(scored)} scored")
        new.teacher = np.asarray(scored.teacher, np.float32)
        new.labeled = np.asarray(scored.labeled, np.float32)
        if new.margin is not None and extra is not None:  # pairwise extra rows carry no margin
            new.margin = np.concatenate([new.margin[: len(state.train_raw)],
                                         np.zeros(len(new) - len(state.train_raw), np.float32)])
        return new

    return reencode
