"""One-shot structured pruning to a budget from per-unit importance scores.

Two scores, one selection:

- ``magnitude`` (:func:`rmcompress.complexity.magnitude.unit_scores`): the mean absolute weight
  of each unit, divided by its group's mean so that groups of different fan-in compare. Free, but
  blind to what the unit does: on a fine-tuned MiniLM, removing 75% of the FLOPs this way leaves
  chance accuracy (0.49 on SST-2 validation).
- ``taylor``: the first-order estimate of the loss change when a unit is removed (Molchanov et
  al. 2019; Michel et al. 2019 for attention heads). Every prunable unit is given a gate ``z_i``
  (the same hard-concrete gate layers budget training uses, set to ``z_i = 1 - 1e-4``, inside
  their differentiable range), and over ``batches`` training batches::

      score_i = mean over batches of | d loss / d z_i |

  (removing unit ``i`` moves ``z_i`` by -1, so ``|dL/dz_i|`` is the first-order loss change). The
  scores are losses, comparable across groups without normalisation. Same MiniLM, 75% of the FLOPs
  removed: 0.71 before any fine-tuning.

:func:`prune_to_budget` turns any ``{group: scores}`` into the plain smaller model: units are
ranked globally by score, and ``project_to_budget`` (the budget projection of gated training)
keeps the highest-ranked units that fit, so FLOPs/params land on the budget to the granularity of
one unit. Whole blocks are not scored: a block goes when all its units are gone. Kept units keep
their weights unchanged (``shrink``'s output equals the gated model's).
"""
from __future__ import annotations

import math

import numpy as np

from rmcompress.choices import BUDGET_METHODS
from rmcompress.complexity.gates import BETA, GAMMA, ZETA, L0Gate, gate_layers, gated_copy
from rmcompress.complexity.shrink import project_to_budget, shrink
from rmcompress.complexity.structure import infer_arch_config, structure_for
from rmcompress.errors import UsageError

#: importance methods :func:`importance_prune` knows (the ``budget`` pass's methods but ``gates``)
METHODS = tuple(m for m in BUDGET_METHODS if m != "gates")
#: log_alpha whose deterministic gate is ``1 - 1e-4``: inside the clip, so d z / d log_alpha > 0
_LINEAR_EDGE = BETA * math.log(((1.0 - 1e-4) - GAMMA) / (ZETA - GAMMA) / (1.0 - ((1.0 - 1e-4) - GAMMA) / (ZETA - GAMMA)))


def prune_to_budget(model, scores: dict, flops_fraction: float | None = None,
                    params_fraction: float | None = None, vocab: bool = False):
    """The plain scorer keeping, in decreasing ``scores`` order, the units that fit the budget."""
    if flops_fraction is None and params_fraction is None:
        raise UsageError("prune_to_budget needs flops_fraction and/or params_fraction")
    gated = gated_copy(model, gate_vocab=vocab)
    structure = structure_for(infer_arch_config(gated))
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


def taylor_scores(model, data, task: str, loss: str, batches: int = 32, batch_size: int = 16,
                  seed: int = 0, build=None) -> dict:
    """``{group: mean |dL/dz_i|}`` over ``batches`` shuffled training batches of ``data``.

    ``build(scorer) -> RewardTrainingModel`` gives the loss (default: the plain task loss; a
    distilling wrapper when ``data`` carries teacher scores)."""
    from rmcompress._keras import tf
    from rmcompress.training.model import RewardTrainingModel

    gated = gated_copy(model)
    gates = {g: layer for g, layer in gate_layers(gated).items()
             if isinstance(layer, L0Gate) and not layer.binary and layer.units > 1}
    for gate in gates.values():
        gate.log_alpha.assign(np.full(gate.units, _LINEAR_EDGE, np.float32))
    wrapper = build(gated) if build is not None else RewardTrainingModel(gated, task=task, loss=loss)
    variables = [gates[g].log_alpha for g in gates]
    sums = {g: np.zeros(gates[g].units) for g in gates}
    n = 0
    for batch in data.dataset(batch_size, shuffle=True, seed=seed, repeat=True).take(batches):
        with tf.GradientTape() as tape:
            per_example, _ = wrapper.task_losses(batch, training=False)
            value = tf.reduce_mean(per_example)
        for g, grad in zip(gates, tape.gradient(value, variables)):
            sums[g] += np.abs(grad.numpy())
        n += 1
    # d z / d log_alpha is the same positive constant for every gate at _LINEAR_EDGE: divide it out
    s = 1.0 / (1.0 + math.exp(-_LINEAR_EDGE / BETA))
    dz = (ZETA - GAMMA) * s * (1.0 - s) / BETA
    return {g: sums[g] / max(n, 1) / dz for g in gates}


def unit_scores_by(method: str, model, data=None, task: str = "pointwise", loss: str = "bce",
                   batches: int = 32, batch_size: int = 16, seed: int = 0, build=None) -> dict:
    """``{group: per-unit importance}`` of ``model`` by ``method`` (``magnitude`` or ``taylor``)."""
    if method not in METHODS:
        raise UsageError(f"importance method {method!r} unknown; allowed: {', '.join(METHODS)}")
    if method == "magnitude":
        from rmcompress.complexity.magnitude import normalised_scores

        return normalised_scores(model)
    if data is None or len(data) == 0:
        raise UsageError("taylor importance needs training data")
    return taylor_scores(model, data, task, loss, batches, batch_size, seed, build)


def importance_prune(model, method: str = "taylor", flops_fraction: float | None = None,
                     params_fraction: float | None = None, data=None, task: str = "pointwise",
                     loss: str = "bce", batches: int = 32, batch_size: int = 16, seed: int = 0, build=None):
    """``model`` pruned once to the budget by ``method`` scores (see module docstring)."""
    scores = unit_scores_by(method, model, data, task, loss, batches, batch_size, seed, build)
    return prune_to_budget(model, scores, flops_fraction, params_fraction, vocab=params_fraction is not None)


__all__ = ["METHODS", "prune_to_budget", "global_ranks", "set_ranked_log_alpha", "taylor_scores",
           "importance_prune", "unit_scores_by"]
