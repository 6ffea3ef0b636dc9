"""``budget``: complexity-aware training to a FLOPs/params budget, then structural shrink.

Delegates to ``rmcompress.training.budget.budget_compress`` (hard-concrete gates on every
prunable group, Lagrange multipliers holding the budget, ``shrink``). With ``distill`` > 0, the texts given to ``compress
--unlabeled`` join the training rows with the distillation term only. It returns a new bundle whose
model is an ordinary, smaller tf_keras model; the pass reports FLOPs and params before and after
(registry counts). ``final_steps`` fine-tunes the finished smaller model that much longer.
``distill`` > 0 trains the gated and the shrunk model to match the source model's rewards as well as
the labels (self-distillation, ``loss = (1 - distill) * task + distill * (s - t)^2``);
``distill_features`` ``b`` > 0 (pointwise) adds ``b * mean_j ((u_j - v_j) / sigma_j)^2`` on the
pooled features (representation distillation, :mod:`rmcompress.training.distill`);
``distill_blocks`` ``c`` > 0 (pointwise; pairs: skipped, the note says so) adds ``c * mean_l h_l``, every
kept block's output (``distill_block_layers``; default the residual stream after each block) matching
the source model's same block through a learned projection (block-wise distillation, same module).
``augment`` ``k`` > 0 (with ``distill``; pointwise: skipped for pairs, the note says so) adds ``k`` word-replacement variants of every training
and unlabeled text of at least ``augment_min_words`` words to the distillation rows: each word is replaced
with probability ``augment_replace`` by one of its 8 nearest whole words in the source model's input
embedding (:mod:`rmcompress.data.augment`); the source model scores them like the unlabeled texts.

``max_epochs`` (default 10) caps the pass (``steps + final_steps``, both cut in proportion) at that
many passes over the training split (and the unlabeled texts it distills on): recipe step
counts are written for SST-2 (2,000 steps of 64 = 3.2 epochs of 40k rows), and on 1,665 HH-RLHF pairs
the same count is 77 epochs, which overfits (the reason pass fine-tuning is capped too,
:mod:`rmcompress.compression.finetune`). The note reports ``steps_requested`` and ``steps`` run.

``method: taylor`` (or ``magnitude``) skips gated training: the model is pruned by unit importance
in ``stages`` rounds, each followed by fine-tuning the smaller model (``rmcompress.structured.importance``);
far cheaper for a large pretrained encoder, where one gated step costs a full forward and backward pass.
``gate_init: magnitude`` (or ``taylor``) keeps gated training but starts the gates ranked by the source
model's unit importance, so the least important units close first; ``finetune_fraction`` (default by
the gate start, :data:`rmcompress.config.choices.GATE_SCHEDULES`: 0.3 uniform, 0.8 ranked) is the share of
``steps`` spent fine-tuning the shrunk model.
"""
from __future__ import annotations

import numpy as np

from rmcompress.compression.finetune import capped_steps
from rmcompress.compression.passbase import Pass, PassResult
from rmcompress.compression.settings import BudgetSettings
from rmcompress.compression.state import CompressState
from rmcompress.data.loaders import PointwiseData
from rmcompress.data.pipeline import encode
from rmcompress.errors import RecipeError
from rmcompress.models.modeldir import RewardModelBundle
from rmcompress.models.structure import count
from rmcompress.training.budget import budget_compress
from rmcompress.training.distill import augmented_texts, concat_encoded


#: the budget pass's default weight learning rate: from scratch / a bridged pretrained encoder (``bert``),
#: whose fine-tuned weights a from-scratch rate would wreck (gates have their own optimizer)
DEFAULT_LEARNING_RATE = {"scratch": 1e-3, "bert": 1e-4}


def augmented_rows(state: CompressState, copies: int, replace: float, min_words: int):
    """Encoded word-replacement variants of the training and unlabeled texts (label-free rows the
    source model scores; :mod:`rmcompress.data.augment`, neighbours from the source model's input
    embedding), kept as ``state.augmented_raw``. Pointwise only (the pass skips it for pairs, and says
    so in its note)."""

    texts = list(state.train_raw.texts) + (list(state.unlabeled_raw.texts) if state.unlabeled_raw is not None else [])
    variants = augmented_texts(state.model, state.tokenizer, texts, copies, p=replace, min_words=min_words,
                               seed=state.seed)
    if not variants:
        raise RecipeError(f"recipe pass 'budget': augment found no text of >= {min_words} words to vary "
                          "(lower augment_min_words)")
    raw = PointwiseData(variants, np.zeros(len(variants), np.float32), "binary", "augmented")
    state.augmented_raw = raw  # a later pass that distills (factorise) trains on them too
    return encode(raw, state.tokenizer)


