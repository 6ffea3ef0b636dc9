"""``from_keras``: Keras 3 scorers rebuilt as tf_keras with equal outputs, or refused by name."""
import numpy as np
import pytest

from rmcompress._keras import keras, keras3
from rmcompress.errors import ModelError
from rmcompress.models import convert
from rmcompress.models.convert import check_ids, from_keras
from rmcompress.models.modeldir import load_keras_model

k3 = keras3()
SEQ, VOCAB = 12, 40


def assert_same(source, converted, seq_len=SEQ, vocab=VOCAB):
    assert isinstance(converted, keras.Model)
    ids = check_ids(vocab, seq_len, 32, seed=7)
    a = np.asarray(source(ids, training=False)).reshape(-1)
    b = np.asarray(converted(ids, training=False)).reshape(-1)
    assert converted.output_shape == (None, 1)
    assert np.max(np.abs(a - b)) <= 1e-5 * max(1.0, np.max(np.abs(a)))
    assert np.std(a) > 0  # the rows differ: padding and ids reach the reward


def cnn_sequential():
    return k3.Sequential([k3.Input((SEQ,), dtype="int32"), k3.layers.Embedding(VOCAB, 8),
                          k3.layers.Conv1D(6, 3, activation="relu"), k3.layers.GlobalMaxPooling1D(),
                          k3.layers.Dense(5, activation="gelu"), k3.layers.Dense(1)], name="cnn")


def transformer_functional():
    ids = k3.Input((SEQ,), dtype="int32", name="ids")
    x = k3.layers.Embedding(VOCAB, 16, mask_zero=True)(ids)
    a = k3.layers.MultiHeadAttention(2, 8, name="attn")(x, x)
    y = k3.layers.LayerNormalization()(x + a)
    f = k3.layers.Dense(8, activation="relu")(y)
    f = k3.layers.Dropout(0.1)(k3.layers.Dense(16)(f))
    y = k3.layers.LayerNormalization()(y + f)
    pooled = k3.layers.GlobalAveragePooling1D()(k3.ops.relu(y))
    return k3.Model(ids, k3.layers.Dense(1)(pooled), name="block")


def test_sequential_cnn_converts_exactly():
    model = cnn_sequential()
    converted = from_keras(model)
    assert [type(layer).__name__ for layer in converted.layers] == [
        "InputLayer", "Embedding", "Conv1D", "GlobalMaxPooling1D", "Dense", "Dense"]
    assert converted.input.dtype == "int32"
    assert_same(model, converted)


def test_functional_transformer_block_converts_exactly_and_survives_save(tmp_path):
    model = transformer_functional()
    converted = from_keras(model)
    names = [type(layer).__name__ for layer in converted.layers]
    ops = sorted(layer.symbol for layer in converted.layers if type(layer).__name__ == "TFOpLambda")
    assert ops == ["__operators__.add", "__operators__.add", "nn.relu"] or ops == ["math.add", "math.add", "nn.relu"]
    assert "MultiHeadAttention" in names
    assert_same(model, converted)
    converted.save(tmp_path / "model.keras", save_format="keras")
    assert_same(model, load_keras_model(tmp_path / "model.keras"))  # safe mode, masks as converted


def test_ops_drop_the_mask_as_in_keras3():
    """``x + a`` drops the padding mask in Keras 3: the next attention layer attends to padding too,
    and the converted model must do the same (a merge layer would pass the mask on)."""
    ids = k3.Input((SEQ,), dtype="int32")
    x = k3.layers.Embedding(VOCAB, 8, mask_zero=True)(ids)
    for _ in range(2):
        x = k3.layers.LayerNormalization()(x + k3.layers.MultiHeadAttention(2, 4)(x, x))
    model = k3.Model(ids, k3.layers.Dense(1)(k3.layers.GlobalAveragePooling1D()(x)))
    assert_same(model, from_keras(model))


