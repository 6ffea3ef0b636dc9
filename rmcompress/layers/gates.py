"""Hard-concrete (L0) gates (Louizos, Welling & Kingma 2018) on the prunable groups of a scorer.

Each unit ``i`` of a group has a learnable ``log_alpha_i``. With ``beta = 2/3``, ``gamma = -0.1``,
``zeta = 1.1``:

- training: ``u ~ U(0, 1)``, ``s = sigmoid((log u - log(1 - u) + log_alpha) / beta)``,
  ``z = clip(s (zeta - gamma) + gamma, 0, 1)``: exactly 0 or 1 with positive probability, so
  units really switch off, and differentiable in ``log_alpha`` in between;
- ``P(z_i > 0) = sigmoid(log_alpha_i - beta log(-gamma / zeta))``; the *expected number of open
  gates* ``sum_i P(z_i > 0)`` is what the complexity penalty feeds into the registry formulas;
- inference (deterministic): the median of ``z``,
  ``z_i = clip(sigmoid(log_alpha_i / beta) (zeta - gamma) + gamma, 0, 1)``. It is non-zero exactly
  when ``P(z_i > 0) > 1/2``; the deterministic alive count is the number of non-zero gates, and
  ``shrink`` folds the (possibly non-binary) values into the weights.

Noise: one gate vector per training step, shared by the whole batch, drawn with a stateless RNG
seeded by ``(seed, step)`` where ``step`` is a per-gate counter (aggregated from the first
replica). Every replica of a ``tf.distribute`` strategy therefore draws the same gates, and a
distributed step equals a single-device step.

Layers (all serialisable, registered as ``rmcompress>...``, no ``Lambda``):
:class:`L0Gate` (anchor -> gate vector ``[units]``; ``binary=True``: deterministic value 0 or 1),
:class:`GateMultiply` (scales a tensor by gates), :class:`RowGate` (scales embedding rows by the
gates of their token ids), :class:`InputGatedConv1D` / :class:`InputGatedDense` (a convolution /
dense layer whose inputs are gated through its kernel: exact, and cheaper per step than scaling
the activations), :class:`HeadGatedMultiHeadAttention` (Keras' attention with gated heads),
:class:`GateConcat` (the gate vector of a concatenated input), and for a *stream* group (a width
that a normalisation or an attention layer reads, such as a transformer's residual width: gated
where it is written, see :mod:`rmcompress.models.dependency`) :class:`WidthGate` (scales a
writer's output channels), :class:`GatedLayerNormalization` (normalises over the open channels
only) and :class:`GatedPositionEmbedding` (adds the position table through the gates). Where they go in a model is
:mod:`rmcompress.structured.gating`'s business (one path for every model); their FLOPs/params
facts are registered in :mod:`rmcompress.cost.registry`.
"""
from __future__ import annotations

import math

import numpy as np

from rmcompress._keras import keras, tf
from rmcompress.errors import ModelError
from rmcompress.layers.encoder import PACKAGE, PositionEmbedding

register = keras.utils.register_keras_serializable(package=PACKAGE)

BETA, GAMMA, ZETA = 2.0 / 3.0, -0.1, 1.1
#: initial log_alpha: P(open) = 0.99, z = 1 exactly in ~80% of training draws
DEFAULT_INIT_LOG_ALPHA = 3.0
_EPS = 1e-6
#: log_alpha of a unit closed by hand (budget projection): P(open) ~ 1e-4
CLOSED_LOG_ALPHA = -10.0
#: a gate is deterministically open (median > 0, P(open) > 1/2) iff log_alpha > OPEN_THRESHOLD
OPEN_THRESHOLD = BETA * math.log(-GAMMA / ZETA)
#: log_alpha of a unit reopened by hand (a group that must keep a unit): the gate is 1
OPEN_LOG_ALPHA = DEFAULT_INIT_LOG_ALPHA


