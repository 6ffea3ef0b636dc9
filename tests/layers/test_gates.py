"""Hard-concrete gates: the math, the gated architectures, serialisation, expected counts."""
from __future__ import annotations

import numpy as np
import pytest

from rmcompress._keras import keras, tf
from rmcompress.models.structure import count
from rmcompress.layers.gates import (BETA, GAMMA, ZETA, L0Gate, OPEN_THRESHOLD, alive_counts, gate_layers,
                                     median_gate, open_probability)
from rmcompress.structured.gating import gated_copy
from rmcompress.models.structure import gated_cost, infer_arch_config, structure_of
from rmcompress.errors import ModelError
from rmcompress.models.archconfig import ArchConfig
from rmcompress.models.architectures import build_reward_model
from rmcompress.models.modeldir import custom_objects

CFG = dict(vocab_size=60, seq_len=16, width=16, depth=2, heads=2, head_dim=8, ffn=12, filters=[4, 5, 3],
           hidden=10, dropout=0.0)
EXPECTED_GROUPS = {
    "transformer": {"block0_attn_block", "block0_attn_heads", "block0_ffn_in", "block1_attn_block", "block1_attn_heads", "block1_ffn_in"},
    "cnn": {"token_embedding", "conv3", "conv4", "conv5"},
    "bow": {"token_embedding", "hidden"},
}


def _ids(n=6, seed=0):
    ids = np.random.RandomState(seed).randint(1, 60, (n, 16)).astype("int32")
    ids[:, 11:] = 0
    return ids


def test_open_probability_matches_sampling():
    gate = L0Gate(4000, init_log_alpha=0.7)
    gate(tf.zeros([1]))
    z = np.concatenate([gate(tf.zeros([1]), training=True).numpy() for _ in range(5)])
    assert np.mean(z > 0) == pytest.approx(float(open_probability(tf.constant(0.7))), abs=0.01)
    assert z.min() == 0.0 and z.max() == 1.0  # exact zeros and ones occur
    # expected open count is differentiable in log_alpha
    with tf.GradientTape() as tape:
        e = gate.expected_open()
    assert float(tf.reduce_sum(tape.gradient(e, gate.log_alpha))) > 0


def test_deterministic_gate_is_the_median_and_open_iff_p_above_half():
    la = np.array([-5.0, OPEN_THRESHOLD - 0.01, OPEN_THRESHOLD + 0.01, 0.0, 5.0])
    z = median_gate(la)
    p = open_probability(la)
    assert np.array_equal(z > 0, p > 0.5)
    assert z[-1] == 1.0 and z[0] == 0.0
    s = 1 / (1 + np.exp(-la[3] / BETA))
    assert z[3] == pytest.approx(s * (ZETA - GAMMA) + GAMMA)


def test_noise_is_one_vector_per_step_and_seeded():
    a = L0Gate(8, init_log_alpha=0.0, seed=3)
    b = L0Gate(8, init_log_alpha=0.0, seed=3)
    x = tf.zeros([2])
    za, zb = a(x, training=True).numpy(), b(x, training=True).numpy()
    np.testing.assert_array_equal(za, zb)  # same seed and step: same draw
    assert not np.array_equal(a(x, training=True).numpy(), za)  # next step: a new draw
    np.testing.assert_array_equal(a(x).numpy(), a(x).numpy())  # inference: deterministic


@pytest.mark.parametrize("arch", ["transformer", "cnn", "bow"])
def test_every_prunable_group_is_gated_and_no_lambda(arch):
    g = gated_copy(build_reward_model(ArchConfig(arch=arch, **CFG)))
    assert set(gate_layers(g)) == EXPECTED_GROUPS[arch]
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in g.layers)
    g_vocab = gated_copy(build_reward_model(ArchConfig(arch=arch, **CFG)), gate_vocab=True)
    assert set(gate_layers(g_vocab)) == EXPECTED_GROUPS[arch] | {"vocab"}


@pytest.mark.parametrize("arch", ["transformer", "cnn", "bow"])
def test_gated_copy_with_open_gates_equals_the_plain_model(arch):
    keras.utils.set_random_seed(1)
    plain = build_reward_model(ArchConfig(arch=arch, **CFG))
    gated = gated_copy(plain, gate_vocab=True)
    np.testing.assert_allclose(gated(_ids()).numpy(), plain(_ids()).numpy(), atol=1e-6)
    assert count(gated).as_dict() == count(plain).as_dict()
    assert infer_arch_config(gated).arch == arch


