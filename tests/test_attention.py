"""MultiHeadSelfAttention against a NumPy reference (1 and 3 heads, with and without head gates)."""
import math

import numpy as np
import pytest

from rmcompress._keras import tf
from rmcompress.models import layers as L


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
