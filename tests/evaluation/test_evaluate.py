"""evaluate() on a Keras model directory, a SavedModel and a .tflite file gives the same quality."""
import numpy as np
import pytest

from rmcompress.errors import ModelError
from rmcompress.evaluation.evaluate import evaluate
from rmcompress.metrics import auc, quality_metrics, spearman
from rmcompress.export.exporter import export_model

KEYS = {"task", "n_examples", "flops", "params", "size_bytes", "size_gzip_bytes", "latency_ms_p50", "latency_ms_p90"}


@pytest.fixture(scope="module")
def exported(trained_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("ev")
    for name in ("cnn", "pairwise"):
        export_model(trained_models[name].out_dir, root / name, latency_runs=0)
    return root


@pytest.mark.parametrize("name,data_fixture,key", [("cnn", "pointwise_file", "accuracy"),
                                                   ("pairwise", "pairwise_file", "pairwise_accuracy")])
def test_three_artifact_kinds_agree(trained_models, exported, request, name, data_fixture, key):
    data = request.getfixturevalue(data_fixture)
    paths = {"keras": trained_models[name].out_dir, "savedmodel": exported / name / "saved_model",
             "tflite": exported / name / "model.tflite"}
    reports = {kind: evaluate(p, data, latency_runs=200) for kind, p in paths.items()}
    for kind, rep in reports.items():
        assert rep["kind"] == kind and KEYS <= set(rep), kind
        assert rep["latency_runs"] == 200
        assert rep[key] == pytest.approx(reports["keras"][key], abs=1e-9)
        assert rep["flops"] == reports["keras"]["flops"] and rep["params"] == reports["keras"]["params"]
    assert reports["tflite"]["size_bytes"] < reports["savedmodel"]["size_bytes"]
    assert reports["tflite"]["precision"] == reports["savedmodel"]["precision"] == "float32"
    assert reports["tflite"]["quantize"] == "none" and "quantize" not in reports["savedmodel"]


def test_export_directory_resolves_to_tflite(exported, pointwise_file):
    rep = evaluate(exported / "cnn", pointwise_file, latency_runs=0)
    assert rep["kind"] == "tflite"


def test_not_a_tflite_file(tmp_path, pointwise_file):
    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"definitely not a flatbuffer")
    with pytest.raises(ModelError, match="not a TFLite file"):
        evaluate(bad, pointwise_file)


def test_metrics_by_hand():
    assert quality_metrics("pointwise", [1.0, -1.0, 2.0], [1, 1, 0])["accuracy"] == pytest.approx(1 / 3)
    q = quality_metrics("pairwise", ([1.0, 0.0], [0.0, 2.0]))
    assert q == {"pairwise_accuracy": 0.5, "mean_margin": -0.5}
    assert auc([0.1, 0.9, 0.4], [0, 1, 1]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [10, 20, 15]) == pytest.approx(0.5)
    assert np.isnan(spearman([1], [2]))
