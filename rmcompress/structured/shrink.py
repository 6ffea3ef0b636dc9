"""``shrink(gated_model)`` -> an ordinary tf_keras scorer with physically smaller layers.

The gated model's deterministic gates (``rmcompress.layers.gates``) decide which units stay:
a unit whose gate is 0 is removed (its weight slices, found through the registry's
``LayerFacts.slices`` and the architecture's role wiring in ``structure``); a kept unit's gate
value (in (0, 1], not necessarily 1) is folded into the weights the structure names
(``Fold``): the output projection rows of a head, the FFN output rows of a unit, the kernel and
bias of a ReLU conv filter or hidden unit (``relu(z a) = z relu(a)`` for ``z > 0``), the columns or
rows of the embedding, the branch outputs of a block. The shrunk model is built by
``build_reward_model`` from a shrunk :class:`ArchConfig` (fewer heads, narrower FFN, fewer
filters and hidden units, removed blocks, a narrower embedding, fewer vocabulary rows behind a
``TokenRemap``), so it loads, trains, compresses and exports like any other model.
Any other model (groups found in its layer graph) is shrunk by re-tracing its graph with smaller
copies of its own layers (:mod:`rmcompress.structured.shrink_graph`).

:func:`shrink_model_dir` does the same for a gated model directory (``rmcompress shrink``).

Contract (tested): its outputs equal the gated model's deterministic outputs (max abs diff <= 1e-5)
and ``count(shrunk)`` equals the registry evaluated at the gated model's deterministic alive counts.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from rmcompress._keras import keras
from rmcompress.cost.registry import facts_for, is_gated
from rmcompress.errors import ModelError, UsageError
from rmcompress.fileio import check_destination, write_json
from rmcompress.layers.gates import (CLOSED_LOG_ALPHA, OPEN_LOG_ALPHA, OPEN_THRESHOLD, deterministic_gates,
                                     gate_layers, open_probability)
from rmcompress.models.archconfig import ArchConfig
from rmcompress.models.architectures import build_reward_model
from rmcompress.models.groups import VOCAB, Structure
from rmcompress.models.modeldir import MODEL_FILE, SAMPLES_FILE, load_model_dir, load_samples, save_model_dir
from rmcompress.models.structure import cost_model, count, gated_cost, is_architecture, structure_of
from rmcompress.structured.shrink_graph import shrink_graph
from rmcompress.sizes import file_sizes


def ensure_feasible(model, structure: Structure | None = None) -> list[str]:
    """Reopen the most probable unit(s) of groups that must keep some (a bow needs a hidden unit, a
    cnn some filter); changes ``model``'s gates in place. Returns the groups it touched."""
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
    for tup in structure.require_any:
        present = [g for g in tup if g in gates]
        if present and len(present) == len(tup) and sum(gates[g].deterministic_open() for g in tup) == 0:
            reopen(max(present, key=lambda g: gates[g].log_alpha.numpy().max()), 1)
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
    for tup in structure.require_any:
        if all(g in gates for g in tup):
            g = max(tup, key=lambda x: la[x].max())
            forced.append((g, int(np.argmax(la[g]))))
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


def _keep_index(dim, keep: dict, sizes: dict, unit: int) -> np.ndarray:
    """Indices kept along an axis made of ``dim.segments`` (each unit spans ``unit`` elements)."""
    out, offset = [], 0
    for seg in dim.segments:
        n = seg if isinstance(seg, int) else sizes[seg]
        idx = np.arange(n) if isinstance(seg, int) else keep[seg]
        out.append(offset + (idx[:, None] * unit + np.arange(unit)[None, :]).reshape(-1))
        offset += n * unit
    return np.concatenate(out).astype(np.int64) if out else np.zeros((0,), np.int64)


def _fold_vector(dim, group: str, z: np.ndarray, sizes: dict, unit: int) -> np.ndarray:
    parts = []
    for seg in dim.segments:
        if seg == group:
            parts.append(np.repeat(z, unit))
        else:
            n = seg if isinstance(seg, int) else sizes[seg]
            parts.append(np.ones(n * unit))
    return np.concatenate(parts)


