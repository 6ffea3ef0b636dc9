"""The registry of per-layer facts: hand-computed FLOPs/params for every layer type, agreement
with the TensorFlow profiler on frozen graphs, and the same formulas under expected alive counts."""
from __future__ import annotations

import numpy as np
import pytest

from rmcompress._keras import keras, tf
from rmcompress.models.structure import count
from rmcompress.cost.registry import PARTS, CostModel, Dim, REGISTRY, facts_for, layer_shapes
from rmcompress.errors import ModelError
from rmcompress.layers import encoder as L
from rmcompress.models.archconfig import ArchConfig
from rmcompress.models.architectures import build_reward_model
from tests.helpers import MATMUL_OPS, check_registry_matches_profiler, profile_by_layer


def _layer_cost(layer, inputs):
    """Build ``layer`` on ``inputs`` (KerasTensors) and return (flops, params, parts)."""
    model = keras.Model(inputs, layer(inputs[0] if len(inputs) == 1 else inputs))
    report = count(model)
    row = report.table[report.table["layer"] == layer.name].iloc[0]
    return int(row["flops"]), int(row["params"]), {p: int(row[f"flops_{p}"]) for p in PARTS}


def _inp(*shape, dtype="float32"):
    return keras.Input(shape=shape, dtype=dtype)


# -- hand-computed values, one per layer type --------------------------------------------------------
def test_dense_hand_computed():
    # T=5 positions, 7 -> 3, relu: 2*7*3*5 MAC-FLOPs + 3*5 bias + 3*5 relu
    f, p, parts = _layer_cost(keras.layers.Dense(3, activation="relu", name="d"), [_inp(5, 7)])
    assert (f, p) == (2 * 7 * 3 * 5 + 15 + 15, 7 * 3 + 3)
    assert parts["matmul"] == 210 and parts["bias"] == 15 and parts["activation"] == 15


def test_dense_without_bias_and_2d_input():
    f, p, _ = _layer_cost(keras.layers.Dense(4, use_bias=False, name="d"), [_inp(6)])
    assert (f, p) == (2 * 6 * 4, 24)


def test_conv1d_hand_computed():
    # T=10, 4 -> 6 channels, width 3, valid: T' = 8
    f, p, _ = _layer_cost(keras.layers.Conv1D(6, 3, activation="relu", name="c"), [_inp(10, 4)])
    assert (f, p) == (2 * 3 * 4 * 6 * 8 + 6 * 8 + 6 * 8, 3 * 4 * 6 + 6)


def test_embedding_hand_computed():
    f, p, _ = _layer_cost(keras.layers.Embedding(50, 8, name="e"), [_inp(6, dtype="int32")])
    assert (f, p) == (0, 400)


def test_layer_norm_hand_computed():
    f, p, parts = _layer_cost(keras.layers.LayerNormalization(name="n"), [_inp(5, 8)])
    assert (f, p) == (7 * 5 * 8, 16) and parts["norm"] == 280


def test_position_embedding_apply_mask_add():
    assert _layer_cost(L.PositionEmbedding(6, name="pe"), [_inp(6, 8)])[:2] == (48, 48)
    assert _layer_cost(L.ApplyMask(name="am"), [_inp(6, 8), _inp(6)])[:2] == (48, 0)
    assert _layer_cost(keras.layers.Add(name="a"), [_inp(6, 8), _inp(6, 8)])[:2] == (48, 0)


def test_masked_pooling_hand_computed():
    # mean: x*m (48) + sum over time (5*8) + mask sum (5) + max(count,1) (1) + divide (8)
    assert _layer_cost(L.MaskedMeanPooling(name="mp"), [_inp(6, 8), _inp(6)])[:2] == (48 + 40 + 5 + 1 + 8, 0)
    # max: x*m (48) + max over time (5*8)
    f, _, parts = _layer_cost(L.MaskedMaxPooling(name="xp"), [_inp(6, 8), _inp(6)])
    assert f == 88 and parts["max"] == 40