def test_bidirectional_lstm_gru_batchnorm_convert_exactly():
    ids = k3.Input((SEQ,), dtype="int32")
    x = k3.layers.Embedding(VOCAB, 8, mask_zero=True)(ids)
    x = k3.layers.Bidirectional(k3.layers.LSTM(4, return_sequences=True))(x)
    x = k3.layers.GRU(3)(x)
    bn = k3.layers.BatchNormalization()
    x = bn(x)
    model = k3.Model(ids, k3.layers.Dense(1)(x))
    rng = np.random.RandomState(0)
    bn.set_weights([w + rng.uniform(0.5, 1.0, w.shape).astype("float32") for w in bn.get_weights()])
    converted = from_keras(model)
    assert {"Bidirectional", "GRU", "BatchNormalization"} <= {type(layer).__name__ for layer in converted.layers}
    assert_same(model, converted)


def test_shared_layer_nested_model_and_batch_output():
    ids = k3.Input((SEQ,), dtype="int32")
    emb = k3.layers.Embedding(VOCAB, 8)(ids)
    dense = k3.layers.Dense(8, name="shared")
    inner = k3.Sequential([k3.Input((SEQ, 8)), k3.layers.Conv1D(8, 3, padding="same"),
                           k3.layers.GlobalAveragePooling1D()], name="inner")
    h = k3.layers.Concatenate()([dense(inner(emb)), dense(k3.layers.GlobalMaxPooling1D()(emb))])
    out = k3.layers.Reshape(())(k3.layers.Dense(1)(h))  # a [batch] reward
    model = k3.Model(ids, out)
    converted = from_keras(model)
    shared = converted.get_layer("shared")
    assert len(shared._inbound_nodes) == 2  # one layer, called twice: weights stay shared
    assert_same(model, converted)


def test_float_input_read_by_embedding_becomes_int32():
    model = k3.Sequential([k3.Input((SEQ,)), k3.layers.Embedding(VOCAB, 4), k3.layers.Flatten(),
                           k3.layers.Dense(1)])
    converted = from_keras(model)
    assert converted.input.dtype == "int32"
    assert_same(model, converted)


def test_free_length_takes_seq_len():
    ids = k3.Input((None,), dtype="int32")
    x = k3.layers.GlobalAveragePooling1D()(k3.layers.Embedding(VOCAB, 4)(ids))
    model = k3.Model(ids, k3.layers.Dense(1)(x))
    converted = from_keras(model, seq_len=10)
    assert converted.input_shape == (None, 10)
    assert_same(model, converted, seq_len=10)
    with pytest.raises(ModelError, match="takes 12 token ids per text, not 10"):
        from_keras(cnn_sequential(), seq_len=10)


def test_tf_keras_model_is_returned_as_is():
    ids = keras.Input((SEQ,), dtype="int32")
    x = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(VOCAB, 4)(ids))
    model = keras.Model(ids, keras.layers.Dense(1)(x))
    assert from_keras(model) is model


class Scale(k3.layers.Layer):
    def call(self, x):
        return x * 2.0


def _with(layer):
    ids = k3.Input((SEQ,), dtype="int32")
    x = layer(k3.layers.Embedding(VOCAB, 4)(ids))
    return k3.Model(ids, k3.layers.Dense(1)(k3.layers.GlobalAveragePooling1D()(x)))


@pytest.mark.parametrize("layer, words", [
    (k3.layers.Lambda(lambda t: t * 2, name="doubler"), ["'doubler' (Lambda)", "arbitrary Python code"]),
    (Scale(name="scale"), ["'scale' (Scale)", "not supported"]),
    (k3.layers.UnitNormalization(name="unorm"), ["'unorm' (UnitNormalization)"]),
])
def test_unsupported_layer_is_named_in_one_line(layer, words):
    with pytest.raises(ModelError) as e:
        from_keras(_with(layer))
    assert "\n" not in str(e.value)
    for w in words:
        assert w in str(e.value)


def test_ops_with_constants_and_tanh_gelu_are_refused():
    ids = k3.Input((SEQ,), dtype="int32")
    x = k3.layers.GlobalAveragePooling1D()(k3.layers.Embedding(VOCAB, 4)(ids))
    with pytest.raises(ModelError, match="an operand is a constant"):
        from_keras(k3.Model(ids, k3.layers.Dense(1)(x * 2.0)))
    with pytest.raises(ModelError, match="tanh-approximate gelu"):
        from_keras(k3.Model(ids, k3.layers.Dense(1)(k3.ops.gelu(x, approximate=True))))


