"""``shrink(gated_model)`` -> an ordinary tf_keras scorer with physically smaller layers.

The gated model's deterministic gates (``rmcompress.layers.gates``) decide which units stay: a
unit whose gate is 0 is removed, a kept unit's gate value (in (0, 1], not necessarily 1) is folded
into the weights that read it. Every model, the shipped architectures included, is shrunk the same
way: its graph is re-traced with smaller copies of its own layers
(:mod:`rmcompress.structured.shrink_graph`), so a shrunk rmcompress architecture is again one
(``infer_arch_config`` reads its smaller config back) and any other model stays a plain model of
its own layer classes. Before that, :func:`project_to_budget` may choose the units that fit a
budget and :func:`ensure_feasible` reopens a unit of a group that must keep some.

:func:`shrink_model_dir` does the same for a gated model directory (``rmcompress shrink``).

Contract (tested): its outputs equal the gated model's deterministic outputs (max abs diff <= 1e-5)
and ``count(shrunk)`` equals the registry evaluated at the gated model's deterministic alive counts.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from rmcompress._keras import keras
from rmcompress.cost.registry import is_gated
from rmcompress.errors import ModelError, UsageError
from rmcompress.fileio import check_destination, write_json
from rmcompress.layers.gates import CLOSED_LOG_ALPHA, OPEN_LOG_ALPHA, OPEN_THRESHOLD, gate_layers, open_probability
from rmcompress.models.dependency import Structure
from rmcompress.models.modeldir import MODEL_FILE, SAMPLES_FILE, load_model_dir, load_samples, save_model_dir
from rmcompress.models.structure import cost_model, count, gated_cost, structure_of, with_arch
from rmcompress.structured.shrink_graph import shrink_graph
from rmcompress.sizes import file_sizes


def ensure_feasible(model, structure: Structure | None = None) -> list[str]:
    """Reopen the most probable unit(s) of groups that must keep some (every group but a residual
    branch, a block and the vocabulary rows); changes ``model``'s gates in place. Returns the groups
    it touched."""
    structure = structure or structure_of(model)
    gates = gate_layers(model)
    touched = []

    def reopen(group, n):
        la = gates[group].log_alpha.numpy()
        best = np.argsort(-la)[:n]
        la[best] = np.maximum(la[best], OPEN_LOG_ALPHA)
        gates[group].log_alpha.assign(la)
        touched.append(group)

    for group, n in structure.min_alive.items():
        if group in gates and gates[group].deterministic_open() < n:
            reopen(group, n)
    return touched


def project_to_budget(model, budget_flops: float | None = None, budget_params: float | None = None,
                      structure: Structure | None = None) -> dict:
    """Choose the deterministic units under a budget: the most probable units that fit.

    Starting from every gated unit closed, units are added in order of decreasing probability of
    being active (``P(open)`` times that of its block's gate) when the model's deterministic FLOPs
    and params stay within ``budget * dense`` (a block gate comes before its units and is free
    while they are all closed). Units kept keep
    their gate value if they were open by the median rule, else their gate is set to 1; the rest
    are closed. The groups that must keep a unit keep their most probable one even if that breaks
    the budget. Changes ``model``'s gates in place; returns ``{"opened_units", "closed_units",
    "flops", "params", "budget_met"}`` (opened/closed relative to the median rule).

    After budget training the expected cost sits on the budget, but the median rule keeps exactly
    the units with ``P(open) > 1/2``, which can cost more or less (a block open with probability
    0.4 costs 0.4 of itself in expectation and nothing deterministically); this lands on the budget
    to the granularity of one unit.
    """
    structure = structure or structure_of(model)
    gates = gate_layers(model)
    cm = cost_model(model, structure)
    dense = cm.evaluate(structure.full_alive())
    limits = {"flops": None if budget_flops is None else budget_flops * float(dense.flops),
              "params": None if budget_params is None else budget_params * float(dense.params)}

    def over(cost):
        return ((limits["flops"] is not None and cost.flops > limits["flops"] + 1e-9)
                or (limits["params"] is not None and cost.params > limits["params"] + 1e-9))

    la = {g: gates[g].log_alpha.numpy().astype(np.float64) for g in gates}
    was_open = {g: la[g] > OPEN_THRESHOLD for g in gates}
    keep = {g: np.zeros(len(la[g]), bool) for g in gates}
    alive = structure.full_alive()
    alive.update({g: 0 for g in gates})
    # groups that must keep units: their most probable ones first, unconditionally
    forced = []
    for g, n in structure.min_alive.items():
        if g in gates:
            forced += [(g, int(i)) for i in np.argsort(-la[g])[:n]]
    for g, i in forced:
        if not keep[g][i]:
            keep[g][i] = True
            alive[g] += 1
    # a unit only counts when its block is open too: order by the joint probability
    prob = {g: open_probability(la[g]) for g in gates}
    parents: dict = {}
    for dim in structure.present.values():
        for g in dim.factors:
            parents.setdefault(g, set()).update(f for f in dim.factors if f != g and structure.groups[f] == 1)
    joint = {g: prob[g] * np.prod([prob[f][0] for f in parents.get(g, ()) if f in gates]) for g in gates}
    order = sorted((-float(joint[g][i]), g, int(i)) for g in gates for i in range(len(la[g])) if not keep[g][i])
    cost = cm.evaluate(alive)
    for _, g, i in order:
        alive[g] += 1
        trial = cm.evaluate(alive)
        if over(trial):
            alive[g] -= 1
            continue
        keep[g][i] = True
        cost = trial
    opened = closed = 0
    for g in gates:
        opened += int(np.sum(keep[g] & ~was_open[g]))
        closed += int(np.sum(~keep[g] & was_open[g]))
        new = np.where(keep[g], np.where(was_open[g], la[g], OPEN_LOG_ALPHA), np.minimum(la[g], CLOSED_LOG_ALPHA))
        gates[g].log_alpha.assign(new.astype(np.float32))
    return {"opened_units": opened, "closed_units": closed, "flops": int(cost.flops),
            "params": int(cost.params), "budget_met": not over(cost)}


def shrink(model: keras.Model, name: str | None = None, budget_flops: float | None = None,
           budget_params: float | None = None) -> keras.Model:
    """The plain, physically smaller scorer equivalent to ``model``'s deterministic gates.

    ``budget_flops``/``budget_params`` (fractions of the dense model): first choose the units that
    fit (:func:`project_to_budget`, which sets the gates). Calls :func:`ensure_feasible` (which may
    reopen a unit of a group that must keep one). Raises :class:`ModelError` if ``model`` has no
    gates.
    """
    if not is_gated(model):
        raise ModelError(f"model {model.name!r} has no gate layers; nothing to shrink "
                         f"(train with --gated or a budget)")
    structure = structure_of(model)
    if budget_flops is not None or budget_params is not None:
        for flag, v in (("budget_flops", budget_flops), ("budget_params", budget_params)):
            if v is not None and not 0.0 < v <= 1.0:
                raise UsageError(f"{flag} {v} must be a fraction in (0, 1]")
        project_to_budget(model, budget_flops, budget_params, structure)
    ensure_feasible(model, structure)
    return shrink_graph(model, structure, name=name)


def shrink_model_dir(model_dir, out_dir, budget_flops: float | None = None,
                     budget_params: float | None = None, overwrite: bool = False) -> dict:
    """Shrink the gated model in ``model_dir`` (optionally choosing the units to fit a budget first)
    and write a model directory with ``report.json`` to ``out_dir``; returns the report."""
    check_destination(out_dir, overwrite, inputs=[model_dir])
    for name, v in (("--budget-flops", budget_flops), ("--budget-params", budget_params)):
        if v is not None and not 0.0 < v <= 1.0:
            raise UsageError(f"{name} {v} must be a fraction in (0, 1]")
    bundle = load_model_dir(model_dir)
    gated = bundle.model
    if not is_gated(gated):
        raise ModelError(f"{model_dir}: the model has no gate layers; nothing to shrink "
                         f"(train with --gated --no-shrink)")
    dense = gated_cost(gated, "full")
    if budget_flops is not None or budget_params is not None:
        project_to_budget(gated, budget_flops, budget_params)
    shrunk = shrink(gated)
    samples = load_samples(model_dir)["validation_ids"]
    report = {"task": bundle.task, "stage": "shrink", "source": str(model_dir),
              "dense_flops": int(dense.flops), "dense_params": int(dense.params),
              "budget_flops": budget_flops, "budget_params": budget_params, **count(shrunk).as_dict()}
    report["flops_fraction"] = round(report["flops"] / report["dense_flops"], 5)
    report["params_fraction"] = round(report["params"] / report["dense_params"], 5)
    if len(samples):
        a = gated.predict(samples, batch_size=256, verbose=0)
        b = shrunk.predict(samples, batch_size=256, verbose=0)
        report["shrink_max_abs_diff"] = float(np.max(np.abs(a - b)))
    metadata = {k: v for k, v in bundle.metadata.items()
                if k not in ("format", "format_version", "rmcompress_version")}
    metadata = with_arch(metadata, shrunk)
    metadata["complexity"] = {k: report[k] for k in ("dense_flops", "dense_params", "flops", "params",
                                                     "budget_flops", "budget_params")}

    def extra(tmp: Path):
        if (Path(model_dir) / SAMPLES_FILE).is_file():
            shutil.copy2(Path(model_dir) / SAMPLES_FILE, tmp / SAMPLES_FILE)
        report.update(file_sizes(tmp / MODEL_FILE))
        write_json(tmp / "report.json", report)

    save_model_dir(out_dir, shrunk, bundle.tokenizer, metadata, None, overwrite, extra)
    return report


__all__ = ["shrink", "ensure_feasible", "project_to_budget", "shrink_model_dir"]
