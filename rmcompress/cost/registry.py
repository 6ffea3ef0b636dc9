"""The registry of per-layer facts: FLOPs and params of every layer type, as functions of the
layer's shapes and of how many units of each of its *roles* are alive.

One set of formulas serves four users:

- exact counting of a plain model (every role at its full size, integers):
  :func:`rmcompress.models.structure.count`;
- the differentiable complexity penalty (roles fed with *expected* numbers of open gates, float
  tensors): :class:`CostModel` with ``alive`` from ``rmcompress.layers.gates``;
- shrinking (``LayerFacts.slices`` says which axis of which weight belongs to which role, and
  ``LayerFacts.units`` how many elements one unit spans, e.g. ``head_dim`` for an attention head);
- reports (the per-layer table of ``count``).

A *role* is a layer-local dimension (``in``/``out`` of a Dense, ``heads`` of an attention layer,
``rows``/``width`` of an embedding). The mapping of roles onto the model's prunable groups (which
gate controls which dimension) is architecture knowledge and lives in
``rmcompress.models.groups``.

Convention (per example, at the model's sequence length ``T``; ``P`` = positions a per-vector op
runs over, i.e. every input dim but the last):

- one multiply-accumulate = 2 FLOPs (matmuls, convolutions, attention products);
- bias add, residual add, mask multiply, scale multiply, division = 1 FLOP per output element;
  a reduction (sum, max) over ``n`` elements = ``n - 1`` FLOPs per output;
- activations per output element: relu 1, tanh 1, sigmoid 3, swish/silu 4, gelu 8, linear 0;
- softmax = 3 FLOPs per element (exp, sum, divide; the max-subtraction for stability is not
  counted); LayerNormalization = 7 FLOPs per element (mean, subtract, square, variance,
  normalise, scale, shift; the per-position epsilon add and rsqrt are not counted);
- embedding lookups, index remapping, comparisons, casts, reshapes, transposes, concatenation,
  dropout = 0 FLOPs; gate layers = 0 FLOPs and 0 params (they are removed by ``shrink``);
- params = every float weight, trainable or not (an int32 index table such as ``TokenRemap`` is
  data, not params; its bytes show in the file size).

FLOPs are split into *parts* (``matmul``, ``bias``, ``elementwise``, ``activation``, ``max``,
``softmax``, ``norm``) so they can be compared op class by op class with the TensorFlow profiler
(see ``tests/cost/test_registry.py``).

An unknown layer type is an error naming the layer and its class, never a silent zero.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from rmcompress._keras import TFOpLambda, keras, tf
from rmcompress.errors import ModelError
from rmcompress.layers import compressed as C
from rmcompress.layers import encoder as L
from rmcompress.layers import gates as G

#: FLOP parts (see module docstring)
PARTS = ("matmul", "bias", "elementwise", "activation", "max", "softmax", "norm")

_ACT_FLOPS = {"linear": 0, None: 0, "relu": 1, "gelu": 8, "tanh": 1, "sigmoid": 3, "swish": 4, "silu": 4,
              "gelu_tanh": 9}


# -- small helpers that work on Python numbers and on float tensors alike -------------------------
def _prod(xs) -> int:
    out = 1
    for x in xs:
        out *= int(x)
    return out


def min1(x):
    """``min(1, x)``: for an integer count, 1 if any unit is alive; differentiable on tensors."""
    if isinstance(x, (int, float, np.integer, np.floating)):
        return min(1, x)
    if isinstance(x, Poly):
        return x.min1()
    return tf.minimum(tf.cast(1.0, x.dtype), x)


class Poly:
    """A polynomial in the groups' alive counts (and their ``min(1, .)``): the registry formulas
    evaluated symbolically once, so the training graph computes E[FLOPs]/E[params] with a handful
    of vector ops instead of one op per formula term (see :class:`CompiledCost`)."""

    __slots__ = ("terms",)

    def __init__(self, terms: dict):
        self.terms = {k: v for k, v in terms.items() if v != 0}

    @staticmethod
    def symbol(name: str) -> "Poly":
        return Poly({(name,): 1.0})

    @staticmethod
    def _coerce(other) -> "Poly":
        return other if isinstance(other, Poly) else Poly({(): float(other)})

    def __add__(self, other):
        out = dict(self.terms)
        for k, v in Poly._coerce(other).terms.items():
            out[k] = out.get(k, 0.0) + v
        return Poly(out)

    __radd__ = __add__

    def __mul__(self, other):
        other = Poly._coerce(other)
        out: dict = {}
        for k1, v1 in self.terms.items():
            for k2, v2 in other.terms.items():
                k = tuple(sorted(k1 + k2))
                out[k] = out.get(k, 0.0) + v1 * v2
        return Poly(out)

    __rmul__ = __mul__

    def __sub__(self, other):
        return self + Poly._coerce(other) * -1.0

    def min1(self) -> "Poly":
        if not self.terms:
            return Poly({})
        if list(self.terms) == [()]:
            return Poly({(): min(1.0, self.terms[()])})
        if len(self.terms) == 1:
            (k, v), = self.terms.items()
            if len(k) == 1 and v == 1.0 and not k[0].startswith("min1:"):
                return Poly.symbol("min1:" + k[0])
        raise ValueError("min(1, .) is only defined on a single group count")


def _is_number(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating))


@dataclass(frozen=True)
class Shapes:
    """Per-example shapes (no batch dim) of a layer's first input and its output."""

    inp: tuple
    out: tuple

    @property
    def positions(self) -> int:
        return _prod(self.inp[:-1]) if len(self.inp) > 1 else 1