def test_subclassed_model_is_told_to_go_functional():
    class Scorer(k3.Model):
        def __init__(self):
            super().__init__()
            self.emb = k3.layers.Embedding(VOCAB, 4)
            self.out = k3.layers.Dense(1)

        def call(self, ids):
            return self.out(k3.ops.mean(self.emb(ids), axis=1))

    model = Scorer()
    model(np.zeros((1, SEQ), "int32"))
    with pytest.raises(ModelError, match="subclassed keras.Model .*functional API"):
        from_keras(model)


def test_inputs_and_outputs_outside_the_contract():
    ids = k3.Input((SEQ,), dtype="int32")
    pooled = k3.layers.GlobalAveragePooling1D()(k3.layers.Embedding(VOCAB, 4)(ids))
    with pytest.raises(ModelError, match=r"output \(None, 3\) is not a reward"):
        from_keras(k3.Model(ids, k3.layers.Dense(3)(pooled)))
    feats = k3.Input((SEQ,))
    with pytest.raises(ModelError, match="needs integer token ids"):
        from_keras(k3.Model(feats, k3.layers.Dense(1)(feats)))
    other = k3.Input((SEQ,), dtype="int32")
    with pytest.raises(ModelError, match="has 2 inputs"):
        from_keras(k3.Model([ids, other], k3.layers.Dense(1)(pooled)))
    with pytest.raises(ModelError, match="no input shape"):
        from_keras(k3.Sequential([k3.layers.Embedding(VOCAB, 4), k3.layers.Dense(1)]))


def test_a_wrong_rebuild_names_the_first_differing_layer(monkeypatch):
    copy = convert._Rebuild.copy_weights

    def broken(self):
        copy(self)
        for src, dst in self.pending:
            if src.name == "attn":
                dst.set_weights([w + 0.5 for w in dst.get_weights()])

    monkeypatch.setattr(convert._Rebuild, "copy_weights", broken)
    with pytest.raises(ModelError, match=r"differs from the Keras 3 model .* first at layer 'attn' "
                                         r"\(MultiHeadAttention\)"):
        from_keras(transformer_functional())


def test_every_listed_layer_and_op_converts_exactly():
    L = k3.layers
    ids = k3.Input((SEQ,), dtype="int32")
    e = L.Embedding(VOCAB, 8)(ids)
    a = L.SeparableConv1D(8, 3, padding="same", activation="tanh")(L.SpatialDropout1D(0.1)(e))
    b = L.DepthwiseConv1D(3, padding="same")(L.GaussianDropout(0.1)(e))
    c = L.EinsumDense("abc,cd->abd", output_shape=(None, 8), bias_axes="d")(L.GaussianNoise(0.1)(e))
    m = L.Average()([L.Subtract()([a, b]), L.Multiply()([b, c]), L.Maximum()([a, c]), L.Minimum()([a, b])])
    m = L.LeakyReLU(0.2)(L.ELU()(L.ActivityRegularization(0.01)(m)))
    m = L.MaxPooling1D(2)(L.AveragePooling1D(2, strides=1, padding="same")(m))
    r = L.SimpleRNN(4)(L.Permute((2, 1))(L.Permute((2, 1))(m)))
    s = L.Flatten()(L.RepeatVector(2)(L.Softmax()(r)))
    s = k3.ops.gelu(k3.ops.sigmoid(s), approximate=False) - k3.ops.tanh(s) * s
    model = k3.Model(ids, L.Dense(1)(L.Activation("swish")(s)))
    converted = from_keras(model)
    classes = {type(layer).__name__ for layer in converted.layers}
    assert {"SeparableConv1D", "DepthwiseConv1D", "EinsumDense", "SimpleRNN", "Permute", "RepeatVector",
            "Subtract", "Multiply", "Average", "Maximum", "Minimum", "LeakyReLU", "ELU", "Softmax"} <= classes
    assert_same(model, converted)
