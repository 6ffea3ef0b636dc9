"""Complexity-aware training inside ``train()`` (and ``budget_compress``): the pieces the trainer
hooks call when a run is gated (``--gated``, a penalty weight or a budget).

- :func:`gate_options`: ``gated_copy`` keyword arguments for the gated scorer (vocabulary rows are
  gated only when params are targeted: they cost params, not FLOPs);
- :func:`make_complexity_model`: the ``ComplexityAwareModel`` for a ``TrainConfig``;
- :func:`finetune_steps`: the steps left to fine-tune the shrunk model (its loop is
  :func:`rmcompress.training.finetune.finetune`);
- :func:`complexity_callbacks`: budget controller, complexity logger and budget-aware early
  stopping (replacing the plain early stopping);
- :func:`finish_gated`: after ``fit``: hold the budget on the deterministic gates
  (``project_to_budget``), ``shrink``, check the shrunk model against the gated one, and the
  report entries (dense and achieved FLOPs/params, the budget).
"""
from __future__ import annotations

import numpy as np

from rmcompress.data.pipeline import EncodedData
from rmcompress.models.structure import count
from rmcompress.structured.importance import set_ranked_log_alpha
from rmcompress.structured.shrink import project_to_budget, shrink
from rmcompress.training.complexity_callbacks import BudgetController, BudgetEarlyStopping, ComplexityLogger
from rmcompress.training.complexity_model import ComplexityAwareModel
from rmcompress.training.taylor import unit_scores_by


def is_gated_config(cfg) -> bool:
    """A run is gated with ``--gated``, any penalty weight or any budget."""
    return cfg.gates.active


def targets_params(cfg) -> bool:
    return cfg.gates.targets_params


def gate_options(cfg) -> dict:
    """Keyword arguments of :func:`rmcompress.structured.gating.gated_copy` for a gated ``cfg``."""
    g = cfg.gates
    vocab = g.vocab if g.vocab is not None else g.targets_params
    return {"gate_vocab": bool(vocab), "gate_width": bool(g.width), "seed": int(cfg.data.seed),
            "init_log_alpha": float(g.init_log_alpha)}


def make_complexity_model(scorer, cfg, loss: str) -> ComplexityAwareModel:
    g = cfg.gates
    return ComplexityAwareModel(
        scorer, task=cfg.task, loss=loss, center_coefficient=cfg.center_coefficient,
        flops_weight=g.flops_weight, params_weight=g.params_weight, budget_flops=g.budget_flops,
        budget_params=g.budget_params, gate_learning_rate=g.learning_rate,
        multiplier_learning_rate=g.multiplier_learning_rate, quadratic_init=g.quadratic_init)


def complexity_callbacks(cfg, total_steps: int, monitor: str | None, mode: str, log_every: int = 10,
                         tensorboard_dir=None):
    """``(callbacks, logger)``: controller (budget mode), logger (also to TensorBoard in
    ``tensorboard_dir``), budget-aware early stopping (when ``monitor`` is given and
    ``cfg.patience > 0``)."""
    cbs, g = [], cfg.gates
    if g.budgeted:
        cbs.append(BudgetController(int(round(g.budget_warmup * total_steps)),
                                    delay_steps=int(round(g.budget_delay * total_steps))))
    logger = ComplexityLogger(tensorboard_dir=tensorboard_dir, every=log_every)
    cbs.append(logger)
    if monitor is not None and cfg.optim.patience > 0:
        cbs.append(BudgetEarlyStopping(monitor=monitor, mode=mode, patience=cfg.optim.patience))
    return cbs, logger


def rank_gates(gated, plain, cfg, data, loss: str) -> None:
    """Start ``gated``'s gates ranked by ``plain``'s unit importance (``cfg.gates.init``: magnitude or
    taylor): ``log_alpha`` spread over ``cfg.gates.init_log_alpha +- cfg.gates.init_spread`` by global
    rank, so under a budget's pressure the least important units close first."""

    if data.teacher is not None:  # Taylor scores use the task loss: labeled rows, no teacher columns
        keep = np.asarray(data.labeled if data.labeled is not None else np.ones(len(data))) > 0
        cut = {k: (None if v is None else np.asarray(v)[keep]) for k, v in
               dict(ids=data.ids, labels=data.labels, chosen=data.chosen, rejected=data.rejected,
                    margin=data.margin).items()}
        data = EncodedData(data.task, **cut)
    scores = unit_scores_by(cfg.gates.init, plain, data, cfg.task, loss, seed=cfg.data.seed)
    base, spread = float(cfg.gates.init_log_alpha), float(cfg.gates.init_spread)
    set_ranked_log_alpha(gated, scores, base - spread, base + spread)


def finetune_steps(cfg, total_steps: int) -> int:
    """Steps reserved for fine-tuning the shrunk model (0 without shrinking)."""
    if not cfg.gates.shrink or total_steps < 2:
        return 0
    return int(round(total_steps * max(0.0, min(0.9, float(cfg.gates.finetune_fraction or 0.0)))))


def finish_gated(model: ComplexityAwareModel, check_ids: np.ndarray | None = None, do_shrink: bool = True):
    """``(scorer, report entries)`` after gated training (see module docstring)."""
    gated = model.scorer
    end_state = model.complexity_state()
    projection = {}
    if any(b is not None for b in model.budgets.values()):
        projection = project_to_budget(gated, model.budgets["flops"], model.budgets["params"], model.structure)
    info = {"dense_flops": int(round(model.dense["flops"])), "dense_params": int(round(model.dense["params"])),
            "budget_flops": model.budgets["flops"], "budget_params": model.budgets["params"],
            "flops_weight": model.penalty_weights["flops"], "params_weight": model.penalty_weights["params"],
            "expected_flops_fraction_end": round(end_state["expected_flops_fraction"], 5),
            "expected_params_fraction_end": round(end_state["expected_params_fraction"], 5),
            "projection_closed_units": int(projection.get("closed_units", 0)), "shrunk": bool(do_shrink)}
    scorer = gated
    if do_shrink:
        scorer = shrink(gated, name=gated.name.replace("_gated", ""))
        if check_ids is not None and len(check_ids):
            ids = np.asarray(check_ids[:512], np.int32)
            a = gated.predict(ids, batch_size=256, verbose=0)
            b = scorer.predict(ids, batch_size=256, verbose=0)
            info["shrink_max_abs_diff"] = float(np.max(np.abs(a - b)))
    achieved = count(scorer)
    info.update({"flops": achieved.flops, "params": achieved.params,
                 "flops_fraction": round(achieved.flops / model.dense["flops"], 5),
                 "params_fraction": round(achieved.params / model.dense["params"], 5)})
    return scorer, info