def _shape(s) -> tuple:
    if isinstance(s, list):
        s = s[0]
    if s is None:
        return ()
    return tuple(int(d) if d is not None else 1 for d in s[1:])


def _activation_flops(layer, name: str | None = None) -> int:
    if name is None:
        act = getattr(layer, "activation", None)
        name = getattr(act, "__name__", None)
    if name not in _ACT_FLOPS:
        raise ModelError(f"layer {layer.name!r}: activation {name!r} has no FLOPs convention in the "
                         f"complexity registry (known: {sorted(k for k in _ACT_FLOPS if k)})")
    return _ACT_FLOPS[name]


# -- the facts ----------------------------------------------------------------------------------
RolesFn = Callable[[Any], dict]
FlopsFn = Callable[[Any, Shapes, dict], dict]
ParamsFn = Callable[[Any, Shapes, dict], Any]


@dataclass(frozen=True)
class LayerFacts:
    """What the registry knows about one layer class.

    ``roles(layer)`` -> full size of each role; ``flops(layer, shapes, dims)`` -> {part: FLOPs};
    ``params(layer, shapes, dims)`` -> params; ``dims`` holds every role's alive size (an int or
    a float tensor). ``slices``: weight attribute -> ((role, axis), ...). ``units(layer)`` ->
    elements per unit of a role along its axes (default 1).
    """

    flops: FlopsFn
    params: ParamsFn
    roles: RolesFn = lambda layer: {}
    slices: dict = field(default_factory=dict)
    units: Callable[[Any], dict] = lambda layer: {}


def _zero_flops(layer, s, d):
    return {}


def _zero_params(layer, s, d):
    return 0


ZERO = LayerFacts(_zero_flops, _zero_params)


# Dense ---------------------------------------------------------------------------------------------
def _dense_roles(layer):
    return {"in": int(layer.kernel.shape[0]), "out": int(layer.kernel.shape[1])}


def _dense_flops(layer, s, d):
    i, o, p = d["in"], d["out"], s.positions
    return {"matmul": 2 * i * o * p, "bias": o * p if layer.use_bias else 0,
            "activation": _activation_flops(layer) * o * p}


def _dense_params(layer, s, d):
    return d["in"] * d["out"] + (d["out"] if layer.use_bias else 0)


