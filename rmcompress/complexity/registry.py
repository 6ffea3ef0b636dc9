"""Exact FLOPs and parameter counts of a reward model, layer by layer.

Convention (per example, at the model's sequence length ``T``):
- one multiply-accumulate = 2 FLOPs (matmuls, convolutions);
- each elementwise arithmetic op (bias add, residual add, mask multiply, activation, division)
  = 1 FLOP per output element;
- softmax = 3 FLOPs per element (exp, sum, divide); LayerNormalization = 7 FLOPs per element
  (mean, subtract, square, variance, normalise, scale, shift);
- embedding lookups, comparisons, casts, reshapes, transposes, concatenation, dropout = 0 FLOPs;
- params = every weight, trainable or not.

An unknown layer type is an error naming the layer and its class, never a silent zero.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pandas as pd

from rmcompress._keras import keras
from rmcompress.errors import ModelError
from rmcompress.models import layers as L


def _prod(xs) -> int:
    out = 1
    for x in xs:
        out *= int(x)
    return out


def _shape(s):
    """First input's shape without the batch dimension."""
    if isinstance(s, list):
        s = s[0]
    return tuple(int(d) for d in s[1:])


def _positions(shape) -> int:
    """Number of vectors a per-vector op is applied to (all dims but the last)."""
    return _prod(shape[:-1]) if len(shape) > 1 else 1


_ACT_FLOPS = {"linear": 0, None: 0, "relu": 1, "gelu": 8, "tanh": 1, "sigmoid": 3, "swish": 4, "silu": 4,
              "gelu_tanh": 9}


def _activation_name(layer) -> str | None:
    act = getattr(layer, "activation", None)
    return getattr(act, "__name__", None)


def _dense(layer, in_shape, out_shape):
    n_in, n_out = in_shape[-1], out_shape[-1]
    p = _positions(in_shape)
    act = _ACT_FLOPS.get(_activation_name(layer), 1)
    flops = 2 * n_in * n_out * p + (n_out * p if layer.use_bias else 0) + act * n_out * p
    return flops


def _conv1d(layer, in_shape, out_shape):
    t_out, f = out_shape
    k, c_in = layer.kernel_size[0], in_shape[-1]
    act = _ACT_FLOPS.get(_activation_name(layer), 1)
    return 2 * k * c_in * f * t_out + (f * t_out if layer.use_bias else 0) + act * f * t_out


def _attention(layer, in_shape, out_shape):
    t, d = in_shape
    h, dh = layer.num_heads, layer.head_dim
    inner, o = h * dh, out_shape[-1]
    proj = 3 * (2 * d * inner + inner) * t
    scores = 2 * t * t * inner + h * t * t  # q k^T and the 1/sqrt(dh) scale
    mask = 3 * h * t * t  # s * m + (m - 1) * bound
    softmax = 3 * h * t * t
    context = 2 * t * t * inner
    out = (2 * inner * o + o) * t
    return proj + scores + mask + softmax + context + out


def _elementwise(n_per_elem: int):
    return lambda layer, in_shape, out_shape: n_per_elem * _prod(out_shape)


def _pool_mean(layer, in_shape, out_shape):
    return 2 * _prod(in_shape) + out_shape[-1]


def _pool_max(layer, in_shape, out_shape):
    return 2 * _prod(in_shape)


def _zero(layer, in_shape, out_shape):
    return 0


FlopsFn = Callable[[keras.layers.Layer, tuple, tuple], int]

#: layer class -> FLOPs function ``(layer, input_shape, output_shape) -> int`` (no batch dim)
FLOPS: dict[type, FlopsFn] = {
    keras.layers.InputLayer: _zero,
    keras.layers.Embedding: _zero,
    keras.layers.Dropout: _zero,
    keras.layers.Concatenate: _zero,
    keras.layers.Dense: _dense,
    keras.layers.Conv1D: _conv1d,
    keras.layers.LayerNormalization: _elementwise(7),
    keras.layers.Add: _elementwise(1),
    keras.layers.ReLU: _elementwise(1),
    L.PaddingMask: _zero,
    L.PositionEmbedding: _elementwise(1),
    L.ApplyMask: _elementwise(1),
    L.MaskedMeanPooling: _pool_mean,
    L.MaskedMaxPooling: _pool_max,
    L.MultiHeadSelfAttention: _attention,
    L.BiasAdd: _elementwise(1),
}


def register(layer_class: type, flops_fn: FlopsFn) -> None:
    """Teach the registry a new layer type."""
    FLOPS[layer_class] = flops_fn


@dataclass
class ComplexityReport:
    """Totals and a per-layer table (columns: layer, type, flops, params)."""

    flops: int
    params: int
    table: pd.DataFrame

    def as_dict(self) -> dict:
        return {"flops": int(self.flops), "params": int(self.params)}


def layer_flops(layer) -> int:
    fn = FLOPS.get(type(layer))
    if fn is None:
        raise ModelError(f"layer {layer.name!r} of class {type(layer).__name__} is unknown to the "
                         f"complexity registry; register it in rmcompress.complexity.registry")
    if isinstance(layer, keras.layers.InputLayer):
        return 0
    return int(fn(layer, _shape(layer.input_shape), _shape(layer.output_shape)))


def count(model: keras.Model) -> ComplexityReport:
    """Exact FLOPs per example and params of a functional tf_keras model (see module docstring)."""
    rows = []
    for layer in model.layers:
        rows.append({"layer": layer.name, "type": type(layer).__name__, "flops": layer_flops(layer),
                     "params": int(sum(_prod(w.shape) for w in layer.weights))})
    table = pd.DataFrame(rows, columns=["layer", "type", "flops", "params"])
    return ComplexityReport(int(table["flops"].sum()), int(table["params"].sum()), table)
