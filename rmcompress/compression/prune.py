"""``prune``: tfmot magnitude pruning with fine-tuning, stripped for the user.

Each selected layer (:func:`rmcompress.compression.targets.select_layers`; the reward head stays dense
by default) is wrapped with ``tfmot.sparsity.keras.prune_low_magnitude``: built-in Dense, Conv1D
and Embedding through tfmot's registry, the project's attention layers and ``FactorizedEmbedding``
through their ``get_prunable_weights`` (tfmot's ``PrunableLayer`` interface). Schedules:

- ``polynomial``: ``PolynomialDecay(initial_sparsity -> sparsity)`` over the first 70% of ``steps``,
  then fine-tuning at the final sparsity;
- ``constant``: ``ConstantSparsity(sparsity)`` from step 0.

``m_by_n: [2, 4]`` prunes 2 of every 4 consecutive input weights (tfmot's m-by-n pattern) in layers
whose pruned weights are all matrices; others (Conv1D kernels are rank 3) get the unstructured
schedule. ``steps: 0`` prunes once by magnitude with no weight update. Training runs with
``UpdatePruningStep`` (and ``PruningSummaries`` when ``summaries_dir`` is set); afterwards the masks
are applied and ``strip_pruning`` returns a plain model with the same layers (the check: its outputs
equal the wrapped model's). The note reports the sparsity of every pruned weight.

Pruning alone does not make a TFLite model smaller or faster (weights stay dense): it pays off
gzipped, with clustering, and with ``EXPERIMENTAL_SPARSITY`` export (see the recipes README).
"""
from __future__ import annotations

import numpy as np

from rmcompress._keras import keras
from rmcompress.compression.finetune import capped_steps, finetune
from rmcompress.compression.fuse import max_abs_diff
from rmcompress.compression.settings import PruneSettings
from rmcompress.compression.state import CompressState
from rmcompress.compression.targets import copy_model, keep_mask, select_layers, weight_arrays
from rmcompress.errors import ModelError, RecipeError


def _schedule(sp, schedule: str, sparsity: float, initial: float, steps: int, frequency: int):
    steps = max(1, steps)
    freq = max(1, min(frequency, steps))
    if schedule == "constant":
        return sp.ConstantSparsity(sparsity, begin_step=0, frequency=freq)
    end = max(freq, (int(0.7 * steps) // freq) * freq)
    return sp.PolynomialDecay(initial_sparsity=initial, final_sparsity=sparsity, begin_step=0,
                              end_step=end, frequency=freq)


def sparsity_report(model: keras.Model, names: list[str]) -> dict:
    """``{layer: {weight: fraction of zeros}}`` plus ``overall`` over those weights."""
    out, zeros, total = {}, 0, 0
    for n in names:
        arrays = weight_arrays(model.get_layer(n))
        out[n] = {k: float(np.mean(v == 0)) for k, v in arrays.items()}
        zeros += sum(int(np.sum(v == 0)) for v in arrays.values())
        total += sum(v.size for v in arrays.values())
    return {"layers": out, "overall": zeros / total if total else 0.0}


def prune(model: keras.Model, state: CompressState,
          settings: PruneSettings = PruneSettings()) -> tuple[keras.Model, dict]:
    """Prune ``model`` (a copy; the input is untouched); return ``(stripped_model, note)``."""
    s = settings
    sparsity, schedule, initial_sparsity, m_by_n = s.sparsity, s.schedule, s.initial_sparsity, s.m_by_n
    layers, embedding, summaries_dir = s.layers, s.embedding, s.summaries_dir
    steps, learning_rate, batch_size = s.steps, s.learning_rate, s.batch_size
    import tensorflow_model_optimization as tfmot

    from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import PruneLowMagnitude

    sp = tfmot.sparsity.keras
    base = copy_model(model)
    names = select_layers(base, layers, embedding)
    if not names:
        raise RecipeError("prune: no layer selected (check layers.include/exclude and embedding)")
    requested, steps = steps, capped_steps(state, steps, batch_size)
    sched = _schedule(sp, schedule, sparsity, initial_sparsity, steps, s.frequency)
    m_by_n_layers = []

    def wrap(layer):
        if layer.name not in names:
            return layer
        mbn = None
        if m_by_n:
            ranks = [len(v.shape) for v in weight_arrays(layer).values()]
            if all(r == 2 for r in ranks):
                mbn = tuple(m_by_n)
                m_by_n_layers.append(layer.name)
        try:
            return keep_mask(sp.prune_low_magnitude(layer, pruning_schedule=sched, sparsity_m_by_n=mbn), layer)
        except ValueError as e:
            raise ModelError(f"prune: layer {layer.name!r} ({type(layer).__name__}) cannot be pruned: "
                             f"{str(e).splitlines()[0][:200]}") from None

    wrapped = keras.models.clone_model(base, clone_function=wrap)
    callbacks = [sp.UpdatePruningStep()]
    if summaries_dir:
        try:
            import tensorboard  # noqa: F401  (tf.summary needs it)
        except ImportError:
            raise RecipeError("prune.summaries_dir: PruningSummaries needs the tensorboard package "
                              "(pip install tensorboard)") from None
        callbacks.append(sp.PruningSummaries(log_dir=str(summaries_dir)))
    if steps > 0:
        history = finetune(wrapped, state, steps, learning_rate, batch_size, callbacks)
    else:  # one mask update at step 0, no weight change
        history = finetune(wrapped, state, 1, 0.0, batch_size, callbacks)
    for layer in wrapped.layers:
        if isinstance(layer, PruneLowMagnitude):
            for w, mask, _ in layer.pruning_vars:
                w.assign(w * mask)
    reference = state.val_ids(256)
    stripped = copy_model(sp.strip_pruning(wrapped))
    diff = max_abs_diff(wrapped, stripped, reference)
    if diff > 1e-5:
        raise ModelError(f"prune: stripped model differs from the pruned model by {diff:.3g}")
    rep = sparsity_report(stripped, names)
    note = {"layers": names, "target_sparsity": sparsity, "schedule": schedule,
            "m_by_n": list(m_by_n) if m_by_n else None, "m_by_n_layers": m_by_n_layers, "steps": steps, "steps_requested": requested,
            "sparsity": rep["layers"], "overall_sparsity": rep["overall"], "strip_max_abs_diff": diff}
    if history:
        note["final_train_loss"] = history.get("loss", [None])[-1]
    return stripped, note