DENSE = LayerFacts(_dense_flops, _dense_params, _dense_roles,
                   {"kernel": (("in", 0), ("out", 1)), "bias": (("out", 0),)})


# Conv1D --------------------------------------------------------------------------------------------
def _conv_roles(layer):
    return {"in": int(layer.kernel.shape[1]), "out": int(layer.kernel.shape[2])}


def _conv_flops(layer, s, d):
    k, t_out = int(layer.kernel_size[0]), s.out[0]
    i, o = d["in"], d["out"]
    if int(getattr(layer, "groups", 1)) != 1:
        raise ModelError(f"layer {layer.name!r}: grouped Conv1D is not in the complexity registry")
    return {"matmul": 2 * k * i * o * t_out, "bias": o * t_out if layer.use_bias else 0,
            "activation": _activation_flops(layer) * o * t_out}


def _conv_params(layer, s, d):
    return int(layer.kernel_size[0]) * d["in"] * d["out"] + (d["out"] if layer.use_bias else 0)


CONV1D = LayerFacts(_conv_flops, _conv_params, _conv_roles,
                    {"kernel": (("in", 1), ("out", 2)), "bias": (("out", 0),)})


# Embedding -----------------------------------------------------------------------------------------
EMBEDDING = LayerFacts(
    _zero_flops, lambda layer, s, d: d["rows"] * d["width"],
    lambda layer: {"rows": int(layer.input_dim), "width": int(layer.output_dim)},
    {"embeddings": (("rows", 0), ("width", 1))})


# LayerNormalization ------------------------------------------------------------------------------
def _ln_roles(layer):
    axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    if len(axes) != 1 or axes[0] not in (-1, len(layer.input_shape) - 1):
        raise ModelError(f"layer {layer.name!r}: LayerNormalization over axes {axes} is not in the "
                         f"complexity registry (only the last axis)")
    return {"width": int(layer.input_shape[-1])}


LAYER_NORM = LayerFacts(
    lambda layer, s, d: {"norm": 7 * s.positions * d["width"]},
    lambda layer, s, d: d["width"] * (int(bool(layer.center)) + int(bool(layer.scale))),
    _ln_roles, {"gamma": (("width", 0),), "beta": (("width", 0),)})


# elementwise / pooling ---------------------------------------------------------------------------
def _last_dim_roles(layer):
    return {"width": int(_shape(layer.output_shape)[-1])}


def _add_flops(layer, s, d):
    n_inputs = len(layer.input_shape) if isinstance(layer.input_shape, list) else 2
    return {"elementwise": (n_inputs - 1) * s.positions * d["width"]}


ADD = LayerFacts(_add_flops, _zero_params, _last_dim_roles)
APPLY_MASK = LayerFacts(lambda layer, s, d: {"elementwise": s.positions * d["width"]}, _zero_params,
                        _last_dim_roles)
POSITION_EMBEDDING = LayerFacts(
    lambda layer, s, d: {"elementwise": s.positions * d["width"]},
    lambda layer, s, d: int(layer.max_length) * d["width"], _last_dim_roles,
    {"position_embeddings": (("width", 1),)})


def _mean_pool_flops(layer, s, d):
    t, w = s.inp[0], d["width"]
    # x*m (T w), sum over time ((T-1) w), sum of the mask (T-1), max(count, 1) (1), divide (w)
    return {"elementwise": t * w + (t - 1) * w + (t - 1) + 1 + w}


def _max_pool_flops(layer, s, d):
    t, w = s.inp[0], d["width"]
    mult = 3 if layer.floor else 1  # x*m (+ floor*(1-m) and the add when floor != 0)
    return {"elementwise": mult * t * w, "max": (t - 1) * w}


MEAN_POOL = LayerFacts(_mean_pool_flops, _zero_params, _last_dim_roles)
MAX_POOL = LayerFacts(_max_pool_flops, _zero_params, _last_dim_roles)