def test_input_gated_conv_equals_the_convolution_of_the_gated_input():
    """``InputGatedConv1D([x, z]) == Conv1D(x * z)`` with the same weights, forward and in the
    gradient w.r.t. z (the cnn's embedding-column gate acts through the kernel)."""
    from rmcompress.layers.gates import InputGatedConv1D

    rng = np.random.RandomState(0)
    x = tf.constant(rng.normal(size=(3, 9, 5)).astype(np.float32))
    z = tf.Variable(rng.uniform(0, 1, size=5).astype(np.float32) * np.array([1, 0, 1, 1, 0], np.float32))
    conv = keras.layers.Conv1D(4, 3, padding="valid", activation="relu")
    gated = InputGatedConv1D(4, 3, padding="valid", activation="relu")
    conv(x)
    gated([x, z])
    gated.set_weights(conv.get_weights())
    with tf.GradientTape(persistent=True) as tape:
        want = conv(x * z)
        got = gated([x, z])
        lw, lg = tf.reduce_sum(want ** 2), tf.reduce_sum(got ** 2)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tape.gradient(lg, z).numpy(), tape.gradient(lw, z).numpy(), rtol=1e-4, atol=1e-5)
    g = gated_copy(build_reward_model(ArchConfig(arch="cnn", **CFG)))
    assert {type(layer).__name__ for layer in g.layers if layer.name.startswith("conv") and
            not layer.name.endswith("gating")} == {"InputGatedConv1D"}
    # the filters' gates act through the rows of the layer reading the pooled features; no gate
    # multiplies an activation
    assert type(g.get_layer("reward")).__name__ == "InputGatedDense"
    assert not any(type(layer).__name__ == "GateMultiply" for layer in g.layers)



def test_head_gate_through_the_output_kernel_equals_gating_each_heads_context():
    """The attention's head gate scales ``Wo``'s rows, ``(c z_h) Wo_h = c (z_h Wo_h)``: the output and
    its gradient w.r.t. z equal gating each head's context before ``Wo`` (the reference form)."""
    from rmcompress.layers.encoder import MultiHeadSelfAttention

    rng = np.random.RandomState(1)
    heads, dh = 3, 4
    x = tf.constant(rng.normal(size=(2, 7, 6)).astype(np.float32))
    mask = tf.constant((np.arange(7)[None, :] < np.array([[7], [4]])).astype(np.float32))
    z = tf.Variable(np.array([0.7, 0.0, 1.0], np.float32))
    attn = MultiHeadSelfAttention(heads, dh)
    attn([x, mask, z])

    def reference():
        b, t = 2, 7
        q, k, v = attn._qkv(x, b, t)
        m = mask[:, None, None, :]
        s = tf.matmul(q, k, transpose_b=True) / np.sqrt(dh)
        s = s * m + (m - 1.0) * attn.mask_bound
        c = tf.matmul(tf.nn.softmax(s, -1), v) * tf.reshape(z, [1, heads, 1, 1])
        c = tf.reshape(tf.transpose(c, [0, 2, 1, 3]), [b, t, heads * dh])
        return tf.tensordot(c, attn.output_kernel, axes=1) + attn.output_bias

    with tf.GradientTape(persistent=True) as tape:
        want, got = reference(), attn([x, mask, z])
        lw, lg = tf.reduce_sum(want ** 3), tf.reduce_sum(got ** 3)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tape.gradient(lg, z).numpy(), tape.gradient(lw, z).numpy(), rtol=1e-4, atol=1e-5)
    assert abs(float(tape.gradient(lg, z)[1])) > 1e-4  # a closed head still gets a gradient

@pytest.mark.parametrize("arch", ["transformer", "cnn"])
def test_gated_model_saves_and_loads_in_safe_mode(tmp_path, arch):
    g = gated_copy(build_reward_model(ArchConfig(arch=arch, **CFG)), gate_vocab=True)
    for gate in gate_layers(g).values():
        gate.log_alpha.assign(np.random.RandomState(0).normal(0, 3, gate.log_alpha.shape))
    g.save(tmp_path / "g.keras")
    back = keras.models.load_model(tmp_path / "g.keras", custom_objects=custom_objects(), safe_mode=True,
                                   compile=False)
    np.testing.assert_array_equal(back(_ids()).numpy(), g(_ids()).numpy())
    assert count(back).as_dict() == count(g).as_dict()


def test_expected_cost_uses_registry_formulas():
    """Expected FLOPs = registry at expected alive counts; all gates wide open -> dense FLOPs;
    the expected count matches the deterministic count when gates are saturated."""
    cfg = ArchConfig(arch="transformer", **CFG)
    g = gated_copy(build_reward_model(cfg))
    dense = count(build_reward_model(cfg)).flops
    assert gated_cost(g, "full").flops == dense
    for gate in gate_layers(g).values():
        gate.log_alpha.assign(np.full(gate.units, 20.0))
    assert float(gated_cost(g, "expected").flops.numpy()) == pytest.approx(dense, rel=1e-5)
    la = gate_layers(g)
    la["block0_attn_block"].log_alpha.assign([-20.0])          # block 0 closed
    la["block1_attn_heads"].log_alpha.assign([20.0, -20.0])  # one head of block 1 closed
    det = gated_cost(g, "deterministic")
    exp = gated_cost(g, "expected")
    assert float(exp.flops.numpy()) == pytest.approx(det.flops, rel=1e-5)
    alive = alive_counts(g, structure_of(g), "deterministic")
    assert alive["block0_attn_block"] == 0 and alive["block1_attn_heads"] == 1 and alive["block1_ffn_in"] == 12
    assert det.flops < dense


