"""A gated version of a plain rmcompress scorer: the same architecture rebuilt with hard-concrete
gates on its prunable groups (:class:`rmcompress.models.gating.GateBuilder`), every weight copied,
every gate open."""
from __future__ import annotations

from rmcompress._keras import keras
from rmcompress.layers.gates import DEFAULT_INIT_LOG_ALPHA
from rmcompress.models.architectures import build_reward_model
from rmcompress.models.structure import infer_arch_config


def gated_copy(model, gate_vocab: bool = False, groups=None, init_log_alpha: float = DEFAULT_INIT_LOG_ALPHA,
               seed: int = 0) -> keras.Model:
    """A gated version of a plain rmcompress scorer with the same weights (all gates open)."""
    cfg = infer_arch_config(model)
    gated = build_reward_model(cfg, gated=True, gate_groups=groups,
                               gate_options={"gate_vocab": gate_vocab, "init_log_alpha": init_log_alpha,
                                             "seed": seed})
    for layer in model.layers:
        if layer.weights:
            gated.get_layer(layer.name).set_weights(layer.get_weights())
    return gated


__all__ = ["gated_copy"]