def open_probability(log_alpha):
    """``P(z > 0)`` for hard-concrete gates with ``log_alpha`` (tensor or numpy)."""
    shift = BETA * math.log(-GAMMA / ZETA)
    if isinstance(log_alpha, np.ndarray):
        return 1.0 / (1.0 + np.exp(-(log_alpha - shift)))
    return tf.sigmoid(log_alpha - shift)


def median_gate(log_alpha):
    """The deterministic (median) gate value, numpy or tensor."""
    if isinstance(log_alpha, np.ndarray):
        s = 1.0 / (1.0 + np.exp(-log_alpha / BETA))
        return np.clip(s * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)
    return tf.clip_by_value(tf.sigmoid(log_alpha / BETA) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


class _GateLayer(keras.layers.Layer):
    _is_rmcompress_gate = True


@register
class L0Gate(_GateLayer):
    """``anchor`` (any tensor; only ties the gate into the graph) -> gate values ``[units]``.

    See the module docstring for the sampling (``training=True``) and the deterministic value.
    ``binary``: the deterministic value is ``1`` where the median is non-zero (``P(open) > 1/2``)
    and ``0`` elsewhere, never in between (training samples as usual).

    Always a float32 layer (``log_alpha``, the noise and the gate values), whatever the dtype policy:
    under mixed precision the layers it feeds cast its gates to their compute dtype, and the
    complexity term computed from ``log_alpha`` stays float32.
    """

    def __init__(self, units: int, init_log_alpha: float = DEFAULT_INIT_LOG_ALPHA, seed: int = 0,
                 binary: bool = False, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.units = int(units)
        self.init_log_alpha = float(init_log_alpha)
        self.seed = int(seed)
        self.binary = bool(binary)

    def build(self, input_shape):
        self.log_alpha = self.add_weight(
            name="log_alpha", shape=(self.units,),
            initializer=keras.initializers.Constant(self.init_log_alpha), trainable=True)
        self.noise_step = self.add_weight(
            name="noise_step", shape=(), dtype="int64", initializer="zeros", trainable=False,
            synchronization=tf.VariableSynchronization.ON_WRITE,
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        super().build(input_shape)

    def sample(self):
        step = self.noise_step.assign_add(1)
        seed = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(step, tf.int64)])
        u = tf.random.stateless_uniform([self.units], seed=seed, minval=_EPS, maxval=1.0 - _EPS)
        s = tf.sigmoid((tf.math.log(u) - tf.math.log(1.0 - u) + self.log_alpha) / BETA)
        return tf.clip_by_value(s * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)

    def call(self, anchor, training=None):
        if training:
            return self.sample()
        z = median_gate(self.log_alpha)
        return tf.cast(z > 0, z.dtype) if self.binary else z

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([self.units])

    # -- the numbers the complexity terms use ---------------------------------------------------
    def open_probabilities(self):
        return open_probability(self.log_alpha)

    def expected_open(self):
        """Differentiable expected number of open gates (scalar tensor)."""
        return tf.reduce_sum(self.open_probabilities())

    def deterministic_values(self) -> np.ndarray:
        z = median_gate(np.asarray(self.log_alpha.numpy(), np.float64))
        return (z > 0).astype(np.float64) if self.binary else z

    def deterministic_open(self) -> int:
        return int(np.count_nonzero(self.deterministic_values() > 0))

    def get_config(self):
        return {**super().get_config(), "units": self.units, "init_log_alpha": self.init_log_alpha,
                "seed": self.seed, "binary": self.binary}


def gate_product(modes, gates, dtype):
    """The product of gates by mode (``GateMultiply``'s rule, see there), or None without gates."""
    g = None  # the product of the gates first (a few values), then one multiply of whatever it scales
    for mode, z in zip(modes, gates):
        if mode == "any":
            z = tf.stop_gradient(tf.cast(tf.reduce_any(z > 0), dtype))
        elif mode == "scalar":
            z = tf.reshape(z, [])
        g = z if g is None else g * z
    return g


@register
class GateMultiply(_GateLayer):
    """``[x, z_1, ...]`` -> ``x * prod_j g_j`` where, by ``modes[j]``:

    - ``units``: ``z_j [n]`` scales the last axis of ``x`` (one gate per unit);
    - ``scalar``: ``z_j [1]`` scales all of ``x`` (a block gate);
    - ``any``: ``1`` if any ``z_j > 0`` else ``0`` (no gradient): a sub-layer whose units are all
      closed contributes nothing, not even its output bias, exactly like the removed sub-layer.
    """

    def __init__(self, modes=("units",), **kwargs):
        super().__init__(**kwargs)
        self.modes = tuple(modes)
        bad = [m for m in self.modes if m not in ("units", "scalar", "any")]
        if bad:
            raise ValueError(f"GateMultiply modes {bad} unknown")

    def call(self, inputs):
        x, gates = inputs[0], inputs[1:]
        g = gate_product(self.modes, gates, x.dtype)
        return x if g is None else x * g

    def get_config(self):
        return {**super().get_config(), "modes": list(self.modes)}


@register
class RowGate(_GateLayer):
    """``[x [B, T, d], ids [B, T], z [V - 1]]`` -> ``x * g[ids]`` with ``g = [1, z]`` (row 0, padding,
    is never gated: it is masked out downstream and becomes the shared zero row after shrinking)."""

    def call(self, inputs):
        x, ids, z = inputs
        g = tf.concat([tf.ones([1], z.dtype), z], axis=0)
        return x * tf.expand_dims(tf.gather(g, tf.cast(ids, tf.int32)), -1)


def _x_shape(input_shape):
    """The shape of ``x`` from ``[x shape, z shape]`` (or from ``x``'s shape alone)."""
    if isinstance(input_shape, (list, tuple)) and input_shape and not isinstance(input_shape[0], (int, type(None))):
        return input_shape[0]
    return input_shape


class _InputGated:
    """Mixin for a weight layer called on ``[x, z]`` that applies ``z`` through its kernel
    (``_gated_kernel``): one input spec, the shapes of ``x``, and the layer's own output."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.input_spec = None  # the base layer's spec describes one input; this layer takes [x, z]

    def build(self, input_shape):
        super().build(_x_shape(input_shape))
        self._build_input_shape = input_shape  # all inputs' shapes: a rebuilt copy builds from them again
        self.input_spec = None

    def compute_output_shape(self, input_shape):
        return super().compute_output_shape(_x_shape(input_shape))

    def call(self, inputs):
        x, z = inputs[0], inputs[1]
        kernel = self._gated_kernel(tf.cast(z, self.kernel.dtype))
        bias = self.bias if self.use_bias else None
        y = self._apply(x, kernel)
        if bias is not None:
            y = tf.nn.bias_add(y, bias)
        return y if self.activation is None else self.activation(y)


@register
class InputGatedConv1D(_InputGated, keras.layers.Conv1D):
    """``[x [B, T, C], z [C]]`` -> ``Conv1D(x * z)``, computed as the convolution of ``x`` with the
    kernel scaled on its input-channel axis, ``K[:, c, :] * z_c``. Exact (a convolution is linear in
    its input), and per training step it multiplies ``k C F`` kernel values instead of the
    ``B T C`` activations (forward and backward): the cnn's embedding-column gate. Same weights as
    the ``Conv1D`` it stands for; not a gate layer itself (``shrink`` folds ``z`` into the embedding
    columns, which is the same function)."""

    def _gated_kernel(self, z):
        return self.kernel * tf.reshape(z, [1, -1, 1])

    def _apply(self, x, kernel):
        return self.convolution_op(x, kernel)


@register
class InputGatedDense(_InputGated, keras.layers.Dense):
    """``[h [..., F], z [F]]`` -> ``Dense(h * z)``, computed with the kernel's rows scaled,
    ``W[f, :] * z_f``: exact, and per training step ``F D`` multiplies instead of ``B T F`` (the
    feed-forward units' gate, applied through the output projection). Same weights as the
    ``Dense`` it stands for; not a gate layer itself."""

    def _gated_kernel(self, z):
        return self.kernel * tf.reshape(z, [-1, 1])

    def _apply(self, h, kernel):
        return tf.tensordot(h, kernel, [[h.shape.rank - 1], [0]])


@register
class GateConcat(_GateLayer):
    """``[z_1, ...]`` -> one gate vector for a layer whose input is a concatenation: ``segments``
    lists the sizes along that axis in order, ``gated`` which of them take the next ``z`` (the
    others are kept whole: ones). The consumer of ``Concatenate([a, b])`` with ``a`` gated and
    ``b`` pinned reads ``[z_a, 1, ..., 1]``."""

    def __init__(self, segments=(), gated=(), **kwargs):
        super().__init__(**kwargs)
        self.segments = [int(n) for n in segments]
        self.gated = [bool(g) for g in gated]
        if len(self.segments) != len(self.gated) or not any(self.gated):
            raise ValueError("GateConcat: one gated flag per segment, at least one gated")

    def call(self, inputs):
        zs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        parts, it = [], iter(zs)
        for n, g in zip(self.segments, self.gated):
            parts.append(tf.reshape(next(it), [n]) if g else tf.ones([n], zs[0].dtype))
        return tf.concat(parts, axis=0)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([sum(self.segments)])

    def get_config(self):
        return {**super().get_config(), "segments": self.segments, "gated": self.gated}


@register
class HeadGatedMultiHeadAttention(keras.layers.MultiHeadAttention):
    """``keras.layers.MultiHeadAttention`` whose heads are scaled by gates: called as the layer it
    stands for plus ``head_gates=z [num_heads]``; head ``i``'s attention output (before the output
    projection) is multiplied by ``z_i``. Exact: the output projection is linear in each head's
    output, so ``shrink`` folds ``z_i`` into that head's rows of the projection and drops the heads
    with ``z_i = 0``. Same weights as the layer it stands for; not a gate layer itself."""

    def call(self, query, value, key=None, attention_mask=None, return_attention_scores=False, training=None,
             use_causal_mask=False, head_gates=None):
        self._head_gates = head_gates
        try:
            return super().call(query, value, key=key, attention_mask=attention_mask,
                                return_attention_scores=return_attention_scores, training=training,
                                use_causal_mask=use_causal_mask)
        finally:
            self._head_gates = None

    def _compute_attention(self, query, key, value, attention_mask=None, training=None):
        out, scores = super()._compute_attention(query, key, value, attention_mask, training)
        z = getattr(self, "_head_gates", None)
        if z is not None:  # out: [B, T, heads, value_dim]
            out = out * tf.reshape(tf.cast(z, out.dtype), [-1, 1])
        return out, scores


class _GatedStream:
    """Mixin for a layer called on ``[x, z]`` whose base layer takes ``x``: built from ``x``'s shape,
    ``x``'s Keras mask passed on."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.input_spec = None
        self.supports_masking = True

    def build(self, input_shape):
        super().build(_x_shape(input_shape))
        self._build_input_shape = input_shape
        self.input_spec = None

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(_x_shape(input_shape))

    def compute_mask(self, inputs, mask=None):
        return mask[0] if isinstance(mask, (list, tuple)) else mask


@register
class WidthGate(_GatedStream, _GateLayer):
    """``[x [..., d], z [d]]`` -> ``x * z``: the output channels of a layer that writes a stream group
    (a producer's output, e.g. the embedding or a branch's output projection). ``shrink`` folds
    ``z`` into the writer's output weights (``W'[:, c] = z_c W[:, c]``, ``b'_c = z_c b_c``: exact) and
    removes the closed channels from every layer of the group."""

    def call(self, inputs):
        x, z = inputs[0], inputs[1]
        return x * tf.cast(z, x.dtype)


@register
class GatedLayerNormalization(_GatedStream, keras.layers.LayerNormalization):
    """``[x [..., d], z [d]]`` -> ``z * (gamma * (x - mu) / sqrt(var + eps) + beta)`` over the open
    channels ``m = [z > 0]`` only::

        mu = sum_c m_c x_c / n,   var = sum_c m_c (x_c - mu)^2 / n,   n = max(sum_c m_c, 1)

    (last axis only). With every gate open this is the ``LayerNormalization`` it stands for; with
    channels closed it is that layer applied to the kept channels alone, which is what the shrunk
    model computes (``z`` folds into ``gamma`` and ``beta``). Not exact in the sense of the other
    gates (removing a channel changes the statistics of the others), so the network is trained
    through it. Statistics in float32 whatever the dtype policy."""

    def call(self, inputs):
        x, z = inputs[0], inputs[1]
        x32 = tf.cast(x, tf.float32)
        z = tf.cast(z, tf.float32)
        m = tf.cast(z > 0, tf.float32)
        n = tf.maximum(tf.reduce_sum(m), 1.0)
        mean = tf.reduce_sum(x32 * m, axis=-1, keepdims=True) / n
        centred = (x32 - mean) * m
        var = tf.reduce_sum(centred * centred, axis=-1, keepdims=True) / n
        y = centred * tf.math.rsqrt(var + self.epsilon)
        if self.scale:
            y = y * tf.cast(self.gamma, tf.float32)
        if self.center:
            y = y + tf.cast(self.beta, tf.float32)
        return tf.cast(y * z, x.dtype)


@register
class GatedPositionEmbedding(_GatedStream, PositionEmbedding):
    """``[x [B, T, d], z [d]]`` -> ``x + z * P[t]``: the position table written into a stream group
    through its gates (``shrink`` folds ``z`` into the table's columns)."""

    def call(self, inputs):
        x, z = inputs[0], inputs[1]
        length = tf.shape(x)[1]
        table = self.position_embeddings[:length] * tf.cast(z, self.position_embeddings.dtype)
        return x + tf.expand_dims(tf.cast(table, x.dtype), 0)


GATE_LAYERS = (L0Gate, GateMultiply, RowGate, GateConcat, WidthGate)
#: layers standing for a plain layer with gates applied inside (shrink turns each back into it)
INPUT_GATED_LAYERS = (InputGatedConv1D, InputGatedDense, HeadGatedMultiHeadAttention, GatedLayerNormalization,
                      GatedPositionEmbedding)
CUSTOM_LAYERS = {cls.__name__: cls for cls in (*GATE_LAYERS, *INPUT_GATED_LAYERS)}


# -- model-level helpers ------------------------------------------------------------------------------
def gate_layers(model) -> dict:
    """``{group: L0Gate}`` of a gated model."""
    return {layer.name[len("gate_"):]: layer for layer in model.layers if isinstance(layer, L0Gate)}


def alive_counts(model, structure, mode: str = "deterministic") -> dict:
    """Alive units per group: ``full``, ``expected`` (float tensors) or ``deterministic`` (ints).
    Ungated groups are always at full size."""
    if mode not in ("full", "expected", "deterministic"):
        raise ValueError(f"alive mode {mode!r} unknown")
    alive = structure.full_alive()
    if mode == "full":
        return alive
    for group, gate in gate_layers(model).items():
        if group not in alive:
            what = structure.config.arch if structure.config is not None else "model"
            raise ModelError(f"gate layer {gate.name!r} controls no group of this {what}")
        alive[group] = gate.expected_open() if mode == "expected" else gate.deterministic_open()
    return alive


def deterministic_gates(model) -> dict:
    """``{group: numpy gate values}`` (0 = closed) of a gated model."""
    return {g: layer.deterministic_values() for g, layer in gate_layers(model).items()}


__all__ = ["L0Gate", "GateMultiply", "RowGate", "GateConcat", "WidthGate", "GatedLayerNormalization",
           "GatedPositionEmbedding", "InputGatedConv1D",
           "InputGatedDense", "HeadGatedMultiHeadAttention", "CUSTOM_LAYERS", "gate_layers",
           "alive_counts", "deterministic_gates", "open_probability", "median_gate",
           "CLOSED_LOG_ALPHA", "OPEN_LOG_ALPHA", "OPEN_THRESHOLD"]
