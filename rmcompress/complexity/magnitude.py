"""Structured magnitude pruning: remove the units with the smallest weights to a FLOPs/params budget
(the classic baseline for complexity-aware training; also a cheap one-shot structural pruner).

A unit's score is the mean absolute value of every weight the registry's slices assign to it
(an FFN unit: its column of ``ffn_in`` and its row of ``ffn_out``; a head: its query/key/value
columns and output-projection rows; a filter: its kernel slice and bias; an embedding column: the
column and the consumer rows it feeds), divided by the mean score of its group so that groups of
different fan-in compare. Whole blocks are not scored: a block goes when all its units are gone.
The lowest-scoring units are removed until the model fits the budget
(``rmcompress.complexity.shrink.project_to_budget`` with the scores as gate logits), then ``shrink``
builds the smaller plain model. Kept units keep their weights unchanged.
"""
from __future__ import annotations

import numpy as np

from rmcompress.complexity.gates import gate_layers, gated_copy
from rmcompress.complexity.registry import facts_for
from rmcompress.complexity.shrink import project_to_budget, shrink
from rmcompress.complexity.structure import Structure, infer_arch_config, structure_for


def unit_scores(model, structure: Structure | None = None) -> dict:
    """``{group: mean |w| per unit}`` for every multi-unit group of a plain or gated scorer."""
    structure = structure or structure_for(infer_arch_config(model))
    sums = {g: np.zeros(n) for g, n in structure.groups.items()}
    counts = {g: np.zeros(n) for g, n in structure.groups.items()}
    names = {layer.name for layer in model.layers}
    for layer_name, dims in structure.dims.items():
        if layer_name not in names:
            continue
        layer = model.get_layer(layer_name)
        facts = facts_for(layer)
        units = facts.units(layer)
        for attr, axes in facts.slices.items():
            w = np.abs(getattr(layer, attr).numpy())
            for role, axis in axes:
                if role not in dims:
                    continue
                unit = units.get(role, 1)
                moved = np.moveaxis(w, axis, 0)
                offset = 0
                for seg in dims[role].segments:
                    n = seg if isinstance(seg, int) else structure.groups[seg]
                    block = moved[offset * unit:(offset + n) * unit].reshape(n, -1)
                    if not isinstance(seg, int):
                        sums[seg] += block.sum(axis=1)
                        counts[seg] += block.shape[1]
                    offset += n
    return {g: sums[g] / np.maximum(counts[g], 1) for g in sums if structure.groups[g] > 1}


def magnitude_prune(model, flops_fraction: float | None = None, params_fraction: float | None = None,
                    vocab: bool = False):
    """The plain scorer with the lowest-magnitude units removed to the budget (see module docstring)."""
    gated = gated_copy(model, gate_vocab=vocab)
    structure = structure_for(infer_arch_config(gated))
    scores = unit_scores(model, structure)
    for group, gate in gate_layers(gated).items():
        if group in scores:
            s = scores[group] / max(float(np.mean(scores[group])), 1e-12)
            gate.log_alpha.assign((10.0 + np.clip(s, 0.0, 20.0)).astype(np.float32))
        else:
            gate.log_alpha.assign(np.full(gate.units, 100.0, np.float32))  # blocks: never by themselves
    project_to_budget(gated, flops_fraction, params_fraction, structure)
    return shrink(gated, name=model.name)


__all__ = ["unit_scores", "magnitude_prune"]
