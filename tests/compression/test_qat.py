"""QAT (tfmot) on the whole transformer: no FakeQuant on int32 ids, every matmul and the embedding
int8 in TFLite, parity with the fake-quant Keras model; PQAT keeps pruned weights at zero."""
from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import run_pass, tiny_config, transformer_state
from rmcompress.compression.fuse import fuse
from rmcompress.compression.settings import PruneSettings
from rmcompress.compression.state import WeightStructure
from rmcompress.evaluation.op_profile import op_dtypes
from rmcompress.export.parity import parity_metrics
from rmcompress.runtime.tflite import TFLiteRunner


def int8_batch_matmul_rhs_zero_points(flat: bytes) -> list[int]:
    """Zero points of the right operand of every int8 BATCH_MATMUL in ``flat``."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=flat)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    return [int(tensors[op["inputs"][1]]["quantization"][1]) for op in interp._get_ops_details()
            if op["op_name"] == "BATCH_MATMUL" and tensors[op["inputs"][1]]["dtype"] == np.int8]


def quantize_dequantize_pairs(flat: bytes) -> list[int]:
    """Indices of DEQUANTIZE ops whose input a QUANTIZE op just produced (a wasted round trip)."""
    from ai_edge_litert.interpreter import Interpreter

    ops = Interpreter(model_content=flat)._get_ops_details()
    made_by = {t: op["op_name"] for op in ops for t in op["outputs"]}
    return [op["index"] for op in ops if op["op_name"] == "DEQUANTIZE" and made_by.get(op["inputs"][0]) == "QUANTIZE"]


def with_shifted_values(model):
    """A copy of ``model`` whose attention keys and values are shifted by +2 (bias), so their range is
    far from symmetric: an asymmetric quantiser would give them a non-zero zero point."""
    from rmcompress._keras import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for layer in copy.layers:
        if hasattr(layer, "qkv_bias"):  # fused [q | k | v]
            bias = layer.qkv_bias.numpy()
            bias[len(bias) // 3:] += 2.0
            layer.qkv_bias.assign(bias)
        elif hasattr(layer, "value_bias"):
            layer.key_bias.assign(layer.key_bias.numpy() + 2.0)
            layer.value_bias.assign(layer.value_bias.numpy() + 2.0)
    return copy


@pytest.fixture(scope="module")
def state(tmp_path_factory, pointwise_file):
    return transformer_state(tmp_path_factory, pointwise_file, max_steps=6)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "plain-attention"])
def test_qat_on_the_whole_transformer(state, fused):
    from rmcompress.compression import qat

    model = fuse(state.model, state.val_ids(32))[0] if fused else state.model
    model = with_shifted_values(model)
    q = qat.quantize_model(model)
    assert not any(type(l).__name__ == "QuantizeLayer" for l in q.layers)  # no FakeQuant on the int32 ids
    names = {l.name for l in q.layers}
    assert {"quant_token_embedding", "quant_block0_attn", "quant_block0_attn_norm", "quant_padding_mask"} <= names
    ids = state.val_ids(64)
    from rmcompress.compression.finetune import finetune

    finetune(q, state, 1, 1e-4, 16)
    flat = qat.convert_qat(q, state.tokenizer.seq_len)
    ops = op_dtypes(flat)
    assert {d for o, d in ops if o == "FULLY_CONNECTED"} == {"int8"}  # every matmul with weights is int8
    assert ("GATHER", "int8") in ops  # the embedding table is int8
    m = parity_metrics(q.predict(ids, verbose=0), TFLiteRunner(flat).score(ids))
    assert m["parity_decision_agreement"] >= 0.9
    # a runner that has run at batch 1 scores a large batch like a fresh one (LiteRT + XNNPACK give
    # wrong int8 outputs after such a resize of one interpreter; the runner re-creates it)
    runner = TFLiteRunner(flat)
    runner.score(ids[:1])
    big = np.concatenate([ids] * 4)
    np.testing.assert_array_equal(runner.score(big), TFLiteRunner(flat).score(big))
    # both attention matmuls (q k^T, probabilities @ V) are int8 with a zero-point-0 right operand,
    # which XNNPACK needs to run them
    zero_points = int8_batch_matmul_rhs_zero_points(flat)
    assert len(zero_points) == 2 and set(zero_points) == {0}, zero_points
    assert ("BATCH_MATMUL", "float32") not in ops
    # the final norm feeds only the (float) pooling: no FakeQuant there, so no QUANTIZE -> DEQUANTIZE
    assert not q.get_layer("quant_final_norm").quantize_config.quantize_output
    assert quantize_dequantize_pairs(flat) == []
    if fused:  # embedding_bits: 4: the same file with a 4-bit token table
        from rmcompress.compression.quantise import build_tflite
        from rmcompress.runtime.int4 import weight_bits

        four, note = build_tflite(model, "qat", qat_model=q, embedding_bits=4)
        assert note["bytes_before_int4_tables"] == len(flat) and len(four) < len(flat)
        assert note["int4_tables"] and {weight_bits(four)[t] for t in note["int4_tables"]} == {4}
        fq = q.predict(ids, verbose=0)
        # 6 training steps leave the rewards close together: decisions, not their order, are the bar here
        assert parity_metrics(fq, TFLiteRunner(four).score(ids))["parity_decision_agreement"] >= 0.9
    plain = qat.float_model_from_qat(q, model)
    assert not any(hasattr(l, "quantize_config") for l in plain.layers)
    kernel = next(w for w in q.get_layer("quant_reward").weights if w.name.endswith("reward/kernel:0"))
    np.testing.assert_array_equal(plain.get_layer("reward").get_weights()[0], kernel.numpy())


def test_pqat_preserves_pruned_zeros(state):
    from rmcompress.compression.prune import prune
    from rmcompress.compression.targets import weight_arrays

    model, _ = fuse(state.model, state.val_ids(32))
    pruned, pnote = prune(model, state, PruneSettings(sparsity=0.5, schedule="constant", steps=0))
    state.model = pruned
    state.structure = WeightStructure(pruned=tuple(pnote["layers"]))
    state, note = run_pass("quantise", state, mode="qat", steps=3, learning_rate=1e-2, batch_size=16)
    assert note["preserve"] == "prune" and state.export.quantize == "qat"
    for name in pnote["layers"]:
        before, after = weight_arrays(pruned.get_layer(name)), weight_arrays(state.model.get_layer(name))
        for k in before:
            assert np.all(after[k][before[k] == 0] == 0), (name, k)  # pruned weights stayed zero
            assert not np.array_equal(after[k], before[k])  # ... while the others trained


def test_qat_after_a_vocabulary_shrink_leaves_remapped_ids_unquantised(pointwise_file, tmp_path):
    """A params budget removes vocabulary rows and adds a ``TokenRemap`` (int32 ids -> int32 rows):
    QAT must not put a FakeQuant on its integer output (it used to fail with a TypeError)."""
    from rmcompress.compression import qat
    from rmcompress.compression.state import prepare_state
    from rmcompress.training.budget import budget_compress
    from rmcompress.layers.encoder import TokenRemap
    from rmcompress.training.trainer import train

    r = train(pointwise_file, tiny_config(arch="bow", max_steps=4), tmp_path / "m", verbose=0)
    st = prepare_state(r.bundle, pointwise_file)
    small = budget_compress(r.bundle, st.train, st.val, params_fraction=0.4, steps=8)
    assert any(isinstance(l, TokenRemap) for l in small.model.layers)
    q = qat.quantize_model(small.model)
    ids = st.val_ids(16)
    flat = qat.convert_qat(q, st.tokenizer.seq_len)
    m = parity_metrics(q.predict(ids, verbose=0), TFLiteRunner(flat).score(ids))
    assert m["parity_decision_agreement"] >= 0.9
    # a runner that has run at batch 1 scores a large batch like a fresh one (LiteRT + XNNPACK give
    # wrong int8 outputs after such a resize of one interpreter; the runner re-creates it)
    runner = TFLiteRunner(flat)
    runner.score(ids[:1])
    big = np.concatenate([ids] * 4)
    np.testing.assert_array_equal(runner.score(big), TFLiteRunner(flat).score(big))


def test_qat_fake_quantises_the_exact_rows_of_a_two_tier_table(state):
    """factorise ``full_rows``: QAT quantises the exact-row table too and the int8 file follows the
    fake-quant model."""
    import copy

    from rmcompress.compression import qat

    st = copy.copy(state)
    st, _ = run_pass("factorise", st, vocab_prune=True, rank=4, full_rows=8)
    q = qat.quantize_model(st.model)
    names = {w.name for w in q.get_layer("quant_token_embedding").weights}
    assert {"quant_token_embedding/full_min:0", "quant_token_embedding/full_max:0"} <= names, names
    ids = st.val_ids(16)
    flat = qat.convert_qat(q, st.tokenizer.seq_len)
    m = parity_metrics(q.predict(ids, verbose=0), TFLiteRunner(flat).score(ids))
    assert m["parity_decision_agreement"] >= 0.9


def user_attention_model(seed: int = 0):
    """A user's functional model: ``Embedding(mask_zero=True)`` -> Keras ``MultiHeadAttention``
    (its mask from the embedding) -> ``x + y`` -> LayerNormalization -> mean pooling -> Dense."""
    from rmcompress._keras import keras

    keras.utils.set_random_seed(seed)
    ids = keras.Input((12,), dtype="int32")
    x = keras.layers.Embedding(40, 16, mask_zero=True)(ids)
    a = keras.layers.MultiHeadAttention(2, 8)(x, x)
    x = keras.layers.LayerNormalization()(x + a)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(ids, keras.layers.Dense(1)(x))


def test_qat_keeps_the_weights_of_keras_attention_apart():
    """Keras ``MultiHeadAttention`` holds four ``kernel`` variables (query, key, value, output): each
    keeps its own values in the QAT model and back in the float model after QAT."""
    from rmcompress.compression.qat import float_model_from_qat, quantize_model

    model = user_attention_model()
    qat = quantize_model(model)
    src, dst = model.get_layer("multi_head_attention"), qat.get_layer("multi_head_attention")
    for a, b in zip(src.weights, dst.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)
    back = float_model_from_qat(qat, model)
    for a, b in zip(src.weights, back.get_layer("multi_head_attention").weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)


def test_qat_model_passes_keras_masks_like_the_float_model():
    """tfmot's wrapper drops Keras masks; the QAT model's wrapped embedding hands its padding mask
    to the attention as the float model's does. The embedding output is not fake-quantised, so the
    attention outputs of the two models match to float error (attending to the padding: 1e-2)."""
    from rmcompress._keras import keras
    from rmcompress.compression.qat import quantize_model

    def attention_output(m):
        layer = next(x for x in m.layers if isinstance(x, keras.layers.MultiHeadAttention))
        return keras.Model(m.inputs, layer.get_output_at(-1))

    model = user_attention_model()
    qat = quantize_model(model)
    ids = np.random.default_rng(0).integers(1, 40, size=(32, 12)).astype("int32")
    ids[:, 5:] = 0
    ref = attention_output(model)(ids, training=True).numpy()
    out = attention_output(qat)(ids, training=True).numpy()
    assert np.abs(out - ref).max() < 1e-3 * np.abs(ref).max() * 10, np.abs(out - ref).max()
    emb = next(layer for layer in qat.layers if isinstance(getattr(layer, "layer", None), keras.layers.Embedding))
    assert emb.compute_mask(ids) is not None
