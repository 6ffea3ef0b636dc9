"""One-shot structured pruning to a budget from per-unit importance scores, by method.

Two scores, one selection:

- ``magnitude`` (:func:`rmcompress.structured.magnitude.unit_scores`): the mean absolute weight
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

Either score goes through :func:`rmcompress.structured.importance.prune_to_budget` (units
ranked globally, the highest-ranked that fit the budget kept). Taylor scores need the gradient of
the training loss, so this module sits with training; the selection and the magnitude scores do
not train and sit in :mod:`rmcompress.structured`.
"""
from __future__ import annotations

import math

import numpy as np

from rmcompress._keras import tf
from rmcompress.config.choices import BUDGET_METHODS
from rmcompress.errors import UsageError
from rmcompress.layers.gates import BETA, GAMMA, ZETA, L0Gate, gate_layers
from rmcompress.structured.gating import gated_copy
from rmcompress.structured.importance import prune_to_budget
from rmcompress.structured.magnitude import normalised_scores
from rmcompress.training.model import RewardTrainingModel

#: importance methods :func:`importance_prune` knows (the ``budget`` pass's methods but ``gates``)
METHODS = tuple(m for m in BUDGET_METHODS if m != "gates")
#: log_alpha whose deterministic gate is ``1 - 1e-4``: inside the clip, so d z / d log_alpha > 0
_LINEAR_EDGE = BETA * math.log(((1.0 - 1e-4) - GAMMA) / (ZETA - GAMMA) / (1.0 - ((1.0 - 1e-4) - GAMMA) / (ZETA - GAMMA)))


def taylor_scores(model, data, task: str, loss: str, batches: int = 32, batch_size: int = 16,
                  seed: int = 0, build=None, width: bool = False) -> dict:
    """``{group: mean |dL/dz_i|}`` over ``batches`` shuffled training batches of ``data``.

    ``build(scorer) -> RewardTrainingModel`` gives the loss (default: the plain task loss; a
    distilling wrapper when ``data`` carries teacher scores)."""
    gated = gated_copy(model, gate_width=width)
    gates = {g: layer for g, layer in gate_layers(gated).items()
             if isinstance(layer, L0Gate) and not layer.binary and layer.units > 1}
    for gate in gates.values():
        gate.log_alpha.assign(np.full(gate.units, _LINEAR_EDGE, np.float32))
    wrapper = build(gated) if build is not None else RewardTrainingModel(gated, task=task, loss=loss)
    variables = [gates[g].log_alpha for g in gates]
    sums = {g: np.zeros(gates[g].units) for g in gates}
    n = 0
    # full-length batches: the scores are read eagerly, and a model's input takes only its own length
    stream = data.dataset(batch_size, shuffle=True, seed=seed, repeat=True, group_by_length=False)
    for batch in stream.take(batches):
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
                   batches: int = 32, batch_size: int = 16, seed: int = 0, build=None, width: bool = False) -> dict:
    """``{group: per-unit importance}`` of ``model`` by ``method`` (``magnitude`` or ``taylor``)."""
    if method not in METHODS:
        raise UsageError(f"importance method {method!r} unknown; allowed: {', '.join(METHODS)}")
    if method == "magnitude":
        return normalised_scores(model)
    if data is None or len(data) == 0:
        raise UsageError("taylor importance needs training data")
    return taylor_scores(model, data, task, loss, batches, batch_size, seed, build, width)


def importance_prune(model, method: str = "taylor", flops_fraction: float | None = None,
                     params_fraction: float | None = None, data=None, task: str = "pointwise",
                     loss: str = "bce", batches: int = 32, batch_size: int = 16, seed: int = 0, build=None,
                     width: bool = False):
    """``model`` pruned once to the budget by ``method`` scores (see module docstring); ``width``:
    the stream groups (residual width) are scored and pruned too."""
    scores = unit_scores_by(method, model, data, task, loss, batches, batch_size, seed, build, width)
    return prune_to_budget(model, scores, flops_fraction, params_fraction, vocab=params_fraction is not None,
                           width=width)


__all__ = ["METHODS", "taylor_scores", "unit_scores_by", "importance_prune"]
