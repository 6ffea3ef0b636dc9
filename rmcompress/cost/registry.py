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
gate controls which dimension) is found in the model's layer graph by
``rmcompress.models.dependency``.

Convention (per example, at the model's sequence length ``T``; ``P`` = positions a per-vector op
runs over, i.e. every input dim but the last):

- one multiply-accumulate = 2 FLOPs (matmuls, convolutions, attention products);
- bias add, residual add, mask multiply, scale multiply, division = 1 FLOP per output element;
  a reduction (sum, max) over ``n`` elements = ``n - 1`` FLOPs per output;
- activations per output element: linear 0; relu 1 (a max with 0); tanh 1; exponential 1 (exp);
  leaky_relu 2 (multiply by alpha, max); relu6 2 (max with 0, min with 6); sigmoid 3 (exp, add,
  divide); softplus 3 (exp, add, log); softsign 3 (abs, add, divide); elu 3 (exp, subtract 1,
  select; the ``ELU`` layer adds 1 multiply per element when ``alpha != 1``); selu 4 (elu + the
  scale multiply); swish/silu 4 (sigmoid + multiply); gelu 8; gelu_tanh 9; an activation without
  a convention here (hard_sigmoid, mish, ...) is an error naming the layer;
- softmax = 3 FLOPs per element (exp, sum, divide; the max-subtraction for stability is not
  counted), as a ``Softmax`` layer, ``Activation("softmax")`` or any layer's ``activation``;
  a softmax over the channel axis mixes the channels (its ``width`` role only scales FLOPs);
- LayerNormalization = 7 FLOPs per element (mean, subtract, square, variance, normalise, scale,
  shift; the per-position epsilon add and rsqrt are not counted); BatchNormalization (inference,
  last axis only) = 2 FLOPs per element: ``y = x * a + b`` with ``a, b`` folded once from
  gamma/beta/moving mean/variance (the per-channel fold is not counted);
- Keras ``MultiHeadAttention`` with a mask (a Keras mask on its inputs, ``attention_mask`` or
  ``use_causal_mask``): + 2 per ``[T, T]`` mask element (``1 - mask``, times the large negative)
  + 1 per score (the add), on top of the projections, products, query scaling and softmax;
- merge layers ``Add``/``Subtract``/``Multiply``/``Maximum``/``Minimum`` of ``n`` inputs =
  ``n - 1`` FLOPs per output element (broadcast inputs: per *output* element); ``Average`` = ``n``
  (``n - 1`` adds + 1 divide); ``Masking`` = 1 per element (the mask multiply);
- pooling over time: ``AveragePooling1D`` = ``pool_size`` per output element (``pool_size - 1``
  adds + 1 divide; the shorter edge windows of ``padding="same"`` are counted as full ones),
  ``MaxPooling1D`` = ``pool_size - 1`` per output element; global average pooling = ``T`` per
  channel (``T - 1`` adds + 1 divide; with an input mask: mask multiply ``T`` per channel, sum
  ``T - 1`` per channel, mask sum ``T - 1``, divide 1 per channel), global max = ``T - 1`` per
  channel; channels_last only;
- convolutions: ``SeparableConv1D`` = depthwise ``2 k C m`` + pointwise ``2 C m F`` per output
  position (``m`` = depth multiplier, ``F`` = filters), ``DepthwiseConv1D`` = ``2 k C m`` per output
  position, each + bias and activation per output element;