def _activation_layer_flops(layer, s, d):
    name = "relu" if isinstance(layer, keras.layers.ReLU) else getattr(layer.activation, "__name__", None)
    return {"activation": _activation_flops(layer, name) * s.positions * d["width"]}


ACTIVATION = LayerFacts(_activation_layer_flops, _zero_params, _last_dim_roles)


def _global_pool_flops(kind):
    def fn(layer, s, d):
        t, w = s.inp[0], d["width"]
        if kind == "avg":
            return {"elementwise": (t - 1) * w + w}
        return {"max": (t - 1) * w}
    return fn


# MultiHeadSelfAttention (ours) ----------------------------------------------------------------------
def _mhsa_roles(layer):
    return {"width": int(layer.query_kernel.shape[0]), "heads": int(layer.num_heads),
            "out": int(layer.output_kernel.shape[1])}


def _mhsa_flops(layer, s, d):
    t, dh = s.inp[0], int(layer.head_dim)
    w, h, o = d["width"], d["heads"], d["out"]
    inner = h * dh
    return {
        "matmul": 3 * 2 * w * inner * t          # q, k, v projections
        + 2 * t * t * inner                      # q k^T
        + 2 * t * t * inner                      # softmax(s) v
        + 2 * inner * o * t,                     # output projection
        "bias": 3 * inner * t + o * t,
        "elementwise": h * t * t * int(getattr(layer, "scale_scores", True))  # scale by 1/sqrt(dh)
        + 2 * h * t * t + 2 * t * min1(h),       # s*m + (m-1)*bound (none without heads)
        "softmax": 3 * h * t * t,
    }


def _mhsa_params(layer, s, d):
    inner = d["heads"] * int(layer.head_dim)
    return 3 * (d["width"] * inner + inner) + inner * d["out"] + d["out"]


MHSA = LayerFacts(
    _mhsa_flops, _mhsa_params, _mhsa_roles,
    {"query_kernel": (("width", 0), ("heads", 1)), "query_bias": (("heads", 0),),
     "key_kernel": (("width", 0), ("heads", 1)), "key_bias": (("heads", 0),),
     "value_kernel": (("width", 0), ("heads", 1)), "value_bias": (("heads", 0),),
     "output_kernel": (("heads", 0), ("out", 1)), "output_bias": (("out", 0),)},
    lambda layer: {"heads": int(layer.head_dim)})


# EinsumDense and Keras' MultiHeadAttention (counted at full size; no prunable roles) ---------------
def _einsum_flops(equation: str, input_shape: tuple, kernel_shape: tuple) -> int:
    """2 x the product of every index size of ``input,kernel->output`` (one MAC per index tuple)."""
    lhs = equation.replace(" ", "").split("->")[0]
    term_in, term_k = lhs.split(",")
    sizes: dict = {}
    extra = 1
    for term, shape in ((term_in, input_shape), (term_k, kernel_shape)):
        letters = term.replace("...", "")
        if "..." in term:
            extra *= _prod(shape[: len(shape) - len(letters)]) if term is term_in else 1
        for ch, n in zip(letters[::-1], tuple(shape)[::-1]):
            sizes[ch] = int(n)
    return 2 * _prod(sizes.values()) * extra


def _einsum_dense_flops(layer, s, d):
    mac = _einsum_flops(layer.equation, (1,) + s.inp, tuple(int(x) for x in layer.kernel.shape))
    bias = _prod(s.out) if getattr(layer, "bias", None) is not None else 0
    act = _activation_flops(layer) * _prod(s.out)
    return {"matmul": mac, "bias": bias, "activation": act}


def _weights_params(layer, s, d):
    return int(sum(_prod(w.shape) for w in layer.weights if w.dtype.is_floating))


EINSUM_DENSE = LayerFacts(_einsum_dense_flops, _weights_params)


