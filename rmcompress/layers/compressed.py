"""Layers that compression passes put into a model (serialisable, registered like the model layers).

``FusedQKVSelfAttention``   :class:`MultiHeadSelfAttention` with the query/key/value projections
                            merged into one ``[d, 3*H*dh]`` matmul (``fuse`` pass). Same FLOPs by
                            the registry's convention, one FULLY_CONNECTED op instead of three.
``PointwiseDense``          ``Dense`` on ``[B, T, d]`` inputs computed as one broadcast matmul
                            (``tf.matmul``) instead of ``tf.tensordot``: no run-time shape ops, and
                            TFLite gets one FULLY_CONNECTED whose output directly carries the bias
                            and activation (needed for int8 QAT: a reshape between matmul and bias
                            hides the output range from the converter).
``GatherPositionEmbedding`` :class:`PositionEmbedding` reading its table with ``gather(P, range(T))``
                            (same values): at a dynamic length the table stays a lookup table that
                            weight quantisation stores in int8, instead of a float constant.
``FactorizedEmbedding``     ``ids -> E[ids] @ P`` with ``E [V, r]`` and ``P [r, d]`` (``factorise``
                            pass): ``V*r + r*d`` params instead of ``V*d``; ``2*r*d`` FLOPs per token.
                            With ``full_rows`` ``N``: ids < N read exact rows ``F [N, d]``, the rest
                            ``E [V-N, r] @ P`` (``N*d + (V-N)*r + r*d`` params, same FLOPs).

Importing this module registers them with Keras serialisation; their FLOPs/params facts are in
:mod:`rmcompress.cost.registry`, and ``rmcompress.models.modeldir.custom_objects`` picks up
:data:`CUSTOM_LAYERS`.
"""
from __future__ import annotations

from rmcompress._keras import keras, tf
from rmcompress.layers.encoder import MultiHeadSelfAttention, PositionEmbedding, register


@register
class FusedQKVSelfAttention(MultiHeadSelfAttention):
    """Self-attention whose q/k/v projections are one matmul: ``[q|k|v] = x W_qkv + b_qkv``.

    ``W_qkv = concat(Wq, Wk, Wv, axis=1)``; everything after the projection is the parent's code.
    """

    def build(self, input_shape):
        d, inner, out = self._dims(input_shape)
        self.qkv_kernel = self.add_weight(name="qkv_kernel", shape=(d, 3 * inner),
                                          initializer=self._fresh_initializer())
        self.qkv_bias = self.add_weight(name="qkv_bias", shape=(3 * inner,), initializer="zeros")
        self.output_kernel = self.add_weight(name="output_kernel", shape=(inner, out),
                                             initializer=self._fresh_initializer())
        self.output_bias = self.add_weight(name="output_bias", shape=(out,), initializer="zeros")
        keras.layers.Layer.build(self, input_shape)

    def _project(self, x, kernel, bias):
        return tf.matmul(x, kernel) + bias

    def _qkv(self, x, batch, length):
        qkv = self._project(x, self.qkv_kernel, self.qkv_bias)
        q, k, v = tf.split(qkv, 3, axis=-1)
        return (self._split_heads(q, batch, length), self._split_heads(k, batch, length),
                self._split_heads(v, batch, length))

    def get_prunable_weights(self):
        return [self.qkv_kernel, self.output_kernel]

    def get_clusterable_weights(self):
        return [("qkv_kernel", self.qkv_kernel), ("output_kernel", self.output_kernel)]


@register
class GatherPositionEmbedding(PositionEmbedding):
    """``y[b, t] = x[b, t] + P[t]`` via ``tf.gather`` (see module docstring)."""

    def call(self, x):
        positions = tf.gather(self.position_embeddings, tf.range(tf.shape(x)[1]))
        return x + tf.expand_dims(positions, 0)


@register
class PointwiseDense(keras.layers.Dense):
    """:class:`keras.layers.Dense` whose rank >= 3 inputs use ``tf.matmul`` (same weights, same math)."""

    def call(self, inputs):
        if inputs.shape.rank is None or inputs.shape.rank < 3:
            return super().call(inputs)
        y = tf.matmul(tf.cast(inputs, self.compute_dtype), self.kernel)
        if self.use_bias:
            y = y + self.bias
        return self.activation(y) if self.activation is not None else y

    def get_prunable_weights(self):
        return [self.kernel]

    def get_clusterable_weights(self):
        return [("kernel", self.kernel)]

    def get_clusterable_algorithm(self, weight_name):
        return None


@register
class FactorizedEmbedding(keras.layers.Layer):
    """Low-rank embedding: ``y[b, t] = E[ids[b, t]] @ P`` (``E [input_dim, rank]``, ``P [rank, output_dim]``).

    ``full_rows`` ``N`` > 0 (two tiers): ids below ``N`` read an exact row of ``F [N, output_dim]``,
    the others ``E[id - N] @ P`` (``E [input_dim - N, rank]``):
    ``y = where(id < N, F[min(id, N - 1)], E[max(id - N, 0)] @ P)``. The ``factorise`` pass orders the
    vocabulary by frequency, so the ``N`` most used tokens keep their rows exactly."""

    def __init__(self, input_dim: int, rank: int, output_dim: int, full_rows: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.input_dim, self.rank, self.output_dim = int(input_dim), int(rank), int(output_dim)
        self.full_rows = int(full_rows)
        if not 0 <= self.full_rows < self.input_dim:
            raise ValueError(f"FactorizedEmbedding: full_rows {full_rows} must be in [0, input_dim={input_dim})")

    def build(self, input_shape):
        self.embeddings = self.add_weight(name="embeddings", shape=(self.input_dim - self.full_rows, self.rank),
                                          initializer="uniform")
        self.projection = self.add_weight(name="projection", shape=(self.rank, self.output_dim),
                                          initializer="glorot_uniform")
        self.full = None
        if self.full_rows:
            self.full = self.add_weight(name="full", shape=(self.full_rows, self.output_dim), initializer="uniform")
        super().build(input_shape)

    def call(self, ids):
        ids = tf.cast(ids, tf.int32)
        if not self.full_rows:
            return tf.matmul(tf.gather(self.embeddings, ids), self.projection)
        n = self.full_rows
        low = tf.matmul(tf.gather(self.embeddings, tf.maximum(ids - n, 0)), self.projection)
        top = tf.gather(self.full, tf.minimum(ids, n - 1))
        return tf.where(tf.expand_dims(ids < n, -1), top, low)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape).concatenate([self.output_dim])

    def tables(self) -> list[tuple[str, tf.Variable]]:
        """``(attribute name, weight)`` of every table: embeddings, projection (and full)."""
        out = [("embeddings", self.embeddings), ("projection", self.projection)]
        return out + ([("full", self.full)] if self.full_rows else [])

    def get_prunable_weights(self):
        return [w for _, w in self.tables()]

    def get_clusterable_weights(self):
        return self.tables()

    def get_clusterable_algorithm(self, weight_name):
        return None

    def get_config(self):
        return {**super().get_config(), "input_dim": self.input_dim, "rank": self.rank,
                "output_dim": self.output_dim, "full_rows": self.full_rows}


CUSTOM_LAYERS = {cls.__name__: cls for cls in (FusedQKVSelfAttention, PointwiseDense, GatherPositionEmbedding,
                                                FactorizedEmbedding)}