class BudgetPass(Pass):
    """Train to the budget and shrink (module docstring)."""

    name = "budget"
    Settings = BudgetSettings

    def run(self, state: CompressState, s: BudgetSettings) -> PassResult:
        blocks, blocks_note = s.distill_blocks, None
        if blocks and state.task != "pointwise":
            blocks, blocks_note = 0.0, f"skipped: {state.task} (block distillation is pointwise)"
        unlabeled = state.unlabeled if (s.distill or s.distill_features or blocks) else None
        n_augmented, augment_note = 0, None
        if s.augment and state.task != "pointwise":
            augment_note = f"skipped: {state.task} (a pair's preference does not survive independent word swaps)"
        elif s.augment:
            extra = augmented_rows(state, s.augment, s.augment_replace, s.augment_min_words)
            n_augmented = len(extra)
            unlabeled = extra if unlabeled is None else concat_encoded(unlabeled, extra)
        requested, requested_final = int(s.steps), int(s.final_steps)
        steps, final_steps = requested, requested_final
        if s.max_epochs is not None:
            total = requested + requested_final
            allowed = capped_steps(state, total, s.batch_size, s.max_epochs,
                                   extra_rows=len(unlabeled) if unlabeled is not None else 0)
            if allowed < total:  # both parts shrink in proportion
                final_steps = int(requested_final * allowed / total)
                steps = max(2, allowed - final_steps)
        learning_rate = s.learning_rate
        if learning_rate is None:
            arch = (state.metadata.get("arch") or {}).get("arch") if isinstance(state.metadata, dict) else None
            learning_rate = DEFAULT_LEARNING_RATE["bert" if arch == "bert" else "scratch"]
        before = count(state.model).as_dict()
        bundle = RewardModelBundle(state.model, state.tokenizer, state.metadata)
        new = budget_compress(bundle, state.train, state.val, flops_fraction=s.flops_fraction,
                              params_fraction=s.params_fraction, steps=steps, seed=state.seed,
                              learning_rate=learning_rate, batch_size=s.batch_size,
                              verbose=state.progress.verbose, tensorboard=state.progress.tensorboard,
                              distill_weight=s.distill, method=s.method, stages=s.stages, gate_init=s.gate_init,
                              finetune_fraction=s.finetune_fraction, final_steps=final_steps,
                              unlabeled=unlabeled, distill_features=s.distill_features, width=s.width,
                              distill_blocks=blocks, distill_block_layers=s.distill_block_layers)
        after = count(new.model).as_dict()
        state.model = new.model
        if new.tokenizer is not state.tokenizer and new.tokenizer.vocabulary != state.tokenizer.vocabulary:
            state.reencode(new.tokenizer)
        if new.metadata:
            state.metadata = {**state.metadata, **{k: v for k, v in new.metadata.items() if k == "arch"}}
        note = {"flops_fraction": s.flops_fraction, "params_fraction": s.params_fraction, "method": s.method,
                "gate_init": s.gate_init if s.method == "gates" else None,
                "finetune_fraction": new.metadata.get("complexity", {}).get("finetune_fraction"),
                "n_unlabeled": len(unlabeled) if unlabeled is not None else 0, "n_augmented": n_augmented,
                **({"augment": augment_note} if augment_note else {}),
                "stages": s.stages, "steps": steps, "final_steps": int(final_steps),
                "steps_requested": requested, "final_steps_requested": requested_final,
                "max_epochs": s.max_epochs, "learning_rate": learning_rate, "distill": s.distill,
                "distill_features": s.distill_features, "distill_blocks": blocks,
                **({"distill_blocks_note": blocks_note} if blocks_note else {}),
                "flops_before": before["flops"], "flops_after": after["flops"],
                "params_before": before["params"], "params_after": after["params"],
                "achieved_flops_fraction": after["flops"] / before["flops"] if before["flops"] else None}
        return PassResult(state, note)
