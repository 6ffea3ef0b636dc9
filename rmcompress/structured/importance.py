"""Structured pruning to a budget from per-unit importance scores.

:func:`prune_to_budget` turns any ``{group: scores}`` (magnitude:
:func:`rmcompress.structured.magnitude.unit_scores`; Taylor: :mod:`rmcompress.training.taylor`)
into the plain smaller model: units are
ranked globally by score, and ``project_to_budget`` (the budget projection of gated training)
keeps the highest-ranked units that fit, so FLOPs/params land on the budget to the granularity of
one unit. Whole blocks are not scored: a block goes when all its units are gone. Kept units keep
their weights unchanged (``shrink``'s output equals the gated model's).
:func:`set_ranked_log_alpha` starts a gated model's gates spread by the same global ranks.
"""
from __future__ import annotations

import numpy as np

from rmcompress.errors import UsageError
from rmcompress.layers.gates import gate_layers
from rmcompress.models.structure import structure_of
from rmcompress.structured.gating import gated_copy
from rmcompress.structured.shrink import project_to_budget, shrink


def prune_to_budget(model, scores: dict, flops_fraction: float | None = None,
                    params_fraction: float | None = None, vocab: bool = False, width: bool = False):
    """The plain scorer keeping, in decreasing ``scores`` order, the units that fit the budget
    (``width``: the stream groups too)."""
    if flops_fraction is None and params_fraction is None:
        raise UsageError("prune_to_budget needs flops_fraction and/or params_fraction")
    gated = gated_copy(model, gate_vocab=vocab, gate_width=width)
    structure = structure_of(gated)
    set_ranked_log_alpha(gated, scores, low=10.0, high=30.0, unscored=100.0)  # blocks: never by themselves
    project_to_budget(gated, flops_fraction, params_fraction, structure)
    return shrink(gated, name=model.name)


def global_ranks(gates: dict, scores: dict) -> dict:
    """``{group: rank in [0, 1)}`` of every scored unit among all scored units of all groups
    (0 = lowest score); groups without scores are left out."""
    scored = [g for g in gates if g in scores]
    flat = np.concatenate([np.asarray(scores[g], np.float64) for g in scored]) if scored else np.zeros(0)
    rank = np.empty(len(flat))
    rank[np.argsort(flat, kind="stable")] = np.arange(len(flat)) / max(len(flat), 1)
    out, offset = {}, 0
    for g in scored:
        n = gates[g].units
        out[g] = rank[offset:offset + n]
        offset += n
    return out


def set_ranked_log_alpha(gated, scores: dict, low: float, high: float, unscored: float | None = None) -> None:
    """Set every scored gate's ``log_alpha = low + (high - low) * global rank`` (so a unit's gate
    order follows its score); unscored gates get ``unscored`` (``None``: left as they are)."""
    gates = gate_layers(gated)
    ranks = global_ranks(gates, scores)
    for group, gate in gates.items():
        if group in ranks:
            gate.log_alpha.assign((low + (high - low) * ranks[group]).astype(np.float32))
        elif unscored is not None:
            gate.log_alpha.assign(np.full(gate.units, unscored, np.float32))


__all__ = ["prune_to_budget", "global_ranks", "set_ranked_log_alpha"]