def _keras_mha_dims(layer):
    """(query input width, key input width, value input width, key dim, value dim, output width)
    from the projection kernels (``[d, heads, k]``; output ``[heads, v, o]``)."""
    q, k, v = (tuple(int(x) for x in sub.kernel.shape)
               for sub in (layer._query_dense, layer._key_dense, layer._value_dense))
    o = int(layer._output_dense.kernel.shape[-1])
    return q[0], k[0], v[0], q[-1], v[-1], o


def _keras_mha_flops(layer, s, d):
    # self-attention over the query's T positions (as the registry is used); h = alive heads
    t = s.inp[0]
    h = d["heads"]
    dq, dk_in, dv_in, dk, dv, o = _keras_mha_dims(layer)
    bias = bool(layer._use_bias)
    return {"matmul": 2 * t * h * (dq * dk + dk_in * dk + dv_in * dv) + 2 * t * t * h * dk + 2 * t * t * h * dv
            + 2 * t * h * dv * o,
            "bias": (t * h * (2 * dk + dv) + t * o) if bias else 0,
            "elementwise": t * h * dk,  # query scaling
            "softmax": 3 * h * t * t}


def _keras_mha_params(layer, s, d):
    h = d["heads"]
    dq, dk_in, dv_in, dk, dv, o = _keras_mha_dims(layer)
    bias = bool(layer._use_bias)
    return h * (dq * dk + dk_in * dk + dv_in * dv + dv * o) + ((h * (2 * dk + dv) + o) if bias else 0)


#: Keras' MultiHeadAttention: role ``heads`` (the weights live on its projection sub-layers)
KERAS_MHA = LayerFacts(
    _keras_mha_flops, _keras_mha_params, lambda layer: {"heads": int(layer._num_heads)},
    {"_query_dense.kernel": (("heads", 1),), "_query_dense.bias": (("heads", 0),),
     "_key_dense.kernel": (("heads", 1),), "_key_dense.bias": (("heads", 0),),
     "_value_dense.kernel": (("heads", 1),), "_value_dense.bias": (("heads", 0),),
     "_output_dense.kernel": (("heads", 0),)})

# BiasAdd (what a post-LN sub-layer with no units left adds): one add per element, width params.
BIAS_ADD = LayerFacts(lambda layer, s, d: {"bias": s.positions * d["width"]},
                      lambda layer, s, d: d["width"], _last_dim_roles, {"bias": (("width", 0),)})

# TokenRemap: an int32 index table (data, not params), 0 FLOPs.
TOKEN_REMAP = LayerFacts(_zero_flops, _zero_params)

#: layer class -> its facts (the project's own layers: :mod:`rmcompress.layers`).
REGISTRY: dict[type, LayerFacts] = {
    keras.layers.InputLayer: ZERO,
    keras.layers.Dropout: ZERO,
    keras.layers.Concatenate: ZERO,
    keras.layers.Flatten: ZERO,
    keras.layers.Reshape: ZERO,
    keras.layers.Embedding: EMBEDDING,
    keras.layers.Dense: DENSE,
    keras.layers.EinsumDense: EINSUM_DENSE,
    keras.layers.MultiHeadAttention: KERAS_MHA,
    keras.layers.Conv1D: CONV1D,
    keras.layers.LayerNormalization: LAYER_NORM,
    keras.layers.Add: ADD,
    keras.layers.ReLU: ACTIVATION,
    keras.layers.Activation: ACTIVATION,
    keras.layers.GlobalAveragePooling1D: LayerFacts(_global_pool_flops("avg"), _zero_params, _last_dim_roles),
    keras.layers.GlobalMaxPooling1D: LayerFacts(_global_pool_flops("max"), _zero_params, _last_dim_roles),
    L.PaddingMask: ZERO,
    L.PositionEmbedding: POSITION_EMBEDDING,
    L.ApplyMask: APPLY_MASK,
    L.MaskedMeanPooling: MEAN_POOL,
    L.MaskedMaxPooling: MAX_POOL,
    L.MultiHeadSelfAttention: MHSA,
    L.BiasAdd: BIAS_ADD,
}
if hasattr(L, "TokenRemap"):
    REGISTRY[L.TokenRemap] = TOKEN_REMAP


