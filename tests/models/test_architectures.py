"""Architectures: forward pass, masking, serialisation, no Lambda layers."""
import numpy as np
import pytest

from rmcompress._keras import keras
from rmcompress.models.archconfig import ArchConfig
from rmcompress.models.architectures import build_reward_model
from rmcompress.models.losses import pairwise_loss, pointwise_loss

ARCHS = ["transformer", "cnn", "bow"]


def small(arch, **kw):
    return ArchConfig(arch=arch, vocab_size=50, seq_len=12, width=8, depth=2, heads=2, head_dim=4, ffn=16,
                      filters=4, hidden=8, dropout=0.0, **kw)


def ids_batch():
    rng = np.random.RandomState(0)
    ids = rng.randint(2, 50, (4, 12)).astype(np.int32)
    ids[0, 5:] = 0
    ids[1, 1:] = 0
    return ids


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_shape_and_no_lambda(arch):
    m = build_reward_model(small(arch))
    out = m(ids_batch())
    assert out.shape == (4, 1)
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in m.layers)
    assert m.get_layer("reward").output_shape == (None, 1)


@pytest.mark.parametrize("arch", ARCHS)
def test_padding_does_not_leak(arch):
    """Changing the [PAD] embedding row must not change any reward: padding is masked."""
    m = build_reward_model(small(arch))
    ids = ids_batch()
    before = m(ids).numpy()
    emb = m.get_layer("token_embedding")
    w = emb.get_weights()[0]
    w[0] = np.random.RandomState(1).normal(0, 5, w.shape[1])
    emb.set_weights([w])
    np.testing.assert_allclose(m(ids).numpy(), before, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_save_load_same_outputs(arch, tmp_path):
    from rmcompress.models.modeldir import custom_objects

    m = build_reward_model(small(arch))
    m.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras", custom_objects=custom_objects(), safe_mode=True)
    np.testing.assert_allclose(again(ids_batch()).numpy(), m(ids_batch()).numpy(), atol=1e-6)


def test_uneven_blocks_and_removed_block():
    cfg = small("transformer", block_present=[True, False])
    cfg.heads, cfg.ffn = [2, 1], [16, 4]
    m = build_reward_model(cfg)
    names = {layer.name for layer in m.layers}
    assert "block0_attn" in names and "block1_attn" not in names
    assert m(ids_batch()).shape == (4, 1)


def test_pairwise_loss_matches_hand_computation():
    rc, rr, margin = np.array([2.0, 0.0]), np.array([1.0, 0.5]), np.array([0.0, 0.25])
    # -log sigmoid(d) with d = 1.0 and d = -0.75
    expected = [np.log1p(np.exp(-1.0)), np.log1p(np.exp(0.75))]
    np.testing.assert_allclose(pairwise_loss(rc, rr, margin).numpy(), expected, rtol=1e-6)
    centred = pairwise_loss(rc, rr, margin, center_coefficient=0.1).numpy()
    np.testing.assert_allclose(centred, np.array(expected) + 0.1 * np.array([9.0, 0.25]), rtol=1e-6)


def test_pointwise_losses():
    r, y = np.array([0.0, 2.0]), np.array([1.0, 0.0])
    np.testing.assert_allclose(pointwise_loss("bce", r, y).numpy(), [np.log(2), np.log1p(np.exp(2.0))], rtol=1e-6)
    np.testing.assert_allclose(pointwise_loss("mse", r, y).numpy(), [1.0, 4.0])
    np.testing.assert_allclose(pointwise_loss("mae", r, y).numpy(), [1.0, 2.0])
