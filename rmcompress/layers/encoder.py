"""The project's own small, serialisable tf_keras layers (no ``Lambda`` anywhere).

Padding convention: token id 0 is padding; :class:`PaddingMask` turns ids into a float 0/1 mask
of shape ``[batch, time]`` that the other layers take as a second input. No layer uses a huge
constant (such as -1e9) for masking: attention sets masked scores to exactly ``-mask_bound``
(default 30, so ``exp(-30)`` ~ 1e-13 relative weight) and the pooling layers mask by multiplication,
which keeps every tensor's range bounded for int8 calibration.
"""
from __future__ import annotations

import math

import numpy as np

from rmcompress._keras import keras, tf

PACKAGE = "rmcompress"
register = keras.utils.register_keras_serializable(package=PACKAGE)


@register
class PaddingMask(keras.layers.Layer):
    """``ids [B, T] int`` -> ``mask [B, T] float32``: 1 for real tokens (id != 0), 0 for padding."""

    def call(self, ids):
        return tf.cast(tf.not_equal(ids, 0), self.compute_dtype)


@register
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned position table: ``y[b, t] = x[b, t] + P[t]`` for ``t < max_length``."""

    def __init__(self, max_length: int, initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.max_length = int(max_length)
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape):
        self.position_embeddings = self.add_weight(
            name="position_embeddings", shape=(self.max_length, int(input_shape[-1])),
            initializer=self.initializer)
        super().build(input_shape)

    def call(self, x):
        length = tf.shape(x)[1]
        return x + tf.expand_dims(self.position_embeddings[:length], 0)  # no new-axis slice: TFLite-safe at dynamic T

    # tfmot's PrunableLayer / ClusterableLayer interfaces: the table is a weight like any other
    def get_prunable_weights(self):
        return [self.position_embeddings]

    def get_clusterable_weights(self):
        return [("position_embeddings", self.position_embeddings)]

    def get_clusterable_algorithm(self, weight_name):
        return None  # tfmot's default nearest-centroid lookup

    def get_config(self):
        return {**super().get_config(), "max_length": self.max_length,
                "initializer": keras.initializers.serialize(self.initializer)}


@register
class ApplyMask(keras.layers.Layer):
    """``(x [B, T, d], mask [B, T])`` -> ``x * mask[..., None]`` (zeroes padded positions)."""

    def call(self, inputs):
        x, mask = inputs
        return x * tf.expand_dims(mask, -1)


@register
class MaskedMeanPooling(keras.layers.Layer):
    """``(x [B, T, d], mask [B, T])`` -> ``sum_t m_t x_t / max(sum_t m_t, 1)`` of shape ``[B, d]``."""

    def call(self, inputs):
        x, mask = inputs
        total = tf.reduce_sum(x * tf.expand_dims(mask, -1), axis=1)
        count = tf.maximum(tf.reduce_sum(mask, axis=1, keepdims=True), 1.0)
        return total / count


@register
class MaskedMaxPooling(keras.layers.Layer):
    """``(x [B, T', d], mask [B, T])`` -> ``max_t`` over positions ``t < T'`` whose mask is 1.

    Masked positions are replaced by ``floor`` (selection by multiplication: ``x*m + floor*(1-m)``);
    with ``floor=0`` this is exact for non-negative inputs such as ReLU outputs. ``T' <= T`` allows a
    'valid' convolution's shorter output: output position ``t`` is kept when token ``t`` is real.
    """

    def __init__(self, floor: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.floor = float(floor)

    def call(self, inputs):
        x, mask = inputs
        m = tf.expand_dims(mask[:, : tf.shape(x)[1]], -1)
        if self.floor:
            x = x * m + self.floor * (1.0 - m)
        else:
            x = x * m
        return tf.reduce_max(x, axis=1)

    def get_config(self):
        return {**super().get_config(), "floor": self.floor}


@register
class MultiHeadSelfAttention(keras.layers.Layer):
    """Masked multi-head self-attention with plain matmuls (TFLite: FULLY_CONNECTED + BATCH_MATMUL).

    ``(x [B, T, d], mask [B, T])`` -> ``[B, T, output_dim]``::

        q, k, v = x Wq + bq, x Wk + bk, x Wv + bv          (each [B, T, H*dh], split into H heads)
        s = q k^T / sqrt(dh)                               ([B, H, T, T])
                                                           (scale_scores=False: s = q k^T, the
                                                           1/sqrt(dh) already folded into Wq, bq)
        s = s * m + (m - 1) * mask_bound                   (masked keys get exactly -mask_bound)
        y = concat_h(softmax(s) v) Wo + bo

    Prunable unit groups: heads (slices of Wq, Wk, Wv columns and Wo rows). ``head_gate`` (optional
    third input ``[H]``, gated training) scales head h's rows of ``Wo`` by ``z_h``, which equals
    multiplying each head's context before ``Wo`` (``(c z_h) Wo_h = c (z_h Wo_h)``) at ``H dh d``
    multiplies a step instead of ``B H T dh``.

    ``export_trace`` (set only while a TFLite converter traces the model, by
    :func:`rmcompress.runtime.tflite.tflite_concrete_function`): with one head the same math runs on
    ``[B, T, dh]`` (scores ``[B, T, T]``) with no head split or merge, which at a dynamic length
    cost 11 TFLite ops (SHAPE, STRIDED_SLICE, PACK, RESHAPE, TRANSPOSE). Training and Keras
    inference keep the 4-D form (the form gated training needs for any number of heads).
    """

    export_trace = False

    def __init__(self, num_heads: int, head_dim: int, output_dim: int | None = None,
                 mask_bound: float = 30.0, kernel_initializer="glorot_uniform", scale_scores: bool = True,
                 **kwargs):
        kwargs.pop("output_scale", None)  # configs saved with the former block-scale input
        super().__init__(**kwargs)
        self.scale_scores = bool(scale_scores)
        self.num_heads = int(num_heads)
        self.head_dim = int(head_dim)
        self.output_dim = None if output_dim is None else int(output_dim)
        self.mask_bound = float(mask_bound)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def _dims(self, input_shape) -> tuple[int, int, int]:
        """``(d, H*dh, output_dim)`` from ``[x_shape, mask_shape(, gate_shape)]`` or ``x_shape``."""
        x_shape = input_shape[0] if isinstance(input_shape, (list, tuple)) and \
            isinstance(input_shape[0], (list, tuple, tf.TensorShape)) else input_shape
        d = int(x_shape[-1])
        return d, self.num_heads * self.head_dim, self.output_dim or d

    def _fresh_initializer(self):
        """A new initializer instance per kernel, so kernels get distinct random values."""
        init = self.kernel_initializer
        return init.__class__.from_config(init.get_config())

    def build(self, input_shape):
        d, inner, out = self._dims(input_shape)

        def init(shape, dtype=None):
            return self._fresh_initializer()(shape, dtype=dtype)

        self.query_kernel = self.add_weight(name="query_kernel", shape=(d, inner), initializer=init)
        self.query_bias = self.add_weight(name="query_bias", shape=(inner,), initializer="zeros")
        self.key_kernel = self.add_weight(name="key_kernel", shape=(d, inner), initializer=init)
        self.key_bias = self.add_weight(name="key_bias", shape=(inner,), initializer="zeros")
        self.value_kernel = self.add_weight(name="value_kernel", shape=(d, inner), initializer=init)
        self.value_bias = self.add_weight(name="value_bias", shape=(inner,), initializer="zeros")
        self.output_kernel = self.add_weight(name="output_kernel", shape=(inner, out), initializer=init)
        self.output_bias = self.add_weight(name="output_bias", shape=(out,), initializer="zeros")
        super().build(input_shape)

    @staticmethod
    def _project(x, kernel, bias):
        return tf.tensordot(x, kernel, axes=1) + bias

    def _one_head_export(self) -> bool:
        return self.num_heads == 1 and self.export_trace

    def _split_heads(self, t, batch, length):
        """``[B, T, H*dh]`` -> ``[B, H, T, dh]`` (unchanged ``[B, T, dh]`` in the one-head export form)."""
        if self._one_head_export():
            return t
        t = tf.reshape(t, [batch, length, self.num_heads, self.head_dim])
        return tf.transpose(t, [0, 2, 1, 3])

    def _merge_heads(self, context, batch, length):
        """``[B, H, T, dh]`` -> ``[B, T, H*dh]`` (unchanged in the one-head export form)."""
        if self._one_head_export():
            return context
        return tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [batch, length, self.num_heads * self.head_dim])

    def call(self, inputs):
        x, mask = inputs[0], inputs[1]
        head_gate = inputs[2] if len(inputs) > 2 else None
        batch, length = tf.shape(x)[0], tf.shape(x)[1]
        q, k, v = self._qkv(x, batch, length)
        scores = self._raw_scores(q, k)
        if self.scale_scores:
            scores = scores * (1.0 / math.sqrt(self.head_dim))
        one_head = self._one_head_export()
        m = tf.expand_dims(mask, 1)  # [B, 1, T] (TFLite-safe at dynamic T)
        if not one_head:
            m = tf.expand_dims(m, 1)  # [B, 1, 1, T]
        scores = scores * m + (m - 1.0) * self.mask_bound
        weights = tf.nn.softmax(scores, axis=-1)
        context = tf.matmul(weights, v)  # [B, H, T, dh] ([B, T, dh] in the one-head export form)
        context = self._merge_heads(context, batch, length)
        kernel, bias = self.output_kernel, self.output_bias
        if head_gate is not None:  # (c z_h) Wo_h = c (z_h Wo_h): scale Wo's rows, not the context
            kernel = kernel * tf.expand_dims(tf.repeat(head_gate, self.head_dim), -1)
        return self._project(context, kernel, bias)

    def _raw_scores(self, q, k):
        """``q k^T`` before the scale and the mask (a QAT subclass fake-quantises it)."""
        return tf.matmul(q, k, transpose_b=True)

    def _qkv(self, x, batch, length):
        """Queries, keys and values, each ``[B, H, T, dh]`` (a subclass may fuse the projections)."""
        q = self._split_heads(self._project(x, self.query_kernel, self.query_bias), batch, length)
        k = self._split_heads(self._project(x, self.key_kernel, self.key_bias), batch, length)
        v = self._split_heads(self._project(x, self.value_kernel, self.value_bias), batch, length)
        return q, k, v

    def get_prunable_weights(self):
        return [self.query_kernel, self.key_kernel, self.value_kernel, self.output_kernel]

    def get_clusterable_weights(self):  # tfmot ClusterableLayer interface (rmcompress.compression.cluster)
        return [(name, getattr(self, name)) for name in
                ("query_kernel", "key_kernel", "value_kernel", "output_kernel")]

    def get_clusterable_algorithm(self, weight_name):
        return None  # tfmot's default nearest-centroid lookup

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "head_dim": self.head_dim,
                "output_dim": self.output_dim, "mask_bound": self.mask_bound, "scale_scores": self.scale_scores,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}


def remap_dtype(rows: int) -> str:
    """The narrowest ``TokenRemap`` table dtype holding row ids ``0 .. rows - 1``."""
    return "int16" if int(rows) <= np.iinfo(np.int16).max + 1 else "int32"


@register
class TokenRemap(keras.layers.Layer):
    """``ids [B, T] int32`` -> ``table[ids]``: maps tokeniser ids onto the rows a shrunk embedding kept.

    ``table`` (``[input_vocab_size]``, not trainable) sends every removed vocabulary row to row
    0, which a shrunk model keeps all-zero (padding is masked by id before the remap, so a removed
    token still counts as a real token with a zero embedding), or, from ``factorise``'s
    ``unseen_tokens``, a dropped token to a kept row. Initialised to the identity. ``table_dtype``
    ``int16`` (rows below 32,768) halves its bytes; the rows read are cast to int32.
    """

    def __init__(self, input_vocab_size: int, table_dtype: str = "int32", **kwargs):
        super().__init__(**kwargs)
        self.input_vocab_size = int(input_vocab_size)
        if table_dtype not in ("int32", "int16"):
            raise ValueError(f"TokenRemap: table_dtype {table_dtype!r} must be int32 or int16")
        self.table_dtype = table_dtype

    def build(self, input_shape):
        self.table = self.add_weight(
            name="table", shape=(self.input_vocab_size,), dtype=self.table_dtype, trainable=False,
            initializer=lambda shape, dtype=None: tf.cast(tf.range(shape[0], dtype="int32"), self.table_dtype))
        super().build(input_shape)

    def call(self, ids):
        rows = tf.gather(self.table, tf.cast(ids, "int32"))
        return rows if self.table_dtype == "int32" else tf.cast(rows, "int32")

    def get_config(self):
        return {**super().get_config(), "input_vocab_size": self.input_vocab_size, "table_dtype": self.table_dtype}


@register
class BiasAdd(keras.layers.Layer):
    """``x [..., d]`` -> ``x + b`` with a learned bias ``b [d]``.

    A model file that holds one loads, counts and compresses like any other layer; ``shrink`` never
    makes one (the bias a removed branch still adds is folded into the layer before it).
    """

    def build(self, input_shape):
        self.bias = self.add_weight(name="bias", shape=(int(input_shape[-1]),), initializer="zeros")
        super().build(input_shape)

    def call(self, x):
        return x + self.bias


@keras.utils.register_keras_serializable(package=PACKAGE)
def gelu_tanh(x):
    """GELU, tanh approximation: ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`` (keras-hub's
    BERT). The exact (erf) form ``0.5 x (1 + erf(x / sqrt(2)))`` is the built-in ``"gelu"``."""
    return tf.nn.gelu(x, approximate=True)


CUSTOM_LAYERS = {cls.__name__: cls for cls in (
    PaddingMask, PositionEmbedding, ApplyMask, MaskedMeanPooling, MaskedMaxPooling,
    MultiHeadSelfAttention, TokenRemap, BiasAdd)}
CUSTOM_LAYERS["gelu_tanh"] = gelu_tanh