def register_facts(layer_class: type, facts: LayerFacts) -> None:
    """Teach the registry a new layer type (full facts)."""
    REGISTRY[layer_class] = facts


# gate layers cost nothing (``shrink`` removes them); input-gated layers have the same
# FLOPs/params/slices as the layers they stand for
for _cls in G.GATE_LAYERS:
    register_facts(_cls, ZERO)
register_facts(G.InputGatedConv1D, CONV1D)
register_facts(G.InputGatedDense, DENSE)
register_facts(G.HeadGatedMultiHeadAttention, KERAS_MHA)


def _factorized_embedding_flops(layer, in_shape, out_shape):
    """A lookup is free; the projection is ``2 * rank * d`` per token."""
    positions = 1
    for s in in_shape:
        positions *= int(s)
    return 2 * layer.rank * layer.output_dim * positions


def _fused_roles(layer):
    return {"width": int(layer.qkv_kernel.shape[0]), "heads": int(layer.num_heads),
            "out": int(layer.output_kernel.shape[1])}


# compression layers: the same formulas as the unfused attention and Dense (no prunable slices: fusion comes after shrinking).
register_facts(C.FusedQKVSelfAttention, dataclasses.replace(MHSA, roles=_fused_roles, slices={}))
register_facts(C.PointwiseDense, DENSE)
register_facts(C.GatherPositionEmbedding, POSITION_EMBEDDING)
register_facts(C.FactorizedEmbedding, LayerFacts(
    lambda layer, s, d: {"matmul": _factorized_embedding_flops(layer, s.inp, s.out)}, _weights_params))


_TFOP_ELEMENTWISE = {"__operators__.add", "math.add", "math.multiply", "math.subtract", "math.truediv",
                     "__operators__.sub", "__operators__.mul"}
_TFOP_ACTIVATION = {"nn.relu": "relu", "math.tanh": "tanh", "nn.gelu": "gelu", "math.sigmoid": "sigmoid",
                    "nn.silu": "swish", "nn.swish": "swish"}
_TFOP_REDUCE_TIME = {"math.reduce_mean", "math.reduce_max", "math.reduce_sum"}
_TFOP_SHAPE = {"compat.v1.squeeze", "squeeze", "reshape", "expand_dims", "identity"}


def tfop_kind(layer) -> str | None:
    """What a ``TFOpLambda`` (``x + y``, ``tf.nn.relu(x)``, ...) does to the channel axis:
    ``elementwise``, ``activation``, ``reduce_time`` (over axis 1), ``shape`` (squeeze, reshape:
    0 FLOPs) or None (not supported)."""
    sym = getattr(layer, "symbol", None)
    if sym in _TFOP_ELEMENTWISE:
        return "elementwise"
    if sym in _TFOP_ACTIVATION:
        return "activation"
    if sym in _TFOP_SHAPE:
        return "shape"
    if sym in _TFOP_REDUCE_TIME:
        kwargs = layer._inbound_nodes[0].call_kwargs if layer._inbound_nodes else {}
        return "reduce_time" if kwargs.get("axis") in (1, -2) and len(layer.input_shape) == 3 else None
    return None


def _tfop_flops(layer, s, d):
    kind = tfop_kind(layer)
    if kind == "shape":
        return {}
    out = _prod(s.out[:-1]) * d["width"] if s.out else 1
    if kind == "elementwise":
        return {"elementwise": out}
    if kind == "activation":
        return {"activation": _ACT_FLOPS[_TFOP_ACTIVATION[layer.symbol]] * out}
    if kind == "reduce_time":
        t = s.inp[0]
        return {"max" if layer.symbol.endswith("max") else "elementwise":
                (t - 1) * d["width"] + (d["width"] if layer.symbol.endswith("mean") else 0)}
    raise ModelError(f"layer {layer.name!r}: the TensorFlow op {layer.symbol!r} is not in the complexity registry "
                     f"(supported: + - * / of tensors, relu/tanh/gelu/sigmoid/silu, mean/max/sum over time)")