def test_own_attention_hand_computed():
    t, d, h, dh = 6, 8, 2, 4
    inner = h * dh
    f, p, parts = _layer_cost(L.MultiHeadSelfAttention(h, dh, name="att"), [_inp(t, d), _inp(t)])
    matmul = 3 * 2 * d * inner * t + 2 * t * t * inner + 2 * t * t * inner + 2 * inner * d * t
    assert parts["matmul"] == matmul == 4224
    assert parts["bias"] == 3 * inner * t + d * t
    assert parts["elementwise"] == h * t * t + 2 * h * t * t + 2 * t
    assert parts["softmax"] == 3 * h * t * t
    assert f == 4224 + 192 + 228 + 216
    assert p == 3 * (d * inner + inner) + inner * d + d


def test_activation_layers_and_zero_cost_layers():
    assert _layer_cost(keras.layers.ReLU(name="r"), [_inp(6, 8)])[0] == 48
    assert _layer_cost(keras.layers.Activation("gelu", name="g"), [_inp(6, 8)])[0] == 8 * 48
    assert _layer_cost(keras.layers.Dropout(0.5, name="dr"), [_inp(6, 8)])[:2] == (0, 0)
    assert _layer_cost(keras.layers.Concatenate(name="cat"), [_inp(8), _inp(4)])[:2] == (0, 0)
    assert _layer_cost(L.PaddingMask(name="pm"), [_inp(6, dtype="int32")])[:2] == (0, 0)
    assert _layer_cost(L.TokenRemap(40, name="tr"), [_inp(6, dtype="int32")])[:2] == (0, 0)
    assert _layer_cost(keras.layers.GlobalAveragePooling1D(name="ga"), [_inp(6, 8)])[0] == 5 * 8 + 8
    assert _layer_cost(keras.layers.GlobalMaxPooling1D(name="gm"), [_inp(6, 8)])[0] == 5 * 8


def test_einsum_dense_and_keras_attention_hand_computed():
    f, p, parts = _layer_cost(keras.layers.EinsumDense("abc,cd->abd", output_shape=(None, 5), bias_axes="d",
                                                       name="ed"), [_inp(6, 8)])
    assert parts["matmul"] == 2 * 6 * 8 * 5 and parts["bias"] == 30 and p == 45
    t, d, h, k = 6, 8, 2, 4
    x = _inp(t, d)
    mha = keras.layers.MultiHeadAttention(h, k, name="mha")
    model = keras.Model(x, mha(x, x))
    row = count(model).table.set_index("layer").loc["mha"]
    assert row["flops_matmul"] == 2 * t * d * h * 3 * k + 2 * 2 * t * t * h * k + 2 * t * h * k * d
    assert row["flops_bias"] == t * h * 3 * k + t * d and row["flops_softmax"] == 3 * h * t * t
    assert row["params"] == 3 * (d * h * k + h * k) + h * k * d + d


def test_unknown_layer_is_an_error_naming_it():
    x = _inp(6, 8)
    model = keras.Model(x, keras.layers.BatchNormalization(name="mystery_bn")(x))
    with pytest.raises(ModelError, match="mystery_bn.*BatchNormalization"):
        count(model)


def test_registry_params_match_the_weights_of_every_architecture():
    for arch in ("transformer", "cnn", "bow"):
        model = build_reward_model(ArchConfig(arch=arch, vocab_size=120, seq_len=16, width=16, depth=2,
                                              heads=2, head_dim=8, ffn=32, filters=8, hidden=16))
        assert count(model).params == model.count_params(), arch


def test_reference_transformer_total():
    """The default transformer (2 blocks, width 64, 4 heads x 16, FFN 128, T=64), summed by hand."""
    t, d, h, dh, f, v = 64, 64, 4, 16, 128, 8000
    inner = h * dh
    attn = (6 * d * inner * t + 4 * t * t * inner + 2 * inner * d * t) + (3 * inner * t + d * t) \
        + (3 * h * t * t + 2 * t) + 3 * h * t * t
    ffn = (2 * d * f * t + f * t + f * t) + (2 * f * d * t + d * t)
    block = attn + ffn + 2 * 7 * t * d + 2 * t * d  # two norms, two residual adds
    total = t * d + 2 * block + 7 * t * d + (2 * t * d + t) + (2 * d + 1)
    model = build_reward_model(ArchConfig(vocab_size=v, seq_len=t))
    assert count(model).flops == total


