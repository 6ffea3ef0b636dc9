"""The registry of per-layer facts: hand-computed FLOPs/params for every layer type, agreement
with the TensorFlow profiler on frozen graphs, and the same formulas under expected alive counts."""
from __future__ import annotations

import numpy as np
import pytest

from rmcompress._keras import keras, tf
from rmcompress.models.structure import count
from rmcompress.cost.registry import PARTS, CostModel, Dim, REGISTRY, facts_for, layer_shapes, tfop_kind
from rmcompress.errors import ModelError
from rmcompress.layers import encoder as L
from rmcompress.models.archconfig import ArchConfig
from rmcompress.models.architectures import build_reward_model
from rmcompress.structured.gating import gated_copy
from tests.helpers import MATMUL_OPS, check_registry_matches_profiler, profile_by_layer


def _layer_cost(layer, inputs):
    """Build ``layer`` on ``inputs`` (KerasTensors) and return (flops, params, parts)."""
    model = keras.Model(inputs, layer(inputs[0] if len(inputs) == 1 else inputs))
    report = count(model)
    row = report.table[report.table["layer"] == layer.name].iloc[0]
    return int(row["flops"]), int(row["params"]), {p: int(row[f"flops_{p}"]) for p in PARTS}


def _inp(*shape, dtype="float32"):
    return keras.Input(shape=shape, dtype=dtype)


def _op_cost(fn, *inputs):
    """Build ``fn(*inputs)`` (TensorFlow ops on KerasTensors) and return (flops, parts, kind) of the
    last layer, the op's TFOpLambda."""
    model = keras.Model(list(inputs), fn(*inputs))
    layer = model.layers[-1]
    row = count(model).table.set_index("layer").loc[layer.name]
    return int(row["flops"]), {p: int(row[f"flops_{p}"]) for p in PARTS if row[f"flops_{p}"]}, tfop_kind(layer)


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


class MysteryLayer(keras.layers.Layer):
    def call(self, x):
        return x * 2.0


def test_unknown_layer_is_an_error_naming_it():
    x = _inp(6, 8)
    model = keras.Model(x, MysteryLayer(name="mystery")(x))
    with pytest.raises(ModelError, match="mystery.*MysteryLayer"):
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


def test_masked_keras_attention_counts_the_mask_as_the_profiler_does():
    """A Keras mask reaching MultiHeadAttention adds ``(1 - mask) * -big`` to the scores: the
    profiler's non-Einsum arithmetic equals the registry's bias + elementwise parts."""
    t, h, k = 16, 4, 4
    ids = keras.Input((t,), dtype="int32")
    x = keras.layers.Embedding(30, 16, mask_zero=True)(ids)
    y = keras.layers.MultiHeadAttention(h, k, name="mha")(x, x)
    model = keras.Model(ids, y)
    ops = profile_by_layer(model)["mha"]
    row = count(model).table.set_index("layer").loc["mha"]
    assert row["flops_elementwise"] == t * h * k + 2 * t * t + h * t * t
    other = sum(v for name, v in ops.items() if name not in MATMUL_OPS and name != "Softmax")
    assert other == row["flops_bias"] + row["flops_elementwise"], ops
    unmasked = keras.Model(ids, keras.layers.MultiHeadAttention(h, k, name="mha")(
        keras.layers.Embedding(30, 16)(ids), keras.layers.Embedding(30, 16)(ids)))
    assert count(unmasked).table.set_index("layer").loc["mha", "flops_elementwise"] == t * h * k


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
    from rmcompress.models.structure import cost_model, structure_of

    cfg = ArchConfig(arch=arch, vocab_size=50, seq_len=12, width=16, depth=2, heads=2, head_dim=8, ffn=12,
                     filters=[4, 5, 3], hidden=10)
    model = gated_copy(build_reward_model(cfg), gate_vocab=True)
    structure = structure_of(model)
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


