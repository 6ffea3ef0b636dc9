"""Latency: interleaved rounds time every file in turn and report each file's median of its rounds."""
import pytest

from rmcompress.evaluation import latency as lat
from rmcompress.export.exporter import export_model


def test_interleaved_rounds_time_the_files_in_turn_and_take_each_ones_median(monkeypatch, trained_models, tmp_path):
    export_model(trained_models["cnn"].out_dir, tmp_path / "cnn", latency_runs=0)
    path = tmp_path / "cnn" / "model.tflite"
    real = lat.interleaved_latency([path, path.read_bytes()], _ids(path), runs=12, rounds=3)
    assert [r["latency_runs"] for r in real] == [12, 12] and all(r["latency_ms_p50"] > 0 for r in real)
    assert all(r["latency_ms_p90"] >= r["latency_ms_p50"] and r["latency_rounds"] == 3 for r in real)

    calls, p50 = [], iter([1.0, 10.0, 3.0, 30.0, 2.0, 99.0])  # the second file slowed in its 3rd round

    def fake(runner, ids, runs):
        calls.append((id(runner), runs))
        v = next(p50)
        return {"latency_ms_p50": v, "latency_ms_p90": v + 1}

    monkeypatch.setattr(lat, "measure_latency", fake)
    a, b = lat.interleaved_latency([path, path], _ids(path), runs=200, rounds=3)
    first, second = calls[0][0], calls[1][0]
    assert [c[0] for c in calls] == [first, second] * 3 and {c[1] for c in calls} == {66}
    assert a["latency_ms_p50"] == 2.0 and b["latency_ms_p50"] == 30.0 and b["latency_ms_p90"] == 31.0
    with pytest.raises(ValueError, match="rounds 0"):
        lat.interleaved_latency([path], _ids(path), rounds=0)


def _ids(path):
    import numpy as np

    from rmcompress.runtime.tflite import TFLiteRunner

    return np.ones((4, TFLiteRunner(path).seq_len), np.int32)