- recurrent layers (``LSTM``, ``GRU``, ``SimpleRNN``; per example, ``T`` time steps, ``i`` input
  features, ``u`` units; every step is computed whatever ``return_sequences`` says, masked steps
  included, the mask's select costs 0). Per step:

  - ``LSTM``: matmul ``2 i 4u + 2 u 4u``; bias ``4u``; elementwise ``8u`` (the ``x W + h U`` add
    ``4u``, ``c = f c + i g`` ``3u``, ``h = o act(c)`` ``u``); activation ``3u`` recurrent
    activations (gates i, f, o) + ``2u`` activations (candidate, cell output);
  - ``GRU``: matmul ``2 i 3u + 2 u 3u`` (with ``reset_after=False`` the ``h`` part of the
    recurrent matmul runs on ``r * h``: the same count); bias ``3u``, or ``6u`` with
    ``reset_after`` (input and recurrent biases); elementwise ``8u`` (three ``x + h`` adds, the
    ``r *`` product, ``h = z h + (1 - z) hh`` ``4u``); activation ``2u`` recurrent activations
    (z, r) + ``u`` activation;
  - ``SimpleRNN``: matmul ``2 i u + 2 u u``; bias ``u``; elementwise ``u`` (the add); activation
    ``u``;
  - ``Bidirectional``: both directions + the merge per output element of one direction: concat 0,
    sum 1, mul 1, ave 2 (add, divide), ``None`` 0;
- ``TFOpLambda`` (what tf_keras makes of ``x + y``, ``tf.nn.relu(x)``, ``tf.reduce_mean(x, 1)``;
  see :func:`tfop_kind`): add/subtract/multiply/divide/maximum/minimum/square/negative = 1 per
  output element; activations as above; ``reduce_sum``/``reduce_mean``/``reduce_max``/
  ``reduce_min`` over the time axis of ``[batch, T, C]`` = ``T - 1`` per output (+1 divide per
  output for the mean); squeeze, expand_dims, reshape, transpose, concat, identity and slicing
  (``x[:, 0]``) = 0; any other op is an error naming the layer and its op. A ``Lambda`` layer
  (arbitrary Python) is an error: register a class instead (:func:`register`);
- embedding lookups, index remapping, comparisons, casts, reshapes, transposes, concatenation,
  ``Permute``, ``RepeatVector``, padding, cropping, upsampling, ``Identity``, dropout and the
  inference-time identities (``SpatialDropout1D``, ``GaussianNoise``, ``GaussianDropout``,
  ``ActivityRegularization``) = 0 FLOPs; gate layers = 0 FLOPs and 0 params (they are removed by
  ``shrink``);
- params = every float weight, trainable or not (an integer index table such as ``TokenRemap`` is
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

from rmcompress._keras import SlicingOpLambda, TFOpLambda, keras, tf
from rmcompress.errors import ModelError
from rmcompress.layers import compressed as C
from rmcompress.layers import encoder as L
from rmcompress.layers import gates as G

#: FLOP parts (see module docstring)
PARTS = ("matmul", "bias", "elementwise", "activation", "max", "softmax", "norm")

_ACT_FLOPS = {"linear": 0, None: 0, "relu": 1, "tanh": 1, "exponential": 1, "leaky_relu": 2, "relu6": 2,
              "sigmoid": 3, "softplus": 3, "softsign": 3, "elu": 3, "softmax": 3, "selu": 4, "swish": 4,
              "silu": 4, "gelu": 8, "gelu_tanh": 9}


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


def _activation_parts(layer, elements, name: str | None = None) -> dict:
    """FLOPs of ``layer``'s activation (or the one called ``name``) over ``elements`` outputs, as
    parts: a softmax is the ``softmax`` part, everything else ``activation``."""
    if name is None:
        name = getattr(getattr(layer, "activation", None), "__name__", None)
    flops = _activation_flops(layer, name) * elements
    return {"softmax": flops} if name == "softmax" else {"activation": flops}


def _merge(*part_dicts) -> dict:
    out: dict = {}
    for parts in part_dicts:
        for k, v in parts.items():
            out[k] = out.get(k, 0) + v
    return out


def _check_channels_last(layer) -> None:
    fmt = getattr(layer, "data_format", "channels_last")
    if fmt != "channels_last":
        raise ModelError(f"layer {layer.name!r}: data_format={fmt!r} is not in the complexity registry "
                         f"(only channels_last)")


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


def _weights_params(layer, s, d):
    return int(sum(_prod(w.shape) for w in layer.weights if w.dtype.is_floating))


ZERO = LayerFacts(_zero_flops, _zero_params)


# Dense ---------------------------------------------------------------------------------------------
def _dense_roles(layer):
    return {"in": int(layer.kernel.shape[0]), "out": int(layer.kernel.shape[1])}


def _dense_flops(layer, s, d):
    i, o, p = d["in"], d["out"], s.positions
    return {"matmul": 2 * i * o * p, "bias": o * p if layer.use_bias else 0, **_activation_parts(layer, o * p)}


def _dense_params(layer, s, d):
    return d["in"] * d["out"] + (d["out"] if layer.use_bias else 0)


DENSE = LayerFacts(_dense_flops, _dense_params, _dense_roles,
                   {"kernel": (("in", 0), ("out", 1)), "bias": (("out", 0),)})


# Conv1D --------------------------------------------------------------------------------------------
def _conv_roles(layer):
    _check_channels_last(layer)
    return {"in": int(layer.kernel.shape[1]), "out": int(layer.kernel.shape[2])}


def _conv_flops(layer, s, d):
    k, t_out = int(layer.kernel_size[0]), s.out[0]
    i, o = d["in"], d["out"]
    if int(getattr(layer, "groups", 1)) != 1:
        raise ModelError(f"layer {layer.name!r}: grouped Conv1D is not in the complexity registry")
    return {"matmul": 2 * k * i * o * t_out, "bias": o * t_out if layer.use_bias else 0,
            **_activation_parts(layer, o * t_out)}


def _conv_params(layer, s, d):
    return int(layer.kernel_size[0]) * d["in"] * d["out"] + (d["out"] if layer.use_bias else 0)


CONV1D = LayerFacts(_conv_flops, _conv_params, _conv_roles,
                    {"kernel": (("in", 1), ("out", 2)), "bias": (("out", 0),)})


# SeparableConv1D / DepthwiseConv1D ------------------------------------------------------------------
def _separable_flops(layer, s, d):
    _check_channels_last(layer)
    k, t_out, c, m = int(layer.kernel_size[0]), s.out[0], s.inp[-1], int(layer.depth_multiplier)
    f = int(layer.filters)
    return {"matmul": 2 * k * c * m * t_out + 2 * c * m * f * t_out,
            "bias": f * t_out if layer.use_bias else 0, **_activation_parts(layer, f * t_out)}


SEPARABLE_CONV1D = LayerFacts(_separable_flops, _weights_params)


def _depthwise_roles(layer):
    """``width`` = channels in = channels out, with a depth multiplier of 1 (else no roles)."""
    _check_channels_last(layer)
    return {"width": int(layer.depthwise_kernel.shape[1])} if int(layer.depth_multiplier) == 1 else {}


def _depthwise_flops(layer, s, d):
    k, t_out, m = int(layer.kernel_size[0]), s.out[0], int(layer.depth_multiplier)
    n = d.get("width", s.inp[-1]) * m * t_out
    return {"matmul": 2 * k * n, "bias": n if layer.use_bias else 0, **_activation_parts(layer, n)}


def _depthwise_params(layer, s, d):
    n = d.get("width", s.inp[-1]) * int(layer.depth_multiplier)
    return int(layer.kernel_size[0]) * n + (n if layer.use_bias else 0)


DEPTHWISE_CONV1D = LayerFacts(_depthwise_flops, _depthwise_params, _depthwise_roles,
                              {"depthwise_kernel": (("width", 1),), "bias": (("width", 0),)})


# recurrent layers (counted at full size; no prunable roles) ------------------------------------------
def _rnn_step_parts(layer, n_in: int) -> dict:
    """FLOPs of one time step of an ``LSTM``, ``GRU`` or ``SimpleRNN`` (module docstring)."""
    cell = layer.cell
    u, bias = int(cell.units), bool(cell.use_bias)
    act = _activation_flops(layer, getattr(cell.activation, "__name__", None))
    if isinstance(layer, keras.layers.SimpleRNN):
        return {"matmul": 2 * n_in * u + 2 * u * u, "bias": u if bias else 0, "elementwise": u,
                "activation": act * u}
    rec = _activation_flops(layer, getattr(cell.recurrent_activation, "__name__", None))
    if isinstance(layer, keras.layers.LSTM):
        return {"matmul": 2 * n_in * 4 * u + 2 * u * 4 * u, "bias": 4 * u if bias else 0,
                "elementwise": 8 * u, "activation": 3 * u * rec + 2 * u * act}
    return {"matmul": 2 * n_in * 3 * u + 2 * u * 3 * u,
            "bias": (6 * u if cell.reset_after else 3 * u) if bias else 0,
            "elementwise": 8 * u, "activation": 2 * u * rec + u * act}


def _rnn_flops(layer, s, d):
    t = s.inp[0]
    return {k: t * v for k, v in _rnn_step_parts(layer, s.inp[-1]).items()}


RNN = LayerFacts(_rnn_flops, _weights_params)
_RNN_CLASSES = (keras.layers.LSTM, keras.layers.GRU, keras.layers.SimpleRNN)
_BIDIRECTIONAL_MERGE = {"concat": 0, None: 0, "sum": 1, "mul": 1, "ave": 2}


def _bidirectional_flops(layer, s, d):
    parts: dict = {}
    for sub in (layer.forward_layer, layer.backward_layer):
        if type(sub) not in _RNN_CLASSES:
            raise ModelError(f"layer {layer.name!r}: Bidirectional around {type(sub).__name__} is not in "
                             f"the complexity registry (LSTM, GRU, SimpleRNN)")
        parts = _merge(parts, _rnn_flops(sub, s, d))
    fwd = layer.forward_layer
    per_output = (s.inp[0] if fwd.return_sequences else 1) * int(fwd.units)
    merge = _BIDIRECTIONAL_MERGE[layer.merge_mode] * per_output
    return _merge(parts, {"elementwise": merge}) if merge else parts


BIDIRECTIONAL = LayerFacts(_bidirectional_flops, _weights_params)


# Embedding -----------------------------------------------------------------------------------------
EMBEDDING = LayerFacts(
    _zero_flops, lambda layer, s, d: d["rows"] * d["width"],
    lambda layer: {"rows": int(layer.input_dim), "width": int(layer.output_dim)},
    {"embeddings": (("rows", 0), ("width", 1))})


# LayerNormalization ------------------------------------------------------------------------------
def _ln_roles(layer):
    axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    shape = layer.input_shape[0] if isinstance(layer.input_shape, list) else layer.input_shape  # [x, z]: x
    if len(axes) != 1 or axes[0] not in (-1, len(shape) - 1):
        raise ModelError(f"layer {layer.name!r}: LayerNormalization over axes {axes} is not in the "
                         f"complexity registry (only the last axis)")
    return {"width": int(shape[-1])}


LAYER_NORM = LayerFacts(
    lambda layer, s, d: {"norm": 7 * s.positions * d["width"]},
    lambda layer, s, d: d["width"] * (int(bool(layer.center)) + int(bool(layer.scale))),
    _ln_roles, {"gamma": (("width", 0),), "beta": (("width", 0),)})


# elementwise / pooling ---------------------------------------------------------------------------
def _last_dim_roles(layer):
    """``width`` = the size of the output's last axis (none for a per-example scalar output)."""
    out = _shape(layer.output_shape)
    return {"width": int(out[-1])} if out else {}


def _out_elements(s: Shapes, d: dict):
    """Output elements with the last axis at its alive ``width`` (1 for a per-example scalar)."""
    if not s.out:
        return 1
    return _prod(s.out[:-1]) * d["width"]


def _n_inputs(layer) -> int:
    return len(layer.input_shape) if isinstance(layer.input_shape, list) else 2


def _merge_flops(extra: int = 0):
    """``n - 1`` elementwise FLOPs per output element for ``n`` inputs, + ``extra`` per element."""
    def fn(layer, s, d):
        return {"elementwise": (_n_inputs(layer) - 1 + extra) * _out_elements(s, d)}
    return fn


ADD = LayerFacts(_merge_flops(), _zero_params, _last_dim_roles)
AVERAGE = LayerFacts(_merge_flops(extra=1), _zero_params, _last_dim_roles)
APPLY_MASK = LayerFacts(lambda layer, s, d: {"elementwise": s.positions * d["width"]}, _zero_params,
                        _last_dim_roles)
MASKING = LayerFacts(lambda layer, s, d: {"elementwise": _out_elements(s, d)}, _zero_params, _last_dim_roles)
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
    if isinstance(layer, keras.layers.ReLU):
        name = "relu"
    elif isinstance(layer, keras.layers.LeakyReLU):
        name = "leaky_relu"
    elif isinstance(layer, keras.layers.ELU):
        name = "elu"
    elif isinstance(layer, keras.layers.Softmax):
        name = "softmax"
    else:
        name = getattr(layer.activation, "__name__", None)
    n = _out_elements(s, d)
    parts = _activation_parts(layer, n, name)
    if isinstance(layer, keras.layers.ELU) and float(layer.alpha) != 1.0:
        parts["elementwise"] = n  # alpha * elu(x) on the negative side
    return parts


ACTIVATION = LayerFacts(_activation_layer_flops, _zero_params, _last_dim_roles)


def _channels_last_roles(layer):
    _check_channels_last(layer)
    return _last_dim_roles(layer)


def _global_pool_flops(kind):
    def fn(layer, s, d):
        t, w = s.inp[0], d["width"]
        if kind == "max":
            return {"max": (t - 1) * w}
        if layer.get_input_mask_at(0) is not None:
            # x*m (T w), sum over time ((T-1) w), sum of the mask (T-1), divide (w)
            return {"elementwise": t * w + (t - 1) * w + (t - 1) + w}
        return {"elementwise": (t - 1) * w + w}
    return fn


GLOBAL_AVG_POOL = LayerFacts(_global_pool_flops("avg"), _zero_params, _channels_last_roles)
GLOBAL_MAX_POOL = LayerFacts(_global_pool_flops("max"), _zero_params, _channels_last_roles)


def _pool1d_flops(kind):
    def fn(layer, s, d):
        p, n = int(layer.pool_size[0]), _out_elements(s, d)
        if kind == "avg":
            return {"elementwise": p * n}  # p - 1 adds + 1 divide per output
        return {"max": (p - 1) * n}
    return fn


AVG_POOL_1D = LayerFacts(_pool1d_flops("avg"), _zero_params, _channels_last_roles)
MAX_POOL_1D = LayerFacts(_pool1d_flops("max"), _zero_params, _channels_last_roles)


# BatchNormalization (inference: y = x * a + b per element, a and b folded per channel) -------------
def _bn_roles(layer):
    axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    rank = len(layer.input_shape)
    if len(axes) != 1 or axes[0] not in (-1, rank - 1):
        raise ModelError(f"layer {layer.name!r}: BatchNormalization over axis {list(axes)} is not in the "
                         f"complexity registry (only the last axis, {rank - 1})")
    return {"width": int(layer.input_shape[-1])}


BATCH_NORM = LayerFacts(
    lambda layer, s, d: {"norm": 2 * s.positions * d["width"]},
    lambda layer, s, d: d["width"] * (int(bool(layer.center)) + int(bool(layer.scale)) + 2),
    _bn_roles, {"gamma": (("width", 0),), "beta": (("width", 0),), "moving_mean": (("width", 0),),
                "moving_variance": (("width", 0),)})


# TFOpLambda: TensorFlow ops called on Keras tensors (``x + y``, ``tf.nn.relu(x)``, ...) ---------------

#: op symbol (``layer.symbol``) -> kind; 1 FLOP per output element for "elementwise"
_TFOP_ELEMENTWISE = {"__operators__.add", "math.add", "math.subtract", "math.multiply", "math.truediv",
                     "math.divide", "math.maximum", "math.minimum", "math.square", "math.negative",
                     "math.scalar_mul", "compat.v1.math.scalar_mul"}
#: op symbol -> its name in the activation conventions
_TFOP_ACTIVATIONS = {"nn.relu": "relu", "math.tanh": "tanh", "nn.tanh": "tanh", "math.sigmoid": "sigmoid",
                     "nn.sigmoid": "sigmoid", "nn.gelu": "gelu", "nn.silu": "silu", "nn.swish": "swish",
                     "nn.elu": "elu", "nn.selu": "selu", "math.softplus": "softplus", "nn.softplus": "softplus",
                     "nn.softsign": "softsign", "math.softsign": "softsign", "nn.leaky_relu": "leaky_relu",
                     "nn.relu6": "relu6", "math.exp": "exponential"}
#: op symbol -> its part (the mean adds one divide per output)
_TFOP_REDUCTIONS = {"math.reduce_sum": "elementwise", "math.reduce_mean": "elementwise",
                    "math.reduce_max": "max", "math.reduce_min": "max"}
#: ops that only move data (0 FLOPs)
_TFOP_LAYOUT = {"compat.v1.squeeze", "squeeze", "expand_dims", "reshape", "compat.v1.transpose", "transpose",
                "concat", "identity", "__operators__.getitem"}


def _tfop_call(layer) -> tuple:
    """The positional and keyword arguments of ``layer``'s first call (a TFOpLambda node)."""
    node = layer.inbound_nodes[0]
    return tuple(node.call_args), dict(node.call_kwargs)


def _tfop_argument(layer, name: str, position: int, default=None):
    args, kwargs = _tfop_call(layer)
    if name in kwargs:
        return kwargs[name]
    return args[position] if len(args) > position else default


def _reduces_time(layer) -> bool:
    """True when the reduction runs over axis 1 (time) of a ``[batch, T, C]`` input, only."""
    if len(layer.input_shape) != 3:
        return False
    axis = _tfop_argument(layer, "axis", 1)
    axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    return len(axes) == 1 and isinstance(axes[0], (int, np.integer)) and int(axes[0]) in (1, -2)


def tfop_kind(layer) -> str | None:
    """What a ``TFOpLambda`` (or slicing) layer does to the channel axis, for structure discovery:

    - ``"elementwise"``: add/subtract/multiply/divide/max/min/square/negate, broadcast per element;
    - ``"activation"``: a unary activation per element;
    - ``"reduce_time"``: a sum/mean/max/min over the time axis of ``[batch, T, C]`` (channels kept);
    - ``"layout"``: squeeze, expand_dims, reshape, transpose, concat, identity or slicing (0 FLOPs;
      the channel axis is *not* known to be kept);
    - ``None``: any other op (the registry cannot count it; :func:`facts_for` raises).
    """
    symbol = getattr(layer, "symbol", None)
    if symbol in _TFOP_ELEMENTWISE:
        return "elementwise"
    if symbol in _TFOP_ACTIVATIONS:
        return "activation"
    if symbol in _TFOP_REDUCTIONS:
        return "reduce_time" if _reduces_time(layer) else None
    if symbol in _TFOP_LAYOUT:
        return "layout"
    return None


def _tfop_roles(layer):
    return {} if tfop_kind(layer) == "layout" else _last_dim_roles(layer)


def _tfop_flops(layer, s, d):
    kind, symbol = tfop_kind(layer), layer.symbol
    if kind == "elementwise":
        return {"elementwise": _out_elements(s, d)}
    if kind == "activation":
        name = _TFOP_ACTIVATIONS[symbol]
        if name == "gelu" and _tfop_argument(layer, "approximate", 1, False):
            name = "gelu_tanh"
        return _activation_parts(layer, _out_elements(s, d), name)
    if kind == "reduce_time":
        t, w = s.inp[0], d["width"]
        return {_TFOP_REDUCTIONS[symbol]: (t - 1) * w + (w if symbol == "math.reduce_mean" else 0)}
    return {}


TF_OP = LayerFacts(_tfop_flops, _zero_params, _tfop_roles)


def _unsupported_tfop(layer) -> ModelError:
    symbol = getattr(layer, "symbol", None)
    where = " (reductions only over the time axis 1 of a [batch, time, channels] tensor)" \
        if symbol in _TFOP_REDUCTIONS else ""
    return ModelError(f"layer {layer.name!r} runs the TensorFlow op tf.{symbol}, which the complexity registry "
                      f"cannot count{where}; write it as a standard layer or register a class "
                      f"(rmcompress.cost.registry.register)")


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
    return {"matmul": mac, "bias": bias, **_activation_parts(layer, _prod(s.out))}


EINSUM_DENSE = LayerFacts(_einsum_dense_flops, _weights_params)


def _keras_mha_dims(layer):
    """(query input width, key input width, value input width, key dim, value dim, output width)
    from the projection kernels (``[d, heads, k]``; output ``[heads, v, o]``)."""
    q, k, v = (tuple(int(x) for x in sub.kernel.shape)
               for sub in (layer._query_dense, layer._key_dense, layer._value_dense))
    o = int(layer._output_dense.kernel.shape[-1])
    return q[0], k[0], v[0], q[-1], v[-1], o


def _keras_mha_masked(layer) -> bool:
    """True when the attention scores get a mask: a Keras mask on query/value/key, an
    ``attention_mask`` or ``use_causal_mask``."""
    node = layer.inbound_nodes[0]
    tensors = list(node.call_args) + [node.call_kwargs.get(k) for k in ("query", "value", "key")]
    if any(getattr(x, "_keras_mask", None) is not None for x in tensors):
        return True
    return node.call_kwargs.get("attention_mask") is not None or bool(node.call_kwargs.get("use_causal_mask"))


def keras_mha_is_self(layer) -> bool:
    """True when a Keras ``MultiHeadAttention`` layer is called once with query, value and key one
    tensor (self-attention): its input width is then one role, ``width``."""
    nodes = layer.inbound_nodes
    if len(nodes) != 1:
        return False
    args, kwargs = list(nodes[0].call_args), nodes[0].call_kwargs
    query = args[0] if args else kwargs.get("query")
    value = args[1] if len(args) > 1 else kwargs.get("value")
    key = args[2] if len(args) > 2 else kwargs.get("key")
    return (query is not None and value is query and (key is None or key is query)
            and not kwargs.get("return_attention_scores"))


def _keras_mha_roles(layer):
    dq, _, _, _, _, o = _keras_mha_dims(layer)
    roles = {"heads": int(layer._num_heads), "out": o}
    if keras_mha_is_self(layer):
        roles["width"] = dq
    return roles


def _keras_mha_widths(layer, d):
    """(query, key, value input widths, output width) at the alive sizes in ``d``."""
    dq, dk_in, dv_in, _, _, o = _keras_mha_dims(layer)
    if "width" in d:
        dq = dk_in = dv_in = d["width"]
    return dq, dk_in, dv_in, d.get("out", o)


def _keras_mha_flops(layer, s, d):
    # self-attention over the query's T positions (as the registry is used); h = alive heads
    t = s.inp[0]
    h = d["heads"]
    _, _, _, dk, dv, _ = _keras_mha_dims(layer)
    dq, dk_in, dv_in, o = _keras_mha_widths(layer, d)
    bias = bool(layer._use_bias)
    # a masked softmax adds (1 - mask) * -big to the scores: subtract and multiply per [T, T] mask
    # element, add per score
    masked = (2 * t * t + h * t * t) if _keras_mha_masked(layer) else 0
    return {"matmul": 2 * t * h * (dq * dk + dk_in * dk + dv_in * dv) + 2 * t * t * h * dk + 2 * t * t * h * dv
            + 2 * t * h * dv * o,
            "bias": (t * h * (2 * dk + dv) + t * o) if bias else 0,
            "elementwise": t * h * dk + masked,  # query scaling (+ the mask)
            "softmax": 3 * h * t * t}


def _keras_mha_params(layer, s, d):
    h = d["heads"]
    _, _, _, dk, dv, _ = _keras_mha_dims(layer)
    dq, dk_in, dv_in, o = _keras_mha_widths(layer, d)
    bias = bool(layer._use_bias)
    return h * (dq * dk + dk_in * dk + dv_in * dv + dv * o) + ((h * (2 * dk + dv) + o) if bias else 0)


#: Keras' MultiHeadAttention: roles ``heads``, ``out`` (the output projection's columns) and, for
#: self-attention, ``width`` (the input rows of the query, key and value projections); the weights
#: live on its projection sub-layers
KERAS_MHA = LayerFacts(
    _keras_mha_flops, _keras_mha_params, _keras_mha_roles,
    {"_query_dense.kernel": (("width", 0), ("heads", 1)), "_query_dense.bias": (("heads", 0),),
     "_key_dense.kernel": (("width", 0), ("heads", 1)), "_key_dense.bias": (("heads", 0),),
     "_value_dense.kernel": (("width", 0), ("heads", 1)), "_value_dense.bias": (("heads", 0),),
     "_output_dense.kernel": (("heads", 0), ("out", 2)), "_output_dense.bias": (("out", 0),)})

# BiasAdd (a learned bias add): one add per element, width params.
BIAS_ADD = LayerFacts(lambda layer, s, d: {"bias": s.positions * d["width"]},
                      lambda layer, s, d: d["width"], _last_dim_roles, {"bias": (("width", 0),)})

# TokenRemap: an int32 or int16 index table (data, not params), 0 FLOPs.
TOKEN_REMAP = LayerFacts(_zero_flops, _zero_params)

#: layer class -> its facts (the project's own layers: :mod:`rmcompress.layers`).
REGISTRY: dict[type, LayerFacts] = {
    keras.layers.InputLayer: ZERO,
    keras.layers.Dropout: ZERO,
    keras.layers.Concatenate: ZERO,
    keras.layers.Flatten: ZERO,
    keras.layers.Reshape: ZERO,
    keras.layers.Permute: ZERO,
    keras.layers.RepeatVector: ZERO,
    keras.layers.ZeroPadding1D: ZERO,
    keras.layers.Cropping1D: ZERO,
    keras.layers.UpSampling1D: ZERO,
    keras.layers.Identity: ZERO,
    keras.layers.SpatialDropout1D: ZERO,
    keras.layers.GaussianNoise: ZERO,
    keras.layers.GaussianDropout: ZERO,
    keras.layers.ActivityRegularization: ZERO,
    keras.layers.Embedding: EMBEDDING,
    keras.layers.Dense: DENSE,
    keras.layers.EinsumDense: EINSUM_DENSE,
    keras.layers.MultiHeadAttention: KERAS_MHA,
    keras.layers.Conv1D: CONV1D,
    keras.layers.LayerNormalization: LAYER_NORM,
    keras.layers.Add: ADD,
    keras.layers.Subtract: ADD,
    keras.layers.Multiply: ADD,
    keras.layers.Maximum: ADD,
    keras.layers.Minimum: ADD,
    keras.layers.Average: AVERAGE,
    keras.layers.Masking: MASKING,
    keras.layers.BatchNormalization: BATCH_NORM,
    keras.layers.SeparableConv1D: SEPARABLE_CONV1D,
    keras.layers.DepthwiseConv1D: DEPTHWISE_CONV1D,
    keras.layers.AveragePooling1D: AVG_POOL_1D,
    keras.layers.MaxPooling1D: MAX_POOL_1D,
    keras.layers.LSTM: RNN,
    keras.layers.GRU: RNN,
    keras.layers.SimpleRNN: RNN,
    keras.layers.Bidirectional: BIDIRECTIONAL,
    TFOpLambda: TF_OP,
    SlicingOpLambda: TF_OP,
    keras.layers.Softmax: ACTIVATION,
    keras.layers.LeakyReLU: ACTIVATION,
    keras.layers.ELU: ACTIVATION,
    keras.layers.ReLU: ACTIVATION,
    keras.layers.Activation: ACTIVATION,
    keras.layers.GlobalAveragePooling1D: GLOBAL_AVG_POOL,
    keras.layers.GlobalMaxPooling1D: GLOBAL_MAX_POOL,
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
register_facts(G.GatedLayerNormalization, LAYER_NORM)
register_facts(G.GatedPositionEmbedding, POSITION_EMBEDDING)


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
    if facts is TF_OP and tfop_kind(layer) is None:
        raise _unsupported_tfop(layer)
    if facts is None and type(layer) is keras.layers.Lambda:
        raise ModelError(f"layer {layer.name!r} is a Lambda layer; the complexity registry cannot count arbitrary "
                         f"Python: write it as a standard layer or register a class "
                         f"(rmcompress.cost.registry.register)")
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