# -- layers of user-written tf_keras models ------------------------------------------------------------
def test_batch_norm_hand_computed():
    # y = x * a + b per element (a, b folded): 2 x 5 x 8; params gamma, beta, moving mean/variance
    f, p, parts = _layer_cost(keras.layers.BatchNormalization(name="bn"), [_inp(5, 8)])
    assert (f, p) == (80, 32) and parts["norm"] == 80
    assert _layer_cost(keras.layers.BatchNormalization(center=False, name="bn"), [_inp(5, 8)])[:2] == (80, 24)
    assert _layer_cost(keras.layers.BatchNormalization(scale=False, center=False, name="bn"),
                       [_inp(5, 8)])[:2] == (80, 16)
    assert _layer_cost(keras.layers.BatchNormalization(name="bn"), [_inp(8)])[:2] == (16, 32)


def test_batch_norm_over_another_axis_is_an_error_naming_it():
    x = _inp(5, 8)
    model = keras.Model(x, keras.layers.BatchNormalization(axis=1, name="time_bn")(x))
    with pytest.raises(ModelError, match=r"'time_bn': BatchNormalization over axis \[1\].*only the last axis"):
        count(model)


def test_merge_layers_hand_computed():
    a, b, c = _inp(6, 8), _inp(6, 8), _inp(6, 8)
    assert _layer_cost(keras.layers.Subtract(name="s"), [a, b])[:2] == (48, 0)
    assert _layer_cost(keras.layers.Multiply(name="m"), [a, b, c])[:2] == (2 * 48, 0)
    assert _layer_cost(keras.layers.Maximum(name="mx"), [a, b])[:2] == (48, 0)
    assert _layer_cost(keras.layers.Minimum(name="mn"), [a, b, c])[:2] == (2 * 48, 0)
    # Average: n - 1 adds + 1 divide per element
    f, _, parts = _layer_cost(keras.layers.Average(name="av"), [a, b, c])
    assert f == parts["elementwise"] == 3 * 48
    # broadcast inputs: FLOPs per output element
    assert _layer_cost(keras.layers.Multiply(name="bm"), [_inp(1, 8), _inp(6, 8)])[0] == 48


def test_tf_op_lambda_hand_computed():
    x, y = _inp(6, 8), _inp(6, 8)
    assert _op_cost(lambda a, b: a + b, x, y) == (48, {"elementwise": 48}, "elementwise")
    assert _op_cost(lambda a, b: a * b, x, y) == (48, {"elementwise": 48}, "elementwise")
    assert _op_cost(lambda a, b: a - b, x, y) == (48, {"elementwise": 48}, "elementwise")
    assert _op_cost(lambda a: a / 2.0, x) == (48, {"elementwise": 48}, "elementwise")
    assert _op_cost(lambda a: 2.0 * a, x) == (48, {"elementwise": 48}, "elementwise")
    assert _op_cost(lambda a: a + tf.ones((8,)), x)[0] == 48  # broadcast: per output element
    assert _op_cost(lambda a: tf.nn.relu(a), x) == (48, {"activation": 48}, "activation")
    assert _op_cost(lambda a: tf.math.tanh(a), x) == (48, {"activation": 48}, "activation")
    assert _op_cost(lambda a: tf.math.sigmoid(a), x) == (3 * 48, {"activation": 3 * 48}, "activation")
    assert _op_cost(lambda a: tf.nn.gelu(a), x) == (8 * 48, {"activation": 8 * 48}, "activation")
    assert _op_cost(lambda a: tf.nn.gelu(a, approximate=True), x)[0] == 9 * 48
    # reductions over time: (T - 1) per output, + 1 divide per output for the mean
    assert _op_cost(lambda a: tf.reduce_mean(a, axis=1), x) == (5 * 8 + 8, {"elementwise": 48}, "reduce_time")
    assert _op_cost(lambda a: tf.reduce_max(a, axis=1), x) == (5 * 8, {"max": 40}, "reduce_time")
    assert _op_cost(lambda a: tf.reduce_sum(a, 1, True), x) == (40, {"elementwise": 40}, "reduce_time")
    assert _op_cost(lambda a: tf.reduce_min(a, axis=[-2]), x) == (40, {"max": 40}, "reduce_time")
    # moving data costs nothing
    assert _op_cost(lambda a: tf.squeeze(a[:, :, :1], axis=-1), x) == (0, {}, "layout")
    assert _op_cost(lambda a: a[:, 0], x) == (0, {}, "layout")


