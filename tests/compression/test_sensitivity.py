"""Sensitivity: int8 of one layer alone, half of one group pruned alone, the table, the chart, the command."""
import json

import numpy as np
import pandas as pd
import pytest

from rmcompress.compression.quantise import only_int8, tensor_layer
from rmcompress.compression.sensitivity import sensitivity, sensitivity_table
from tests.helpers import tiny_config, token_ids


def test_tensor_names_map_to_their_keras_layer():
    names = {"block0_ffn_in", "pool"}
    assert tensor_layer("m/block0_ffn_in/Tensordot/MatMul;m/block0_ffn_in/Relu", names) == "block0_ffn_in"
    assert tensor_layer("m/pool/Sum_1", names) == "pool"
    assert tensor_layer("tfl.quantize", names) is None


def test_only_the_chosen_layer_is_int8():
    from ai_edge_litert.interpreter import Interpreter

    from rmcompress.compression.quantise import calibrate, layer_errors
    from rmcompress.models.architectures import build_reward_model
    from rmcompress.training.trainer import arch_config

    model = build_reward_model(arch_config(tiny_config(), 300))
    ids = token_ids(64, 16, 300)
    errors = layer_errors(model, ids, ids[:16])
    names = {layer.name for layer in model.layers}
    tensors = [t for t in errors["tensor_name"] if isinstance(t, str)]
    keep = [t for t in tensors if tensor_layer(t, names) == "block0_ffn_in"]
    details = Interpreter(model_content=only_int8(calibrate(model, ids), tensors, keep)).get_tensor_details()
    int8 = [(d["name"], tensor_layer(d["name"], names)) for d in details if d["dtype"] == np.int8]
    assert any(layer == "block0_ffn_in" and "MatMul" in name for name, layer in int8)
    # elsewhere only the quantize op and lossless reshapes of the layer's own int8 tensors
    assert all(layer in ("block0_ffn_in", None) or "Reshape" in name for name, layer in int8), int8


@pytest.fixture(scope="module")
def state(tmp_path_factory, pointwise_file):
    from tests.helpers import transformer_state

    return transformer_state(tmp_path_factory, pointwise_file, max_steps=30)


def test_table_has_a_row_per_layer_and_group_with_consistent_drops(state):
    df = sensitivity_table(state, max_examples=40, calibration_samples=32)
    assert list(df.columns) == ["kind", "target", "units", "metric", "quality", "drop", "agreement", "rmse/scale",
                                "flops"]
    int8 = df[df["kind"] == "int8"].set_index("target")
    assert {"(all layers)", "block0_ffn_in", "block0_ffn_out", "block0_attn", "token_embedding"} <= set(int8.index)
    prune = df[df["kind"] == "prune50"].set_index("target")
    assert set(prune.index) == {"block0_attn_heads", "block0_ffn_in"}
    assert prune.loc["block0_attn_heads", "units"] == "2->1" and prune.loc["block0_ffn_in", "units"] == "32->16"
    assert (prune["flops"] < 1).all() and (prune["flops"] > 0).all() and prune["rmse/scale"].isna().all()
    ref = df.attrs["reference"]
    assert df.attrs["metric"] == "accuracy" and df.attrs["n_examples"] == min(40, len(state.val))
    # drop is the reference minus the quality, in points, for every row measured against the Keras model
    np.testing.assert_allclose(prune["drop"], (ref - prune["quality"]) * 100, atol=1e-9)
    assert df["drop"].is_monotonic_decreasing and df["agreement"].between(0, 1).all()
    # the full int8 file's error bounds every single layer's
    assert int8.loc["(all layers)", "rmse/scale"] >= int8.drop("(all layers)")["rmse/scale"].max() - 1e-9
    int4 = df[df["kind"] == "int4"].set_index("target")
    # the dynamic-range file keeps tensors under 1,024 values float: here only the token table is 8-bit
    assert set(int4.index) == {"(all layers)", "token_embedding"}
    assert int4.loc["(all layers)", "units"] == int4.drop("(all layers)")["units"].sum()
    assert int4["rmse/scale"].isna().all() and int4["flops"].isna().all()


def test_int4_rows_are_measured_against_the_dynamic_range_file(state):
    """An int4 row's agreement is with the dynamic-range file: a token table whose values are -m, 0
    or m (exact at 8 bits and at 4) loses nothing to 4 bits, so its row agrees fully and drops 0;
    with its trained values it is a real 4-bit table."""
    from rmcompress.compression.sensitivity import Scorer, int4_rows

    layer = state.model.get_layer("token_embedding")
    original = layer.get_weights()
    scorer = Scorer.of(state, 40)
    trained = {r["target"]: r for r in int4_rows(scorer)}
    try:
        e = original[0]
        layer.set_weights([np.sign(e) * np.abs(e).max() * (np.abs(e) > np.median(np.abs(e), axis=0, keepdims=True))])
        ternary = {r["target"]: r for r in int4_rows(scorer)}
    finally:
        layer.set_weights(original)
    assert ternary["token_embedding"]["agreement"] == 1.0 and ternary["token_embedding"]["drop"] == 0.0
    assert trained["token_embedding"]["units"] == 1 and 0.0 <= trained["token_embedding"]["agreement"] <= 1.0


def test_pairwise_rows_measure_pair_order(tmp_path, pairwise_file):
    from rmcompress.training.trainer import train

    train(pairwise_file, tiny_config(task="pairwise", arch="cnn", max_steps=10), tmp_path / "m", verbose=0)
    df = sensitivity(tmp_path / "m", pairwise_file, max_examples=16, int8=False, int4=False)
    assert set(df["kind"]) == {"prune50"} and df.attrs["metric"] == "pairwise_accuracy"
    assert df.attrs["n_examples"] == 16


def test_command_writes_table_chart_and_report(cli, tmp_path, trained_models, pointwise_file):
    model = trained_models["cnn"].out_dir
    rc, out, err = cli("sensitivity", "--model", model, "--data", pointwise_file, "--out", tmp_path / "s",
                       "--max-examples", "20", "--calibration-samples", "16")
    assert rc == 0, err
    csv = pd.read_csv(tmp_path / "s" / "sensitivity.csv")
    report = json.loads((tmp_path / "s" / "report.json").read_text())
    assert len(report["rows"]) == len(csv) and report["stage"] == "sensitivity" and report["metric"] == "accuracy"
    assert (tmp_path / "s" / "sensitivity.png").stat().st_size > 5000
    md = (tmp_path / "s" / "sensitivity.md").read_text()
    assert md.startswith("Validation accuracy of ") and "nan" not in md
    assert "prune50" in out and "(all layers)" in out
    rc, _, err = cli("sensitivity", "--model", tmp_path / "missing", "--data", pointwise_file)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "missing" in err
