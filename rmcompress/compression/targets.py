"""Which layers a weight pass (prune, cluster, QAT) touches, and copying models safely.

Weight-bearing layer types the architectures use: Dense, Conv1D, Embedding, the project's
``MultiHeadSelfAttention`` (and its fused form), ``FactorizedEmbedding`` and ``PositionEmbedding``
(a learned ``[max_length, d]`` table). Selection: every such layer, minus embeddings (token and
position tables) when ``embedding`` is false, restricted to names matching any ``include``
regex (when given), minus names matching any ``exclude`` regex. The default ``exclude`` keeps the
one-unit reward head dense (``reward``, and in a user's model whatever its name, the weight layer
that computes the output: :func:`head_layer`): it is tiny and every decision goes through it.

:func:`keep_mask`: a tfmot wrapper (pruning, clustering) around a layer that makes or passes a
padding mask (``Embedding(mask_zero=True)``, a Dense on a masked sequence) passes that mask on as
the layer does, so the wrapped model computes what the stripped one will.
"""
from __future__ import annotations

import re

from rmcompress._keras import keras
from rmcompress.compression.graph import Graph, rebuild
from rmcompress.errors import RecipeError
from rmcompress.layers.compressed import FactorizedEmbedding, FusedQKVSelfAttention
from rmcompress.layers.encoder import MultiHeadSelfAttention, PositionEmbedding

EMBEDDINGS = (keras.layers.Embedding, FactorizedEmbedding, PositionEmbedding)
WEIGHT_LAYERS = (keras.layers.Dense, keras.layers.Conv1D, MultiHeadSelfAttention,
                 FusedQKVSelfAttention) + EMBEDDINGS
DEFAULT_EXCLUDE = ["^reward$"]


def head_layer(model: keras.Model) -> str | None:
    """The weight layer that computes the model's output, following weightless layers (a
    ``Reshape``, a squeeze) back from the output; ``None`` when there is none."""
    g = Graph(model)
    name = g.config["output_layers"][0][0]
    while True:
        if model.get_layer(name).weights:
            return name
        inputs = g.inputs_of(name)
        if len(inputs) != 1:
            return None
        name = inputs[0]


def select_layers(model: keras.Model, layers: dict | None = None, embedding: bool = True) -> list[str]:
    """Names of the layers a weight pass applies to (module docstring)."""
    layers = layers or {}
    include = layers.get("include")
    exclude = layers.get("exclude")
    if exclude is None:
        head = head_layer(model)
        exclude = DEFAULT_EXCLUDE + ([f"^{re.escape(head)}$"] if head else [])
    pats = {}
    for key, pat in [("include", p) for p in include or []] + [("exclude", p) for p in exclude]:
        try:
            pats[pat] = re.compile(pat)
        except re.error as e:
            raise RecipeError(f"layers.{key}: {pat!r} is not a valid regular expression ({e})") from None
    out = []
    for layer in model.layers:
        if not isinstance(layer, WEIGHT_LAYERS) or (not embedding and isinstance(layer, EMBEDDINGS)):
            continue
        if include is not None and not any(pats[p].search(layer.name) for p in include):
            continue
        if any(pats[p].search(layer.name) for p in exclude):
            continue
        out.append(layer.name)
    return out


def keep_mask(wrapper, layer):
    """``wrapper`` (around ``layer``) computes the padding mask ``layer`` computes (module docstring)."""
    wrapper.supports_masking = layer.supports_masking or isinstance(layer, keras.layers.Embedding)
    wrapper.compute_mask = layer.compute_mask
    # the wrapper's ``call(**kwargs)`` would hand a mask to a layer whose ``call`` takes none
    wrapper._call_spec.expects_mask_arg = layer._expects_mask_arg  # noqa: SLF001
    return wrapper


def copy_model(model: keras.Model) -> keras.Model:
    """An independent copy (new layers, same weights): passes never mutate their input model."""
    return rebuild(model, Graph(model), name=model.name)


def weight_arrays(layer) -> dict:
    """``{short weight name: numpy}`` of the kernels a weight pass acts on."""
    if hasattr(layer, "get_prunable_weights"):
        ws = layer.get_prunable_weights()
    elif isinstance(layer, keras.layers.Embedding):
        ws = [layer.embeddings]
    else:
        ws = [layer.kernel]
    return {w.name.split("/")[-1].split(":")[0]: w.numpy() for w in ws}