def test_unsupported_tf_op_is_a_one_line_error_naming_the_layer_and_op():
    x = _inp(6, 8)
    for fn, match in ((lambda a: tf.math.log(a), r"tf\.math\.log"),
                      (lambda a: tf.reduce_mean(a, axis=-1), r"tf\.math\.reduce_mean.*time axis")):
        model = keras.Model(x, fn(x))
        assert tfop_kind(model.layers[-1]) is None
        with pytest.raises(ModelError, match=f"layer '{model.layers[-1].name}' runs the TensorFlow op {match}") as e:
            count(model)
        assert "\n" not in str(e.value)


def test_lambda_layer_is_an_error_naming_it():
    x = _inp(6, 8)
    model = keras.Model(x, keras.layers.Lambda(lambda a: a * 2.0, name="x")(x))
    with pytest.raises(ModelError) as e:
        count(model)
    assert str(e.value) == ("layer 'x' is a Lambda layer; the complexity registry cannot count arbitrary Python: "
                            "write it as a standard layer or register a class (rmcompress.cost.registry.register)")


def test_recurrent_layers_hand_computed():
    t, i, u = 6, 4, 3
    # LSTM per step: matmul 2i4u + 2u4u, bias 4u, elementwise 8u, 3 sigmoid gates (3 each) + 2 tanh
    for seq in (False, True):
        f, p, parts = _layer_cost(keras.layers.LSTM(u, return_sequences=seq, name="l"), [_inp(t, i)])
        assert parts["matmul"] == t * (2 * i * 4 * u + 2 * u * 4 * u) == 1008
        assert (parts["bias"], parts["elementwise"], parts["activation"]) == (t * 4 * u, t * 8 * u, t * (9 * u + 2 * u))
        assert (f, p) == (1008 + 72 + 144 + 198, i * 4 * u + u * 4 * u + 4 * u)
    # GRU: matmul 2i3u + 2u3u, bias 6u (reset_after: input + recurrent) or 3u, elementwise 8u, 2 sigmoid + tanh
    f, p, parts = _layer_cost(keras.layers.GRU(u, name="g"), [_inp(t, i)])
    assert parts["matmul"] == t * (2 * i * 3 * u + 2 * u * 3 * u) == 756
    assert (parts["bias"], parts["elementwise"], parts["activation"]) == (t * 6 * u, t * 8 * u, t * 7 * u)
    assert (f, p) == (756 + 108 + 144 + 126, i * 3 * u + u * 3 * u + 6 * u)
    f, p, parts = _layer_cost(keras.layers.GRU(u, reset_after=False, name="g"), [_inp(t, i)])
    assert parts["bias"] == t * 3 * u and p == i * 3 * u + u * 3 * u + 3 * u and parts["matmul"] == 756
    # SimpleRNN: matmul 2iu + 2uu, bias u, the add u, tanh u
    f, p, parts = _layer_cost(keras.layers.SimpleRNN(u, name="r"), [_inp(t, i)])
    assert (f, p) == (t * (2 * i * u + 2 * u * u + 3 * u), i * u + u * u + u)


def test_bidirectional_hand_computed():
    t, i, u = 6, 4, 3
    lstm = t * (2 * i * 4 * u + 2 * u * 4 * u + 4 * u + 8 * u + 11 * u)
    params = 2 * (i * 4 * u + u * 4 * u + 4 * u)
    for mode, seq, merge in (("concat", True, 0), ("sum", True, t * u), ("mul", False, u), ("ave", True, 2 * t * u)):
        layer = keras.layers.Bidirectional(keras.layers.LSTM(u, return_sequences=seq), merge_mode=mode, name="bi")
        f, p, parts = _layer_cost(layer, [_inp(t, i)])
        assert (f, p) == (2 * lstm + merge, params), mode
        assert parts["elementwise"] == 2 * t * 8 * u + merge, mode


