"""The CLI: `rmcompress compress` with a user's recipe file, and `rmcompress report` gathering rows
into one table (CSV, markdown) with accuracy-vs-size and accuracy-vs-latency Pareto plots."""
from __future__ import annotations

import pytest

from tests.helpers import tiny_config


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, pointwise_file):
    from rmcompress.training.trainer import train

    out = tmp_path_factory.mktemp("cli") / "m"
    train(pointwise_file, tiny_config(arch="transformer", max_steps=6), out, verbose=0)
    return out


def test_cli_compress_and_report(model_dir, pointwise_file, tmp_path, capfd):
    from rmcompress.cli import main

    recipe = tmp_path / "mine.yaml"
    recipe.write_text("passes:\n  - fuse\n  - factorise: {max_error: 0.5}\n  - quantise: {mode: int8, "
                      "calibration_samples: 32}\nexport: {latency_runs: 10}\n")
    assert main(["compress", "--verbose", "--model", str(model_dir), "--recipe", str(recipe), "--data",
                 str(pointwise_file), "--out", str(tmp_path / "c")]) == 0
    out = capfd.readouterr().out
    assert "smaller" in out and f"wrote {tmp_path / 'c'}" in out
    assert main(["report", "--verbose", str(tmp_path / "c"), str(model_dir), "--out", str(tmp_path / "rep")]) == 0
    for f in ("report.csv", "report.md", "pareto_size.png", "pareto_latency.png"):
        assert (tmp_path / "rep" / f).is_file(), f
    import pandas as pd

    df = pd.read_csv(tmp_path / "rep" / "report.csv")
    assert list(df["name"]) == ["mine", "m", "float32"] and df.loc[0, "quantize"] == "int8"
    # the compress run, the model directory (model.keras) and the float32 TFLite the run measured of it
    assert list(df["run"]) == ["c", "m", "m"] and list(df["kind"]) == ["tflite", "keras", "tflite"]
    assert df.loc[0, "tflite_precision"] == "int8" and df.loc[0, "savedmodel_precision"] == "float32"
    assert df.loc[2, "size_bytes"] == df.loc[0, "source_size_bytes"] and df.loc[2, "accuracy"] == df.loc[0, "source_accuracy"]
    assert "nan" not in (tmp_path / "rep" / "report.md").read_text()
    assert main(["report", "--verbose", str(tmp_path / "nothing")]) == 2


def test_cli_compress_unlabeled_needs_a_distilling_recipe(model_dir, pointwise_file, tmp_path, capfd):
    from rmcompress.cli import main

    extra = tmp_path / "extra.tsv"
    extra.write_text("text\na good film\n")
    rc = main(["compress", "--verbose", "--model", str(model_dir), "--recipe", "light", "--data", str(pointwise_file),
               "--out", str(tmp_path / "c"), "--unlabeled", str(extra)])
    err = capfd.readouterr().err
    assert rc == 2 and "extra.tsv" in err and "distill" in err
    assert not (tmp_path / "c").exists()
