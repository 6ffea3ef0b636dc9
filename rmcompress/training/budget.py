"""Complexity-aware compression of a trained model, for other stages and the CLI.

:func:`budget_compress`: a trained model bundle -> a new bundle structurally shrunk to a FLOPs
and/or params budget (gate, train with the budget held by Lagrange multipliers, choose the
deterministic units, shrink, fine-tune; or ``method="taylor"``: prune by unit importance in
stages, fine-tuning between them). Shrinking a gated model directory without training is
:func:`rmcompress.structured.shrink.shrink_model_dir`.

Progress (:class:`rmcompress.config.progress.Progress`): ``verbose`` is Keras' for every ``fit``;
``tensorboard=DIR`` gives each one a TensorBoard run of its own: ``gated/`` (with ``gated/complexity/``,
the complexity logger's values at each step) and ``finetune/``; ``taylor``/``magnitude``:
``stage1/``, ``stage2/``, ... and ``final/``. Files are added to ``DIR``, nothing in it is removed.
"""
from __future__ import annotations

import math

import numpy as np

from rmcompress._keras import keras
from rmcompress.config.choices import GATE_INITS, gate_schedule
from rmcompress.config.progress import Progress
from rmcompress.config.schedule import split_finetune
from rmcompress.data.pipeline import EncodedData, all_ids
from rmcompress.errors import UsageError
from rmcompress.layers.gates import DEFAULT_INIT_LOG_ALPHA
from rmcompress.models.modeldir import RewardModelBundle
from rmcompress.models.structure import count, with_arch
from rmcompress.structured.gating import gated_copy
from rmcompress.structured.importance import set_ranked_log_alpha
from rmcompress.training.complexity_callbacks import BudgetController, ComplexityLogger
from rmcompress.training.complexity_model import ComplexityAwareModel
from rmcompress.training.complexity_training import finish_gated
from rmcompress.training.finetune import finetune, fit_model, make_optimizer
from rmcompress.training.distill import (DistillSettings, DistillationTerm, block_scales, concat_encoded,
                                         feature_scale, teacher_outputs)
from rmcompress.training.model import RewardTrainingModel
from rmcompress.training.scoring import evaluate_encoded
from rmcompress.training.tasks import make_task
from rmcompress.training.taylor import METHODS, importance_prune, unit_scores_by

#: share of the gated steps over which the target moves from 1.0 to the budget
WARMUP_FRACTION = 0.5