def shrunk_config(cfg: ArchConfig, keep: dict, structure: Structure) -> ArchConfig:
    """``cfg`` with every group cut to its kept units (``keep``: group -> kept unit indices)."""
    d = cfg.to_dict()
    n = {g: len(idx) for g, idx in keep.items()}
    if cfg.arch == "transformer":
        heads, ffn, on = [], [], []
        for i, present in enumerate(cfg.blocks_present()):
            b = f"block{i}"
            alive = present and b in structure.groups and n[b] > 0
            h = n.get(f"{b}_heads", 0) if alive else 0
            f = n.get(f"{b}_ffn", 0) if alive else 0
            heads.append(h)
            ffn.append(f)
            on.append(alive and (h > 0 or f > 0))
        d.update(heads=heads, ffn=ffn, block_present=on)
    elif cfg.arch == "bert":  # a kept block keeps its norms even with no heads or FFN units
        heads, ffn, on = [], [], []
        for i, present in enumerate(cfg.blocks_present()):
            b = f"block{i}"
            alive = present and n.get(b, 0) > 0
            heads.append(n.get(f"{b}_heads", 0) if alive else 0)
            ffn.append(n.get(f"{b}_ffn", 0) if alive else 0)
            on.append(alive)
        d.update(heads=heads, ffn=ffn, block_present=on)
    else:
        d["width"] = n["embed"]
        if cfg.arch == "cnn":
            d["filters"] = [n.get(f"conv{k}", 0) for k in cfg.kernel_sizes]
        elif cfg.hidden > 0:
            d["hidden"] = n["hidden"]
    if cfg.head_hidden > 0:
        d["head_hidden"] = n["hidden"]
    if VOCAB in structure.groups and n[VOCAB] < structure.groups[VOCAB]:
        d["input_vocab_size"] = cfg.input_vocab_size or cfg.vocab_size
        d["vocab_size"] = 1 + n[VOCAB]
    return ArchConfig.from_dict(d)


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
    if structure.config is None:
        return shrink_graph(model, structure, name=name)
    cfg = structure.config
    z = {g: np.ones(n) for g, n in structure.groups.items()}
    z.update(deterministic_gates(model))
    keep = {g: np.nonzero(v > 0)[0] for g, v in z.items()}
    new_cfg = shrunk_config(cfg, keep, structure)
    new = build_reward_model(new_cfg, name=name or model.name)
    sizes = structure.groups
    folds_by_layer: dict = {}
    for f in structure.folds:
        folds_by_layer.setdefault(f.layer, []).append(f)
    src_names = {layer.name for layer in model.layers}
    vocab_cut = new_cfg.vocab_size != cfg.vocab_size or (new_cfg.input_vocab_size and not cfg.input_vocab_size)

    for layer in new.layers:
        if not layer.weights:
            continue
        if layer.name == "token_remap":
            continue  # filled below
        if layer.name in structure.bias_sources and layer.name not in src_names:
            src_name, src_attr = structure.bias_sources[layer.name]
            layer.bias.assign(getattr(model.get_layer(src_name), src_attr).numpy())
            continue
        src = model.get_layer(layer.name)
        facts = facts_for(src)
        dims = structure.dims.get(layer.name, {})
        units = facts.units(src)
        covered = set(facts.slices)
        for w in layer.weights:
            attr = _attr_of(layer, w)
            if attr not in covered:
                raise ModelError(f"shrink: weight {w.name!r} of layer {layer.name!r} is not described "
                                 f"in the complexity registry's slices")
            value = getattr(src, attr).numpy().astype(np.float64)
            axes = dict((role, axis) for role, axis in facts.slices[attr])
            for fold in folds_by_layer.get(layer.name, ()):
                if attr not in fold.weights or fold.group not in z:
                    continue
                if fold.role is None:
                    value = value * float(z[fold.group].reshape(-1)[0])
                else:
                    vec = _fold_vector(dims[fold.role], fold.group, z[fold.group], sizes,
                                       units.get(fold.role, 1))
                    shape = [1] * value.ndim
                    shape[axes[fold.role]] = -1
                    value = value * vec.reshape(shape)
            for role, axis in facts.slices[attr]:
                if role in dims:
                    value = np.take(value, _keep_index(dims[role], keep, sizes, units.get(role, 1)), axis=axis)
            if attr == "embeddings" and vocab_cut:
                if cfg.input_vocab_size and np.any(value[0] != 0):
                    raise ModelError(f"shrink: model {model.name!r} already had vocabulary rows removed "
                                     f"and its shared row 0 was trained since; its rows cannot be cut again")
                value[0] = 0.0  # the shared row of removed tokens
            getattr(layer, attr).assign(value.astype(np.float32))

    if new_cfg.input_vocab_size:
        row_map = np.zeros(cfg.vocab_size, np.int32)
        kept_rows = keep[VOCAB] + 1 if VOCAB in keep else np.arange(1, cfg.vocab_size)
        row_map[kept_rows] = np.arange(1, len(kept_rows) + 1)
        old = (model.get_layer("token_remap").table.numpy() if cfg.input_vocab_size
               else np.arange(cfg.vocab_size))
        new.get_layer("token_remap").table.assign(row_map[old].astype(np.int32))
    return new


def _attr_of(layer, weight) -> str:
    for attr, value in vars(layer).items():
        if value is weight:
            return attr
    raise ModelError(f"shrink: cannot find weight {weight.name!r} on layer {layer.name!r}")


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
    metadata.pop("arch", None)
    if is_architecture(shrunk):
        metadata["arch"] = structure_of(shrunk).config.to_dict()
    metadata["complexity"] = {k: report[k] for k in ("dense_flops", "dense_params", "flops", "params",
                                                     "budget_flops", "budget_params")}

    def extra(tmp: Path):
        if (Path(model_dir) / SAMPLES_FILE).is_file():
            shutil.copy2(Path(model_dir) / SAMPLES_FILE, tmp / SAMPLES_FILE)
        report.update(file_sizes(tmp / MODEL_FILE))
        write_json(tmp / "report.json", report)

    save_model_dir(out_dir, shrunk, bundle.tokenizer, metadata, None, overwrite, extra)
    return report


__all__ = ["shrink", "ensure_feasible", "shrunk_config", "project_to_budget", "shrink_model_dir"]