def test_separable_and_depthwise_conv1d_hand_computed():
    # T=10, 4 channels, width 3, depth multiplier 2, 6 filters, valid: T' = 8
    f, p, parts = _layer_cost(keras.layers.SeparableConv1D(6, 3, depth_multiplier=2, activation="relu", name="s"),
                              [_inp(10, 4)])
    assert parts["matmul"] == 2 * 3 * 4 * 2 * 8 + 2 * 4 * 2 * 6 * 8
    assert (f, p) == (1152 + 48 + 48, 3 * 4 * 2 + 4 * 2 * 6 + 6)
    f, p, parts = _layer_cost(keras.layers.DepthwiseConv1D(3, name="dw"), [_inp(10, 4)])
    assert (f, p) == (2 * 3 * 4 * 8 + 4 * 8, 3 * 4 + 4) and parts["matmul"] == 192
    f, p, _ = _layer_cost(keras.layers.DepthwiseConv1D(3, depth_multiplier=2, padding="same", name="dw"),
                          [_inp(10, 4)])
    assert (f, p) == (2 * 3 * 8 * 10 + 8 * 10, 3 * 8 + 8)


def test_pooling_hand_computed():
    # pool 2 over T=6: 3 outputs x 8 channels; average: 1 add + 1 divide, max: 1 max per output
    f, _, parts = _layer_cost(keras.layers.AveragePooling1D(2, name="ap"), [_inp(6, 8)])
    assert f == parts["elementwise"] == 2 * 3 * 8
    f, _, parts = _layer_cost(keras.layers.MaxPooling1D(3, strides=1, name="mp"), [_inp(6, 8)])
    assert f == parts["max"] == 2 * 4 * 8
    assert _layer_cost(keras.layers.GlobalAveragePooling1D(keepdims=True, name="ga"), [_inp(6, 8)])[0] == 48
    # with an input mask: x*m (48), sum over time (40), mask sum (5), divide (8)
    ids = _inp(6, dtype="int32")
    x = keras.layers.Embedding(20, 8, mask_zero=True)(ids)
    model = keras.Model(ids, keras.layers.GlobalAveragePooling1D(name="ga")(x))
    assert count(model).table.set_index("layer").loc["ga", "flops"] == 48 + 40 + 5 + 8
    for layer in (keras.layers.GlobalAveragePooling1D(data_format="channels_first", name="cf"),
                  keras.layers.MaxPooling1D(2, data_format="channels_first", name="cf")):
        x = _inp(8, 6)
        with pytest.raises(ModelError, match="'cf': data_format='channels_first'"):
            count(keras.Model(x, layer(x)))


def test_activation_conventions_hand_computed():
    x = [_inp(6, 8)]
    f, _, parts = _layer_cost(keras.layers.Softmax(name="sm"), x)
    assert f == parts["softmax"] == 3 * 48
    assert _layer_cost(keras.layers.Activation("softmax", name="a"), x)[2]["softmax"] == 3 * 48
    assert _layer_cost(keras.layers.Dense(4, activation="softmax", name="d"), x)[2]["softmax"] == 3 * 6 * 4
    assert _layer_cost(keras.layers.LeakyReLU(name="lr"), x)[2]["activation"] == 2 * 48
    assert _layer_cost(keras.layers.ELU(name="e"), x)[0] == 3 * 48
    f, _, parts = _layer_cost(keras.layers.ELU(alpha=0.5, name="e"), x)
    assert (f, parts["elementwise"]) == (4 * 48, 48)
    for name, per in (("elu", 3), ("selu", 4), ("softplus", 3), ("softsign", 3), ("exponential", 1)):
        assert _layer_cost(keras.layers.Activation(name, name="a"), x)[0] == per * 48, name
    with pytest.raises(ModelError, match="'hs': activation 'hard_sigmoid' has no FLOPs convention"):
        _layer_cost(keras.layers.Activation("hard_sigmoid", name="hs"), x)