def test_expected_cost_gradient_prefers_expensive_units():
    g = gated_copy(build_reward_model(ArchConfig(arch="cnn", **CFG)))
    gates = gate_layers(g)
    structure = structure_of(g)
    from rmcompress.models.structure import cost_model

    cm = cost_model(g, structure)
    with tf.GradientTape() as tape:
        alive = structure.full_alive()
        alive.update({k: v.expected_open() for k, v in gates.items()})
        flops = cm.evaluate(alive).flops
    grads = tape.gradient(flops, [gates["conv3"].log_alpha, gates["conv5"].log_alpha])
    # a width-5 filter costs more than a width-3 filter (per unit, same gate state)
    assert float(grads[1][0]) > float(grads[0][0]) > 0


def test_unknown_gate_group_is_an_error():
    with pytest.raises(ModelError, match="cannot gate"):
        gated_copy(build_reward_model(ArchConfig(arch="bow", **CFG)), groups=["heads"])


def test_infer_arch_config_rejects_foreign_models():
    x = keras.Input((4,))
    with pytest.raises(ModelError, match="not an rmcompress architecture"):
        infer_arch_config(keras.Model(x, keras.layers.Dense(1)(x)))


def test_a_block_gate_needs_its_branches_gates():
    """A block gate multiplies the gates of its attention heads and feed-forward units: gating the
    block alone is refused, naming the missing groups; with them, a closed block leaves exactly the
    residual stream's constant (the shrunk model has no layer of the block)."""
    cfg = ArchConfig(arch="transformer", **CFG)
    plain = build_reward_model(cfg)
    with pytest.raises(ModelError, match=r"cannot gate block 'block0_attn_block' without .*block0_attn_heads"):
        gated_copy(plain, groups=["block0_attn_block"])
    g = gated_copy(plain, groups=["block0_attn_block", "block0_attn_heads", "block0_ffn_in"])
    assert set(gate_layers(g)) == {"block0_attn_block", "block0_attn_heads", "block0_ffn_in"}
    gate_layers(g)["block0_attn_block"].log_alpha.assign([-20.0])
    from rmcompress.structured.shrink import shrink

    shrunk = shrink(g)
    assert not {n for n in (layer.name for layer in shrunk.layers) if n.startswith("block0_")}
    np.testing.assert_allclose(shrunk(_ids()).numpy(), g(_ids()).numpy(), atol=1e-5)


def test_gated_layer_norm_is_the_norm_of_the_open_channels_times_the_gates():
    from rmcompress.layers.gates import GatedLayerNormalization
    rng = np.random.RandomState(0)
    x = rng.normal(size=(3, 5, 8)).astype(np.float32) * 3 + 1
    z = np.array([1.0, 0.0, 0.5, 1.0, 0.0, 0.25, 1.0, 1.0], np.float32)
    gated = GatedLayerNormalization(epsilon=1e-5)
    gated([x, z])
    gamma, beta = rng.normal(size=8).astype(np.float32), rng.normal(size=8).astype(np.float32)
    gated.set_weights([gamma, beta])
    kept = np.nonzero(z)[0]
    plain = keras.layers.LayerNormalization(epsilon=1e-5)
    plain(x[..., kept])
    plain.set_weights([gamma[kept] * z[kept], beta[kept] * z[kept]])  # what shrink folds
    got = gated([x, z]).numpy()
    np.testing.assert_allclose(got[..., kept], plain(x[..., kept]).numpy(), atol=1e-5)
    assert np.all(got[..., z == 0] == 0)  # a closed channel is exactly zero downstream
    ones = np.ones(8, np.float32)  # every gate open: the plain norm over the whole width
    full = keras.layers.LayerNormalization(epsilon=1e-5)
    full(x)
    full.set_weights([gamma, beta])
    np.testing.assert_allclose(gated([x, ones]).numpy(), full(x).numpy(), atol=1e-5)


def test_width_gate_and_gated_position_table_scale_what_they_write():
    from rmcompress.layers.gates import GatedPositionEmbedding, WidthGate
    x = np.ones((2, 4, 3), np.float32)
    z = np.array([1.0, 0.0, 0.5], np.float32)
    np.testing.assert_allclose(WidthGate()([x, z]).numpy(), x * z)
    pos = GatedPositionEmbedding(6)
    pos([x, z])
    table = np.arange(18, dtype=np.float32).reshape(6, 3)
    pos.set_weights([table])
    np.testing.assert_allclose(pos([x * z, z]).numpy(), (x + table[:4]) * z)