def budget_compress(bundle, train_data, val_data, *, flops_fraction=None, params_fraction=None,
                    steps=1000, seed=0, learning_rate=1e-3, batch_size=64, verbose=0, distill_weight=0.0,
                    method="gates", stages=1, importance_batches=32, unlabeled=None, gate_init="uniform",
                    gate_init_spread=None, finetune_fraction=None, final_steps=0, distill_features=0.0,
                    tensorboard=None, width=False, distill_blocks=0.0, distill_block_layers=None):
    """Gate bundle.model's prunable groups (starting from its trained weights), train with the
    budget held by Lagrange multipliers, shrink, and return a new RewardModelBundle (same
    tokenizer, metadata updated with dense/achieved flops+params).

    ``steps`` in all: ``(1 - finetune_fraction)`` of them gated (``None``: the gate start's default,
    :data:`rmcompress.config.choices.GATE_SCHEDULES`: 0.3 for uniform gates, 0.8 for ranked ones) (the target moves from 1.0 to the
    budget over the first ``WARMUP_FRACTION`` of those; at least one), the rest fine-tuning the shrunk model.
    ``final_steps``: more fine-tuning of the finished (shrunk) model on top of ``steps``, distilled
    like the rest (``gates``: added to the shrunk model's fine-tuning; taylor/magnitude: after the
    last stage, with a learning-rate schedule of its own). Adapting at the final size is where a
    pruned model recovers most, and its steps are the cheapest.
    The returned bundle's ``report`` holds the validation quality, ``flops``/``params`` (exact,
    shrunk), ``dense_flops``/``dense_params``, the budgets and ``shrink_max_abs_diff``;
    ``metadata["complexity"]`` the same numbers and ``metadata["arch"]`` the shrunk architecture.

    ``distill_weight`` ``a`` > 0: self-distillation from ``bundle.model`` (the teacher, scored once on
    the training ids; pairwise: its margin), gated and fine-tuning steps alike, per example
    ``(1 - a) * task_loss + a * (student - teacher)^2`` (``rmcompress.training.distill``);
    ``unlabeled`` (EncodedData) rows are scored by the teacher too and join with the second term only.
    ``distill_features`` ``b`` > 0 (pointwise): the pooled features match the source model's too,
    ``+ b * mean_j ((u_j - v_j) / sigma_j)^2`` (representation distillation; the shrunk model keeps
    the source's width, so they compare directly).
    ``distill_blocks`` ``c`` > 0 (pointwise): every kept block's output matches the source model's
    same block through a learned projection, ``+ c * mean_l h_l`` (block-wise hidden-state
    distillation; ``distill_block_layers``: the layers compared, default the graph's residual stream
    after each block; the source's hidden states are computed on the fly, :mod:`rmcompress.training.distill`).

    ``gate_init`` (``gates`` only): ``uniform`` starts every gate at the same ``log_alpha``;
    ``magnitude`` / ``taylor`` spread the starting ``log_alpha`` over ``DEFAULT_INIT_LOG_ALPHA +-
    gate_init_spread`` by the unit's global importance rank in the trained model
    (:func:`rmcompress.structured.importance.set_ranked_log_alpha`), so under the budget's pressure
    the least important units close first and training decides the rest.

    ``method``: ``gates`` (the above), or ``taylor`` / ``magnitude``: no gated training; the model
    is pruned once per stage by unit importance (:mod:`rmcompress.structured.importance`;
    ``importance_batches`` batches of 16 for ``taylor``) and the shrunk model fine-tuned
    ``steps / stages`` steps (distilled as above). With ``stages`` = k the budget is reached
    geometrically, stage ``i`` pruning to ``budget ** (i / k)`` of the dense cost, so later stages
    score units on a model that has already adapted (and trains faster, being smaller).

    ``width``: the stream groups (a transformer's residual width) are gated or scored too, so the
    budget chooses width against heads, FFN units and blocks; the norms then run over the kept
    channels (not exact: the training or fine-tuning that follows adapts to it). Not with
    ``distill_features``, which compares the pooled features channel by channel.

    ``verbose`` (Keras' progress: 0 none, 1 a bar, 2 a line per epoch) and ``tensorboard`` (a
    directory): module docstring.
    """
    progress = Progress(verbose, tensorboard)

    if flops_fraction is None and params_fraction is None:
        raise UsageError("budget_compress needs flops_fraction and/or params_fraction")
    if steps < 2:
        raise UsageError(f"budget_compress: steps={steps} must be >= 2")
    gate_init_spread, finetune_fraction = gate_schedule(gate_init, gate_init_spread, finetune_fraction)
    if not 0.0 <= finetune_fraction < 1.0:
        raise UsageError(f"budget_compress: finetune_fraction={finetune_fraction} must be in [0, 1)")
    if int(final_steps) < 0:
        raise UsageError(f"budget_compress: final_steps={final_steps} must be >= 0")
    if width and distill_features:
        raise UsageError("budget_compress: width pruning narrows the pooled features that distill_features "
                         "compares channel by channel with the source's; use one of them")
    if gate_init not in GATE_INITS:
        raise UsageError(f"gate_init {gate_init!r} unknown; allowed: {', '.join(GATE_INITS)}")
    task = bundle.metadata["task"]
    loss = bundle.metadata.get("loss") or ("pairwise" if task == "pairwise" else "bce")
    keras.utils.set_random_seed(seed)
    labeled_data = train_data  # gate_init scores: the task loss on the labeled rows
    settings = distill_settings(distill_weight, distill_features, distill_blocks, distill_block_layers)
    if settings is not None:
        train_data, settings = with_teacher(bundle.model, train_data, unlabeled, settings)
    if method != "gates":
        return _importance_compress(bundle, train_data, val_data, flops_fraction, params_fraction, steps,
                                    seed, learning_rate, batch_size, progress, settings, method,
                                    stages, importance_batches, task, loss, int(final_steps), width)
    gated = gated_copy(bundle.model, gate_vocab=params_fraction is not None, seed=seed, gate_width=width)
    if gate_init != "uniform":
        scores = unit_scores_by(gate_init, bundle.model, labeled_data, task, loss, importance_batches, seed=seed)
        set_ranked_log_alpha(gated, scores, DEFAULT_INIT_LOG_ALPHA - gate_init_spread,
                             DEFAULT_INIT_LOG_ALPHA + gate_init_spread)
    gated_steps, ft_steps = split_finetune(steps, 1, int(round(steps * finetune_fraction)))  # >= 1 gated step
    ft_steps += int(final_steps)
    model = ComplexityAwareModel(gated, task=task, loss=loss, budget_flops=flops_fraction,
                                 budget_params=params_fraction,
                                 terms=[DistillationTerm(settings)] if settings is not None else ())
    model.compile(optimizer=make_optimizer(learning_rate, gated_steps, "cosine", 0.05, 0.004))
    ds = train_data.dataset(batch_size, shuffle=True, seed=seed, repeat=True)
    gated_progress = progress.child("gated")
    logger = ComplexityLogger(tensorboard_dir=gated_progress.child("complexity").tensorboard,
                              every=max(1, gated_steps // 50))
    fit_model(model, ds, gated_steps, 1, callbacks=[BudgetController(int(math.ceil(WARMUP_FRACTION * gated_steps))),
                                                    logger], progress=gated_progress)
    check = all_ids(val_data) if len(val_data) else None
    scorer, info = finish_gated(model, check)
    if ft_steps:
        scorer, _ = finetune(scorer, make_task(task, loss), ds, ft_steps, learning_rate=learning_rate,
                             distill=settings, progress=progress.child("finetune"), copy=True)
    info.update({"steps": steps, "gated_steps": gated_steps, "finetune_steps": ft_steps,
                 "gate_init": gate_init, "gate_init_spread": gate_init_spread if gate_init != "uniform" else None,
                 "finetune_fraction": finetune_fraction,
                 "final_steps": int(final_steps),
                 "distill_weight": float(distill_weight), "distill_features": float(distill_features),
                 "distill_blocks": float(distill_blocks)})
    report = {"task": task, "stage": "budget_compress", "n_examples": len(val_data), **info}
    if len(val_data):
        report.update(evaluate_encoded(scorer, val_data, task, loss))
    metadata = {**with_arch(bundle.metadata, scorer),
                "complexity": {k: v for k, v in info.items()}}
    out = RewardModelBundle(scorer, bundle.tokenizer, metadata, None, report)
    out.complexity_log = logger.rows  # type: ignore[attr-defined]
    return out


def distill_settings(weight: float, features: float = 0.0, blocks: float = 0.0, block_layers=None):
    """Self-distillation settings of ``budget_compress`` (mse on rewards), None for no term."""

    if not weight and not features and not blocks:
        return None
    return DistillSettings(float(weight), "mse", 1.0, features=float(features), blocks=float(blocks),
                           block_layers=tuple(block_layers) if block_layers else None)


def with_teacher(teacher, train_data, unlabeled, settings):
    """``(train_data with the teacher's targets and the unlabeled rows, settings)``; with a feature
    term the settings get the teacher's ``feature_scale`` (over all those rows); with a block term
    the teacher itself and its ``block_scale`` (over the first rows)."""
    from dataclasses import replace


    data = with_teacher_targets(teacher, train_data, unlabeled, features=bool(settings.features))
    if settings.features:
        settings = replace(settings, feature_scale=feature_scale(data.teacher_features))
    if settings.blocks:
        if data.task != "pointwise":
            raise UsageError("block distillation (distill_blocks) is pointwise only")
        settings = replace(settings, block_teacher=teacher,
                           block_scale=block_scales(teacher, data.ids, settings.block_layers))
    return data, settings


def _importance_compress(bundle, train_data, val_data, flops_fraction, params_fraction, steps, seed,
                         learning_rate, batch_size, progress, settings, method, stages,
                         importance_batches, task, loss, final_steps=0, width=False):
    """``budget_compress`` with ``method`` taylor/magnitude (see its docstring); ``train_data``
    already carries the teacher's targets when ``settings`` (distillation) is given."""

    if method not in METHODS:
        raise UsageError(f"budget method {method!r} unknown; allowed: gates, {', '.join(METHODS)}")
    stages = int(stages)
    if stages < 1:
        raise UsageError(f"budget_compress: stages={stages} must be >= 1")
    objective = make_task(task, loss)

    def build(m):
        return RewardTrainingModel(m, objective, terms=[DistillationTerm(settings)] if settings is not None else ())

    def tune(scorer, n, run):
        return finetune(scorer, objective, ds, n, learning_rate=learning_rate, distill=settings,
                        progress=progress.child(run), copy=True)[0]
    dense = count(bundle.model)
    ds = train_data.dataset(batch_size, shuffle=True, seed=seed, repeat=True)
    scorer, per_stage = bundle.model, []
    stage_steps = [steps // stages + (1 if i < steps % stages else 0) for i in range(stages)]
    for i in range(stages):
        share = (i + 1) / stages
        now = count(scorer)
        rel_f = None if flops_fraction is None else min(1.0, flops_fraction ** share * dense.flops / now.flops)
        rel_p = None if params_fraction is None else min(1.0, params_fraction ** share * dense.params / now.params)
        scorer = importance_prune(scorer, method, rel_f, rel_p, data=train_data, task=task, loss=loss,
                                  batches=importance_batches, seed=seed + i,
                                  build=build, width=width)
        pruned = count(scorer)
        if stage_steps[i]:
            scorer = tune(scorer, stage_steps[i], f"stage{i + 1}")
        per_stage.append({"flops_fraction": round(pruned.flops / dense.flops, 5),
                          "params_fraction": round(pruned.params / dense.params, 5), "steps": stage_steps[i]})
    if final_steps:
        scorer = tune(scorer, final_steps, "final")
    achieved = count(scorer)
    info = {"method": method, "stages": stages, "per_stage": per_stage,
            "dense_flops": int(dense.flops), "dense_params": int(dense.params),
            "budget_flops": flops_fraction, "budget_params": params_fraction,
            "flops": achieved.flops, "params": achieved.params,
            "flops_fraction": round(achieved.flops / dense.flops, 5),
            "params_fraction": round(achieved.params / dense.params, 5), "shrunk": True,
            "steps": steps, "gated_steps": 0, "finetune_steps": steps + final_steps, "final_steps": final_steps,
            "distill_weight": settings.weight if settings else 0.0,
            "distill_features": settings.features if settings else 0.0,
            "distill_blocks": settings.blocks if settings else 0.0}
    report = {"task": task, "stage": "budget_compress", "n_examples": len(val_data), **info}
    if len(val_data):
        report.update(evaluate_encoded(scorer, val_data, task, loss))
    metadata = {**with_arch(bundle.metadata, scorer), "complexity": dict(info)}
    out = RewardModelBundle(scorer, bundle.tokenizer, metadata, None, report)
    out.complexity_log = []  # type: ignore[attr-defined]
    return out


def with_teacher_targets(teacher, data, unlabeled=None, features: bool = False):
    """``data`` (EncodedData) with ``teacher``'s rewards attached (pointwise: its reward per row;
    pairwise: its margin ``r(chosen) - r(rejected)``) and every row labeled; then the ``unlabeled``
    rows (EncodedData, same tokenizer), scored the same way, with ``labeled = 0``. ``features``
    (pointwise): the teacher's pooled features too (``teacher_features``, representation
    distillation, :mod:`rmcompress.training.distill`)."""

    def score(ids):
        return teacher_outputs(teacher, ids)[0]

    def attach(d, labeled: float):
        feats = None
        if d.task == "pairwise":
            if features:
                raise UsageError("representation distillation is pointwise only")
            targets = score(d.chosen) - score(d.rejected)
        else:
            targets, feats = teacher_outputs(teacher, d.ids, features=features)
        return EncodedData(d.task, d.ids, d.labels, d.chosen, d.rejected, d.margin,
                           targets, np.full(len(d), labeled, np.float32), feats)

    out = attach(data, 1.0)
    if unlabeled is not None and len(unlabeled):
        out = concat_encoded(out, attach(unlabeled, 0.0))
    return out


__all__ = ["budget_compress", "distill_settings", "with_teacher", "with_teacher_targets"]