def test_expected_counts_use_the_same_formulas():
    """Feeding float tensors equal to the integer alive counts gives the integer result."""
    model = build_reward_model(ArchConfig(arch="cnn", vocab_size=50, seq_len=12, width=8, filters=[4, 6, 5]))
    dims = {"conv3": {"out": Dim(("c3",))}, "pool3": {"width": Dim(("c3",))},
            "reward": {"in": Dim(("c3", 6, 5))}}
    cm = CostModel(model, dims)
    for n in (4, 2, 0):
        exact = cm.evaluate({"c3": n})
        soft = cm.evaluate({"c3": tf.constant(float(n))})
        assert exact.flops == pytest.approx(float(soft.flops.numpy()))
        assert exact.params == pytest.approx(float(soft.params.numpy()))
    assert cm.evaluate({"c3": 4}).flops == count(model).flops


def test_every_registered_layer_class_has_facts():
    for cls, facts in REGISTRY.items():
        assert callable(facts.flops) and callable(facts.params), cls


# -- agreement with the TensorFlow profiler -----------------------------------------------------------

@pytest.mark.parametrize("arch", ["transformer", "cnn", "bow"])
def test_registry_agrees_with_tf_profiler(arch):
    model = build_reward_model(ArchConfig(arch=arch, vocab_size=100, seq_len=16, width=16, depth=1, heads=2,
                                          head_dim=8, ffn=24, filters=[4, 6, 5], hidden=12, dropout=0.0))
    check_registry_matches_profiler(model)


def test_profiler_skips_einsum_registry_does_not():
    """Keras' MultiHeadAttention/EinsumDense run on Einsum ops that the profiler counts as 0: the
    profiler misses their matmul FLOPs entirely; everything else agrees."""
    x = keras.Input(shape=(16,), dtype="float32")
    h = keras.layers.Reshape((4, 4))(x)
    y = keras.layers.MultiHeadAttention(2, 4, name="mha")(h, h)
    y = keras.layers.EinsumDense("abc,cd->abd", output_shape=(None, 3), bias_axes="d", name="ed")(y)
    model = keras.Model(x, y)
    prof = profile_by_layer(model)
    table = count(model).table.set_index("layer")
    for name in ("mha", "ed"):
        ops = prof.get(name, {})
        assert "Einsum" not in ops  # the profiler reports nothing for Einsum
        assert sum(v for k, v in ops.items() if k in MATMUL_OPS) == 0
        assert table.loc[name, "flops_matmul"] > 0
        other = sum(v for k, v in ops.items() if k not in MATMUL_OPS and k != "Softmax")
        assert other == table.loc[name, "flops_bias"] + table.loc[name, "flops_elementwise"], (name, ops)



def test_shapes_helper_and_facts_lookup():
    layer = keras.layers.Dense(3)
    layer(keras.Input((5, 7)))
    assert layer_shapes(layer).positions == 5
    assert facts_for(layer) is REGISTRY[keras.layers.Dense]


@pytest.mark.parametrize("arch", ["transformer", "cnn", "bow"])
def test_compiled_polynomial_equals_per_layer_evaluation(arch):
    """The training graph's compiled E[FLOPs]/E[params] equals the per-layer registry evaluation
    at arbitrary (fractional) alive counts, and the exact count at integer ones."""
    from rmcompress.cost.registry import CompiledCost
    from rmcompress.models.structure import cost_model
    from rmcompress.models.groups import structure_for

    cfg = ArchConfig(arch=arch, vocab_size=50, seq_len=12, width=16, depth=2, heads=2, head_dim=8, ffn=12,
                     filters=[4, 5, 3], hidden=10)
    structure = structure_for(cfg)
    model = build_reward_model(cfg, gated=True, gate_options={"gate_vocab": True})
    cm = cost_model(model, structure)
    compiled = CompiledCost(cm, list(structure.groups))
    rng = np.random.RandomState(0)
    for _ in range(3):
        alive = {g: tf.constant(float(rng.uniform(0, 1.2) * n)) for g, n in structure.groups.items()}
        ref = cm.evaluate(alive)
        flops, params = compiled(alive)
        assert float(flops) == pytest.approx(float(ref.flops), rel=1e-5)
        assert float(params) == pytest.approx(float(ref.params), rel=1e-5)
    full = structure.full_alive()
    flops, params = compiled({g: tf.constant(float(n)) for g, n in full.items()})
    assert round(float(flops)) == count(build_reward_model(cfg)).flops