def _tfop_roles(layer):
    shape = _shape(layer.output_shape)
    return {"width": int(shape[-1])} if shape else {}


REGISTRY[TFOpLambda] = LayerFacts(_tfop_flops, _zero_params, _tfop_roles)


def register(layer_class: type, flops_fn, params_fn=None) -> None:
    """Teach the registry a new layer type from ``flops_fn(layer, in_shape, out_shape) -> int``
    (no prunable roles; params default to the layer's float weights)."""
    REGISTRY[layer_class] = LayerFacts(
        lambda layer, s, d: {"elementwise": int(flops_fn(layer, s.inp, s.out))},
        (lambda layer, s, d: int(params_fn(layer))) if params_fn else _weights_params)


def weight_of(layer, attr: str):
    """The weight a ``LayerFacts.slices`` key names: an attribute of the layer, or of one of its
    sub-layers (``_query_dense.kernel``)."""
    obj = layer
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def facts_for(layer) -> LayerFacts:
    facts = REGISTRY.get(type(layer))
    if facts is None:
        raise ModelError(f"layer {layer.name!r} of class {type(layer).__name__} is unknown to the "
                         f"complexity registry; register it in rmcompress.cost.registry")
    return facts


def layer_shapes(layer) -> Shapes:
    if isinstance(layer, keras.layers.InputLayer):
        return Shapes((), ())
    return Shapes(_shape(layer.input_shape), _shape(layer.output_shape))


def layer_flops(layer) -> int:
    """Exact FLOPs of one built layer at full size."""
    facts = facts_for(layer)
    return int(sum(facts.flops(layer, layer_shapes(layer), facts.roles(layer)).values()))


# -- model level -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Dim:
    """A layer role's alive size in terms of the model's prunable groups::

        size = (sum over segments: alive[group] or the int itself) * prod over factors: min(1, alive[g])

    ``segments`` concatenate along the weight axis in order (a Dense fed by three convolutions has
    ``in = conv3 + conv4 + conv5``); ``factors`` switch the whole role off when a group is dead
    (a removed block). Integers segments are fixed units (never pruned).
    """

    segments: tuple = ()
    factors: tuple = ()

    def value(self, alive: dict):
        total = 0
        for s in self.segments:
            total = total + (alive[s] if isinstance(s, str) else s)
        for f in self.factors:
            total = total * min1(alive[f])
        return total


@dataclass
class _Entry:
    layer: Any
    facts: LayerFacts
    shapes: Shapes
    roles: dict
    dims: dict
    present: Dim | None


@dataclass
class Cost:
    """FLOPs and params (numbers or scalar tensors), FLOPs per part, optional per-layer rows."""

    flops: Any
    params: Any
    parts: dict
    rows: list | None = None