def test_data_moving_and_inference_identity_layers_cost_nothing():
    x = [_inp(6, 8)]
    for layer in (keras.layers.SpatialDropout1D(0.2), keras.layers.GaussianNoise(0.1),
                  keras.layers.GaussianDropout(0.1), keras.layers.ActivityRegularization(0.01),
                  keras.layers.Permute((2, 1)), keras.layers.Identity(), keras.layers.ZeroPadding1D(1),
                  keras.layers.Cropping1D(1), keras.layers.UpSampling1D(2)):
        assert _layer_cost(layer, x)[:2] == (0, 0), type(layer).__name__
    assert _layer_cost(keras.layers.RepeatVector(3, name="rv"), [_inp(8)])[:2] == (0, 0)
    # Masking multiplies by the mask: 1 per element (the comparisons are free)
    assert _layer_cost(keras.layers.Masking(name="mk"), x)[:2] == (48, 0)


def _channel_model(units: int, *, depthwise: bool = True):
    """Dense(units) feeding BatchNorm, relu, a sigmoid gate by Multiply, ``x + g``, DepthwiseConv1D,
    pooling over time, Masking, a time reduction and GAP: every channel-wise layer has role width."""
    ids = keras.Input((8,), dtype="int32")
    x = keras.layers.Embedding(20, 6)(ids)
    x = keras.layers.Dense(units, name="proj")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = tf.nn.relu(x)
    g = keras.layers.Activation("sigmoid", name="sig")(x)
    x = keras.layers.Multiply(name="mul")([x, g])
    x = x + g
    if depthwise:
        x = keras.layers.DepthwiseConv1D(3, padding="same", name="dw")(x)
    x = keras.layers.AveragePooling1D(2, name="ap")(x)
    x = keras.layers.Masking(name="mk")(keras.layers.MaxPooling1D(2, name="mp")(x))
    x = keras.layers.Subtract(name="sub")([tf.reduce_mean(x, axis=1), keras.layers.GlobalMaxPooling1D(name="gm")(x)])
    x = keras.layers.LeakyReLU(name="lr")(x)
    return keras.Model(ids, keras.layers.Dense(1, name="reward")(x))


def test_width_role_of_channel_wise_layers_scales_flops_and_params():
    """The big model with 3 of its 8 channels alive costs exactly what the same model built with 3
    channels costs, under integer and under float alive counts."""
    big = _channel_model(8)
    assert facts_for(big.get_layer("bn")).slices == {w: (("width", 0),) for w in
                                                      ("gamma", "beta", "moving_mean", "moving_variance")}
    dims = {"proj": {"out": Dim(("c",))}, "reward": {"in": Dim(("c",))}}
    for layer in big.layers:
        kind = tfop_kind(layer) if type(layer).__name__ == "TFOpLambda" else None
        if not isinstance(layer, keras.layers.InputLayer) and set(facts_for(layer).roles(layer)) == {"width"}:
            dims[layer.name] = {"width": Dim(("c",))}
            assert kind in (None, "elementwise", "activation", "reduce_time")
    assert {"bn", "mul", "dw", "ap", "mp", "mk", "sub", "gm", "lr", "sig"} <= set(dims)
    assert sum(type(big.get_layer(n)).__name__ == "TFOpLambda" for n in dims) == 3  # relu, add, mean
    cm = CostModel(big, dims)
    for n in (8, 3, 1):
        small = count(_channel_model(n))
        exact = cm.evaluate({"c": n})
        assert (exact.flops, exact.params) == (small.flops, small.params), n
        soft = cm.evaluate({"c": tf.constant(float(n))})
        assert float(soft.flops.numpy()) == pytest.approx(small.flops)
        assert float(soft.params.numpy()) == pytest.approx(small.params)


def test_depthwise_width_role_only_with_depth_multiplier_one():
    x = _inp(10, 4)
    one = keras.layers.DepthwiseConv1D(3, name="one")
    two = keras.layers.DepthwiseConv1D(3, depth_multiplier=2, name="two")
    keras.Model(x, [one(x), two(x)])
    assert facts_for(one).roles(one) == {"width": 4} and facts_for(two).roles(two) == {}


