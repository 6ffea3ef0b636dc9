"""quantise (post-training): selective int8 keeps the chosen ops float; the quantisation debugger
reports per-tensor error and tensors above a bound stay float; int16x8 fails clearly; int4 weights
are smaller than dynamic int8, pass the parity bar, and the per-layer check keeps int8 where asked;
4-bit embedding tables in an int8 file pass the int8 bar;
``keep_float_ops: auto`` decides on the fastest of alternating profile rounds."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.helpers import transformer_state
from rmcompress.compression.fuse import fuse
from rmcompress.compression.quantise import build_tflite, layer_errors
from rmcompress.errors import ExportError
from rmcompress.evaluation.op_profile import op_dtypes
from rmcompress.export.parity import check_parity, parity_metrics
from rmcompress.runtime.int4 import weight_bits
from rmcompress.runtime.tflite import TFLiteRunner


@pytest.fixture(scope="module")
def state(tmp_path_factory, pointwise_file):
    return transformer_state(tmp_path_factory, pointwise_file, max_steps=6)


def test_selective_int8_keeps_chosen_ops_float_and_reports_layer_error(state):
    model, _ = fuse(state.model, state.val_ids(32))
    cal = state.calibration_ids(64)
    flat, note = build_tflite(model, "int8", cal, keep_float_ops=["BATCH_MATMUL", "SOFTMAX"], max_layer_error=None)
    ops = op_dtypes(flat)
    assert {d for o, d in ops if o in ("BATCH_MATMUL", "SOFTMAX")} == {"float32"}
    assert {d for o, d in ops if o == "FULLY_CONNECTED"} == {"int8"}
    assert note["kept_float_ops"] == ["BATCH_MATMUL", "SOFTMAX"] and note["layer_errors_top"]
    ids = state.val_ids()
    m = parity_metrics(model.predict(ids, verbose=0), TFLiteRunner(flat).score(ids))
    assert m["parity_decision_agreement"] >= 0.9
    errors = layer_errors(model, cal, cal[:16])
    assert {"tensor_name", "op_name", "rmse/scale"} <= set(errors.columns) and (errors["rmse/scale"].dropna() >= 0).all()
    # an error bound below rounding noise keeps the worst tensors float, and says which
    flat2, note2 = build_tflite(model, "int8", cal, max_layer_error=float(errors["rmse/scale"].max()) * 0.9)
    assert note2["kept_float_tensors"] and len(flat2) > 0


def test_layers_whose_int8_alone_reorders_rewards_stay_float(state):
    from rmcompress.compression.quantise import order_agreement

    assert order_agreement([1, 2, 3], [1, 2, 3]) == 1.0 and order_agreement([1, 2, 3], [3, 2, 1]) == 0.0
    assert order_agreement([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx((1 + 4 / 6) / 2)
    model, _ = fuse(state.model, state.val_ids(32))
    cal = state.calibration_ids(64)
    _, none_kept = build_tflite(model, "int8", cal, debug_ids=cal[:32], min_layer_agreement=0.0)
    agree = none_kept["int8_layer_agreement"]
    assert none_kept["kept_float_layers"] == [] and {"block0_ffn_in", "block0_attn"} <= set(agree)
    assert all(0.0 <= v <= 1.0 for v in agree.values())
    # a bar above every layer's agreement keeps every layer float: no int8 FULLY_CONNECTED is left
    flat, all_kept = build_tflite(model, "int8", cal, debug_ids=cal[:32], min_layer_agreement=1.01)
    assert sorted(all_kept["kept_float_layers"]) == sorted(agree)
    assert {d for o, d in op_dtypes(flat) if o == "FULLY_CONNECTED"} == {"float32"}


def test_int16x8_fails_with_a_clear_message(state):
    with pytest.raises(ExportError, match="int16x8: the TFLite converter .* cannot quantise"):
        build_tflite(state.model, "int16x8", state.calibration_ids(8))


def test_int4_file_is_smaller_than_dynamic_and_agrees_with_the_float_model(state):
    model, _ = fuse(state.model, state.val_ids(32))
    flat, note = build_tflite(model, "int4")
    assert note["int4_tensors"] and set(weight_bits(flat).values()) == {4} and len(flat) < note["dynamic_bytes"]
    ids = state.val_ids()
    m = parity_metrics(model.predict(ids, verbose=0), TFLiteRunner(flat).score(ids))
    check_parity(m, "int4")
    assert m["parity_decision_agreement"] >= 0.9 and m["parity_max_abs_diff"] > 0


def test_int8_with_4bit_embedding_tables_is_smaller_and_passes_the_int8_bar(state):
    model, _ = fuse(state.model, state.val_ids(32))
    cal = state.calibration_ids(64)
    flat, note = build_tflite(model, "int8", cal)
    four, note4 = build_tflite(model, "int8", cal, embedding_bits=4)
    assert "int4_tables" not in note and note4["bytes_before_int4_tables"] == len(flat)
    table = state.model.get_layer("token_embedding").embeddings.shape
    # half a byte per table value, less the per-column scales and the two added ops (~0.5 kB here)
    assert len(flat) - len(four) > 0.5 * table[0] * table[1] - 600
    assert set(weight_bits(four).values()) == {4, 8} and all(weight_bits(four)[t] == 4 for t in note4["int4_tables"])
    ids = state.val_ids()
    m = parity_metrics(model.predict(ids, verbose=0), TFLiteRunner(four).score(ids))
    check_parity(m, "int8")
    dynamic, _ = build_tflite(model, "dynamic", embedding_bits=4)  # other modes: the setting does nothing
    assert dynamic == build_tflite(model, "dynamic")[0]


def test_int4_layers_whose_4bit_alone_reorders_rewards_keep_int8(state):
    model, _ = fuse(state.model, state.val_ids(32))
    with pytest.raises(ExportError, match="needs debug rows"):
        build_tflite(model, "int4", min_layer_agreement=0.9)
    # a bar above every layer's agreement keeps every layer's weights int8 (the plain int4 file, above, has none)
    flat, all_kept = build_tflite(model, "int4", debug_ids=state.calibration_ids(32), min_layer_agreement=1.01)
    agree = all_kept["int4_layer_agreement"]
    assert "token_embedding" in agree and all(0.0 <= v <= 1.0 for v in agree.values())
    assert sorted(all_kept["int8_layers"]) == sorted(agree) and all_kept["int4_tensors"] == []
    assert set(weight_bits(flat).values()) == {8}


def test_auto_keep_float_ops_is_not_flipped_by_a_load_spike(monkeypatch):
    """SOFTMAX's int8 kernel is slow in every round and is kept float; ADD is as fast in int8 but
    one round of its int8 file runs under load (20 us): the decision is the one of the quiet
    rounds. The two files are profiled in turn."""
    from rmcompress.compression import quantise

    calls = []

    def fake_profile(content, ids, runs):
        calls.append(content)
        n = calls.count(content)
        if content == b"int8":
            add = 20.0 if n == 2 else 4.0
            rows = [("ADD", "int8", add), ("SOFTMAX", "int8", 6.0), ("DEQUANTIZE", "float32", 1.0)]
        else:
            rows = [("ADD", "float32", 3.5 + n), ("SOFTMAX", "float32", 1.0)]
        return pd.DataFrame([{"index": i, "op": op, "dtype": dt, "us": us} for i, (op, dt, us) in enumerate(rows)])

    monkeypatch.setattr(quantise, "profile_ops", fake_profile)
    slow, table = quantise.slow_int8_ops(b"int8", b"float", np.zeros((2, 8), np.int32), rounds=3)
    assert slow == ["SOFTMAX"]
    assert calls == [b"int8", b"float"] * 3
    assert table.set_index("op").loc["ADD"].to_dict() == {"int8_us": 4.0, "float_us": 4.5}
