"""Structured magnitude pruning: remove the units with the smallest weights to a FLOPs/params budget
(the classic baseline for complexity-aware training; also a cheap one-shot structural pruner).

A unit's score is the mean absolute value of every weight the registry's slices assign to it
(an FFN unit: its column of ``ffn_in`` and its row of ``ffn_out``; a head: its query/key/value
columns and output-projection rows; a filter: its kernel slice and bias; an embedding column: the
column and the consumer rows it feeds), divided by the mean score of its group so that groups of
different fan-in compare. Whole blocks are not scored: a block goes when all its units are gone.
The lowest-scoring units are removed until the model fits the budget
(``rmcompress.structured.importance.prune_to_budget``), then ``shrink``
builds the smaller plain model. Kept units keep their weights unchanged.
"""
from __future__ import annotations

import numpy as np

from rmcompress.cost.registry import facts_for, weight_of
from rmcompress.models.dependency import Structure
from rmcompress.models.structure import structure_of
from rmcompress.structured.importance import prune_to_budget


def unit_scores(model, structure: Structure | None = None) -> dict:
    """``{group: mean |w| per unit}`` for every multi-unit group of a plain or gated scorer."""
    structure = structure or structure_of(model)
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
            w = np.abs(weight_of(layer, attr).numpy())
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


def normalised_scores(model) -> dict:
    """:func:`unit_scores` divided by each group's mean (comparable across groups)."""
    return {g: s / max(float(np.mean(s)), 1e-12) for g, s in unit_scores(model).items()}


def magnitude_prune(model, flops_fraction: float | None = None, params_fraction: float | None = None,
                    vocab: bool = False):
    """The plain scorer with the lowest-magnitude units removed to the budget (see module docstring)."""

    return prune_to_budget(model, normalised_scores(model), flops_fraction, params_fraction, vocab=vocab)


__all__ = ["unit_scores", "normalised_scores", "magnitude_prune"]