def _user_model(unroll: bool):
    """BatchNorm, Multiply, ``x + y``/``tf.nn.relu``, SeparableConv1D and DepthwiseConv1D, LSTM, GRU
    (both reset modes), SimpleRNN, Bidirectional, pooling, merges, reductions, masking, softmax."""
    K = keras.layers
    ids = keras.Input((8,), dtype="int32")
    x = K.Embedding(30, 6, name="emb")(ids)
    x = K.BatchNormalization(name="bn")(K.Dense(8, name="proj")(x))
    x = tf.nn.relu(x)
    g = K.Dense(8, activation="sigmoid", name="gate")(x)
    x = K.Multiply(name="mul")([x, g]) + g
    x = K.SeparableConv1D(6, 3, padding="same", depth_multiplier=2, name="sep")(x)
    x = K.DepthwiseConv1D(3, padding="same", name="dw")(x)
    x = K.ELU(alpha=0.5, name="elu")(K.BatchNormalization(scale=False, name="bn2")(x))
    rnn = [K.LSTM(5, return_sequences=True, unroll=unroll, name="lstm")(x),
           K.GRU(4, return_sequences=True, unroll=unroll, name="gru")(x),
           K.GRU(4, return_sequences=True, unroll=unroll, reset_after=False, name="gru_v1")(x),
           K.SimpleRNN(3, return_sequences=True, unroll=unroll, name="srnn")(x),
           K.Bidirectional(K.LSTM(3, return_sequences=True, unroll=unroll), merge_mode="sum", name="bi")(x),
           K.Bidirectional(K.GRU(2, return_sequences=True, unroll=unroll), merge_mode="ave", name="bi_gru")(x)]
    h = K.Concatenate(name="cat")(rnn)
    h = K.MaxPooling1D(2, name="mp")(K.AveragePooling1D(2, name="ap")(h))
    h = K.Softmax(name="sm")(K.LeakyReLU(name="lr")(h))
    mean, top = tf.reduce_mean(h, axis=1), tf.reduce_max(h, axis=1)
    h = K.Subtract(name="sub")([mean, top])
    h = K.Maximum(name="max")([K.Average(name="avg")([h, mean]), top])
    h = K.Masking(name="mask")(K.Minimum(name="min")([h, mean]))
    h = (h / 2.0) - mean
    last = K.GRU(3, unroll=unroll, name="gru_last")(x)
    return keras.Model(ids, K.Dense(1, name="reward")(K.Concatenate(name="cat2")([h, last])))


def test_user_layers_agree_with_tf_profiler():
    """Unrolled recurrent layers put every step's ops in the graph: the profiler sees them all."""
    model = _user_model(unroll=True)
    check_registry_matches_profiler(model)
    assert count(model).params == model.count_params()
    prof = profile_by_layer(model)
    assert prof["lstm"]["MatMul"] == 8 * (2 * 6 * 4 * 5 + 2 * 5 * 4 * 5)  # the profiler saw every step
    assert prof["sep"]["DepthwiseConv2dNative"] > 0 and prof["bn"]["Rsqrt"] > 0


def test_recurrent_layers_in_a_while_loop_are_counted_by_hand():
    """Without ``unroll`` the steps run in a while loop the profiler does not enter (it sees nothing
    of the fused LSTM/GRU paths and at most one shape-probing step of the generic one, and no shape
    after them); the registry counts the same arithmetic either way, and the hand counts above pin it."""
    rolled, unrolled = _user_model(unroll=False), _user_model(unroll=True)
    prof = profile_by_layer(rolled)
    for name in ("lstm", "gru", "bi", "bi_gru", "gru_last"):
        assert name not in prof
    assert 0 < prof["srnn"]["MatMul"] <= 2 * 6 * 3 + 2 * 3 * 3  # at most one step of eight
    with pytest.raises(AssertionError, match="unroll it"):
        check_registry_matches_profiler(rolled)
    a, b = count(rolled).table.set_index("layer"), count(unrolled).table.set_index("layer")
    assert a.loc["lstm", "flops"] == b.loc["lstm", "flops"] > 0
    assert count(rolled).flops == count(unrolled).flops


def test_masked_global_average_pooling_agrees_with_tf_profiler():
    ids = keras.Input((8,), dtype="int32")
    x = keras.layers.Embedding(30, 6, mask_zero=True)(ids)
    x = keras.layers.GlobalAveragePooling1D(name="gap")(keras.layers.Dense(5, name="proj")(x))
    check_registry_matches_profiler(keras.Model(ids, keras.layers.Dense(1, name="reward")(x)))
