"""MultiHeadSelfAttention against a NumPy reference (1 and 3 heads, with and without head gates), and
the one-head export form of its TFLite graph."""
import math

import numpy as np
import pytest

from rmcompress._keras import keras, tf
from rmcompress.layers.compressed import FusedQKVSelfAttention
from rmcompress.evaluation.op_profile import op_dtypes
from rmcompress.runtime.tflite import TFLiteRunner, convert
from rmcompress.layers import encoder as L


def _reference(layer, x, mask, gate=None):
    """softmax((x Wq)(x Wk)^T / sqrt(dh), masked keys = -bound) (x Wv), heads concatenated, then Wo."""
    w = {v.name.split("/")[-1].split(":")[0]: v.numpy() for v in layer.weights}
    h, dh = layer.num_heads, layer.head_dim
    q, k, v = (x @ w[f"{n}_kernel"] + w[f"{n}_bias"] for n in ("query", "key", "value"))
    b, t, _ = x.shape
    split = lambda a: a.reshape(b, t, h, dh).transpose(0, 2, 1, 3)  # noqa: E731
    s = split(q) @ split(k).transpose(0, 1, 3, 2) / math.sqrt(dh)
    m = mask[:, None, None, :]
    s = s * m + (m - 1) * layer.mask_bound
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    ctx = p @ split(v)
    if gate is not None:
        ctx = ctx * gate[None, :, None, None]
    ctx = ctx.transpose(0, 2, 1, 3).reshape(b, t, h * dh)
    return ctx @ w["output_kernel"] + w["output_bias"]


@pytest.mark.parametrize("heads", [1, 3])
@pytest.mark.parametrize("gated", [False, True])
def test_attention_matches_numpy_reference(heads, gated):
    rng = np.random.default_rng(heads)
    x = rng.normal(size=(2, 7, 12)).astype(np.float32)
    mask = np.ones((2, 7), np.float32)
    mask[0, 4:] = 0  # padded tail
    layer = L.MultiHeadSelfAttention(heads, 5, output_dim=6)
    gate = rng.uniform(0.2, 1.0, size=heads).astype(np.float32) if gated else None
    inputs = [tf.constant(x), tf.constant(mask)] + ([tf.constant(gate)] if gated else [])
    got = layer(inputs).numpy()
    assert got.shape == (2, 7, 6)
    np.testing.assert_allclose(got, _reference(layer, x, mask, gate), atol=1e-5)


def _one_block(heads: int) -> keras.Model:
    ids = keras.Input((None,), dtype="int32")
    mask = L.PaddingMask()(ids)
    x = keras.layers.Embedding(50, 16)(ids)
    x = FusedQKVSelfAttention(heads, 8)([x, mask])  # what fuse leaves: projections are plain matmuls
    return keras.Model(ids, keras.layers.Dense(1)(L.MaskedMeanPooling()([x, mask])))


def test_one_head_attention_exports_without_head_split_ops():
    """At a dynamic shape the head split/merge is SHAPE/STRIDED_SLICE/PACK/RESHAPE/TRANSPOSE; the
    one-head export form needs none of them, gives the Keras model's outputs, and is used only while
    the converter traces (Keras keeps the 4-D form)."""
    one_model = _one_block(1)
    one_flat = convert(one_model, seq_len=9)
    one = [op for op, _ in op_dtypes(one_flat)]
    two = [op for op, _ in op_dtypes(convert(_one_block(2), seq_len=9))]
    shape_ops = {"SHAPE", "STRIDED_SLICE", "PACK", "RESHAPE", "TRANSPOSE"}
    assert shape_ops & set(two), two  # the multi-head graph does split heads
    assert not shape_ops & set(one), one
    assert one.count("BATCH_MATMUL") == 2, one  # scores, probabilities @ V
    assert len(one) < len(two) - 8, (one, two)
    ids = np.random.default_rng(0).integers(1, 50, size=(4, 9)).astype(np.int32)
    ids[1, 5:] = 0
    np.testing.assert_allclose(TFLiteRunner(one_flat).score(ids), one_model.predict(ids, verbose=0).reshape(-1),
                               atol=1e-5)
    attn = [m for m in one_model.submodules if isinstance(m, L.MultiHeadSelfAttention)]
    assert attn and not any(a.export_trace for a in attn)  # reset after tracing