class CostModel:
    """The registry applied to a whole model: ``evaluate(alive)`` -> :class:`Cost`.

    ``dims``: layer name -> {role: :class:`Dim`}; ``present``: layer name -> :class:`Dim` that
    multiplies the whole layer (0 when it is removed). Roles not mapped stay at full size.
    ``alive`` maps each group named by the dims to its alive size (int or float tensor).
    """

    def __init__(self, model, dims: dict | None = None, present: dict | None = None):
        dims, present = dims or {}, present or {}
        for t in getattr(model, "inputs", None) or ():
            if any(d is None for d in t.shape[1:]):
                raise ModelError(f"model {model.name!r}: input {t.name!r} has shape {tuple(t.shape)}; FLOPs are "
                                 "counted per example at a fixed length: build it on keras.Input(shape=(seq_len,))")
        self.entries: list[_Entry] = []
        for layer in model.layers:
            facts = facts_for(layer)
            if isinstance(layer, keras.layers.InputLayer):
                continue
            self.entries.append(_Entry(layer, facts, layer_shapes(layer), facts.roles(layer),
                                       dims.get(layer.name, {}), present.get(layer.name)))

    def evaluate(self, alive: dict | None = None, table: bool = False) -> Cost:
        alive = alive or {}
        flops = params = 0
        parts: dict = {}
        rows = [] if table else None
        for e in self.entries:
            d = dict(e.roles)
            for role, dim in e.dims.items():
                d[role] = dim.value(alive)
            layer_parts = e.facts.flops(e.layer, e.shapes, d)
            p = e.facts.params(e.layer, e.shapes, d)
            if e.present is not None:
                pres = e.present.value(alive)
                layer_parts = {k: v * pres for k, v in layer_parts.items()}
                p = p * pres
            f = 0
            for k, v in layer_parts.items():
                f = f + v
                parts[k] = parts.get(k, 0) + v
            flops, params = flops + f, params + p
            if table:
                rows.append({"layer": e.layer.name, "type": type(e.layer).__name__,
                             "flops": _to_int(f), "params": _to_int(p),
                             **{f"flops_{k}": _to_int(layer_parts.get(k, 0)) for k in PARTS}})
        return Cost(flops, params, parts, rows)


class CompiledCost:
    """``CostModel.evaluate`` as a polynomial in the groups' alive counts: ``__call__(alive)`` ->
    ``(flops, params)`` float32 tensors from a few vector ops (monomials gathered and multiplied),
    identical in value to the per-layer evaluation (tested)."""

    def __init__(self, cost_model: "CostModel", groups):
        self.groups = list(groups)
        cost = cost_model.evaluate({g: Poly.symbol(g) for g in self.groups})
        flops, params = Poly._coerce(cost.flops), Poly._coerce(cost.params)
        monomials = sorted(set(flops.terms) | set(params.terms))
        symbols = self.groups + ["min1:" + g for g in self.groups]
        index = {name: i for i, name in enumerate(symbols)}
        one = len(symbols)  # the constant 1 appended to the symbol vector
        degree = max([len(m) for m in monomials] + [1])
        self.index = np.full((max(1, len(monomials)), degree), one, np.int32)
        for r, m in enumerate(monomials):
            for c, name in enumerate(m):
                self.index[r, c] = index[name]
        self.coefficients = np.zeros((max(1, len(monomials)), 2), np.float64)
        for r, m in enumerate(monomials):
            self.coefficients[r] = (flops.terms.get(m, 0.0), params.terms.get(m, 0.0))

    def __call__(self, alive: dict):
        counts = tf.stack([tf.cast(alive[g], tf.float32) for g in self.groups]) if self.groups \
            else tf.zeros([0], tf.float32)
        vec = tf.concat([counts, tf.minimum(1.0, counts), tf.ones([1], tf.float32)], axis=0)
        values = tf.reduce_prod(tf.gather(vec, self.index), axis=1)
        totals = tf.linalg.matvec(tf.constant(self.coefficients.T, tf.float32), values)
        return totals[0], totals[1]


def _to_int(x) -> int:
    if _is_number(x):
        return int(round(float(x)))
    return int(round(float(np.asarray(x))))


@dataclass
class ComplexityReport:
    """Totals and a per-layer table (columns: layer, type, flops, params, flops_<part>...)."""

    flops: int
    params: int
    table: pd.DataFrame

    def as_dict(self) -> dict:
        return {"flops": int(self.flops), "params": int(self.params)}


def is_gated(model) -> bool:
    """True when ``model`` contains gate layers (see ``rmcompress.layers.gates``)."""
    return any(getattr(layer, "_is_rmcompress_gate", False) for layer in model.layers)


__all__ = ["ComplexityReport", "CostModel", "CompiledCost", "Poly", "Cost", "Dim", "LayerFacts", "REGISTRY",
           "register", "register_facts", "facts_for", "tfop_kind", "weight_of", "layer_flops", "min1", "PARTS", "is_gated"]
