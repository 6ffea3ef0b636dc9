"""Export: float TFLite parity (<= 1e-4) for every architecture and task, SavedModel signatures."""
import json

import numpy as np
import pytest

from rmcompress.errors import ExportError
from rmcompress.export.exporter import export_model
from rmcompress.export.parity import check_parity, parity_metrics
from rmcompress.runtime.savedmodel import SavedModelRunner
from rmcompress.runtime.tflite import TFLiteRunner
from rmcompress.models.modeldir import load_samples


@pytest.fixture(scope="module")
def exports(trained_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("exports")
    return {name: (root / name, export_model(res.out_dir, root / name, latency_runs=20))
            for name, res in trained_models.items()}


@pytest.mark.parametrize("name", ["transformer", "cnn", "bow", "pairwise"])
def test_float_tflite_parity(exports, trained_models, name):
    out, report = exports[name]
    assert report["parity_max_abs_diff"] <= 1e-4
    ids = load_samples(trained_models[name].out_dir)["validation_ids"]
    keras_out = trained_models[name].bundle.model.predict(ids, verbose=0).reshape(-1)
    np.testing.assert_allclose(TFLiteRunner(out / "model.tflite").score(ids), keras_out, atol=1e-4)
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["seq_len"] == ids.shape[1] and meta["input"]["dtype"] == "int32"
    assert (out / "vocab.txt").is_file() and (out / "report.json").is_file()
    assert report["latency_ms_p50"] > 0 and report["size_bytes"] == (out / "model.tflite").stat().st_size


def test_savedmodel_has_ids_and_text_signatures(exports, trained_models):
    out, _ = exports["transformer"]
    bundle = trained_models["transformer"].bundle
    runner = SavedModelRunner(out / "saved_model")
    texts = ["a charming film , always superb", "the plot is not good"]
    ids = bundle.tokenizer.encode(texts)
    expected = bundle.model.predict(ids, verbose=0).reshape(-1)
    np.testing.assert_allclose(runner.score(ids), expected, atol=1e-5)
    np.testing.assert_allclose(runner.score_text(texts), expected, atol=1e-5)


def test_parity_check_rejects_float_drift():
    m = parity_metrics([0.1, -0.2, 0.3], [0.1, -0.2, 0.3005])
    with pytest.raises(ExportError, match="differs from the Keras model"):
        check_parity(m, "none")
    check_parity(m, "dynamic")  # decisions and ranks agree


def test_export_formats_and_quantized_variants(trained_models, tmp_path):
    rep = export_model(trained_models["bow"].out_dir, tmp_path / "tfl", formats="tflite", quantize="dynamic",
                       latency_runs=0)
    assert (tmp_path / "tfl" / "model.tflite").is_file() and not (tmp_path / "tfl" / "saved_model").exists()
    assert rep["quantize"] == "dynamic" and rep["parity_decision_agreement"] >= 0.95


def test_quantised_export_labels_its_float_savedmodel(trained_models, tmp_path):
    bundle = trained_models["bow"].bundle
    rep = export_model(trained_models["bow"].out_dir, tmp_path / "q", quantize="dynamic", latency_runs=0)
    meta = json.loads((tmp_path / "q" / "metadata.json").read_text())
    saved = json.loads((tmp_path / "q" / "report.json").read_text())
    for d in (rep, meta, saved):
        assert d["tflite_precision"] == "dynamic-range int8" and d["savedmodel_precision"] == "float32", d
    assert saved["kind"] == "tflite"
    # the labels are true: the SavedModel reproduces the float Keras model, the TFLite file does not
    ids = load_samples(trained_models["bow"].out_dir)["validation_ids"]
    keras_out = bundle.model.predict(ids, verbose=0).reshape(-1)
    np.testing.assert_allclose(SavedModelRunner(tmp_path / "q" / "saved_model").score(ids), keras_out, atol=1e-5)
    assert np.abs(TFLiteRunner(tmp_path / "q" / "model.tflite").score(ids) - keras_out).max() > 1e-5
