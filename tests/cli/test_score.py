"""``rmcompress score``: rewards per text or pair from every artifact kind, stdin, CSV, one-line errors."""
import csv
import io
import json

import numpy as np
import pytest

from rmcompress.data.loaders import load_pairwise, load_texts
from rmcompress.models.modeldir import load_model_dir

from tests.helpers import run_cli_probe as run_cli
from tests.helpers import ROOT, tiny_config



@pytest.fixture(scope="module")
def models(tmp_path_factory, pointwise_file, pairwise_file):
    from rmcompress.export.exporter import export_model
    from rmcompress.training.trainer import train

    root = tmp_path_factory.mktemp("score")
    point = train(pointwise_file, tiny_config(arch="bow"), root / "point", verbose=0).out_dir
    pair = train(pairwise_file, tiny_config(task="pairwise", arch="bow"), root / "pair", verbose=0).out_dir
    export_model(point, root / "export", formats="savedmodel,tflite", latency_runs=0)
    return {"point": point, "pair": pair, "export": root / "export"}


def _rows(out):
    return [json.loads(line) for line in out.splitlines()]


def test_pointwise_rewards_per_text_from_every_artifact_kind(cli, models, pointwise_file):
    texts = load_texts(pointwise_file)
    bundle = load_model_dir(models["point"])
    expect = bundle.model.predict(bundle.tokenizer.encode(texts), verbose=0).reshape(-1)
    for artifact in (models["point"], models["export"], models["export"] / "saved_model",
                     models["export"] / "model.tflite"):
        rc, out, err = cli("score", "--model", artifact, "--data", pointwise_file)
        assert rc == 0, err
        rows = _rows(out)
        assert [r["text"] for r in rows] == texts and set(rows[0]) == {"text", "reward"}
        np.testing.assert_allclose([r["reward"] for r in rows], expect, atol=1e-4)


def test_pairwise_rows_have_both_rewards_and_the_margin(cli, models, pairwise_file, tmp_path):
    rc, out, err = cli("score", "--model", models["pair"], "--data", pairwise_file, "--format", "csv",
                       "--out", tmp_path / "r.csv")
    assert rc == 0 and out == "", err
    rows = list(csv.DictReader(io.StringIO((tmp_path / "r.csv").read_text())))
    pairs = load_pairwise(pairwise_file)
    assert len(rows) == len(pairs.chosen) and rows[0]["chosen"] == pairs.chosen[0]
    assert list(rows[0]) == ["chosen", "rejected", "reward_chosen", "reward_rejected", "margin"]
    bundle = load_model_dir(models["pair"])
    expect = bundle.model.predict(bundle.tokenizer.encode(pairs.chosen[:5]), verbose=0).reshape(-1)
    np.testing.assert_allclose([float(r["reward_chosen"]) for r in rows[:5]], expect, atol=1e-5)
    for r in rows:
        assert float(r["margin"]) == pytest.approx(float(r["reward_chosen"]) - float(r["reward_rejected"]), abs=1e-9)


def test_stdin_through_a_pipe(models, tmp_path):
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "rmcompress", "score", "--model", str(models["point"]), "--data", "-"],
                       input="text\na great film\na dull film\n", capture_output=True, text=True, timeout=240,
                       cwd=str(ROOT), env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert p.returncode == 0, p.stderr
    assert [r["text"] for r in _rows(p.stdout)] == ["a great film", "a dull film"]


@pytest.mark.parametrize("case", ["missing data", "other task", "bad format", "missing model"])
def test_bad_input_is_one_line_before_tensorflow(models, pairwise_file, tmp_path, case):
    args = {"missing data": ["--model", models["point"], "--data", tmp_path / "none.tsv"],
            "other task": ["--model", models["point"], "--data", pairwise_file],
            "bad format": ["--model", models["point"], "--data", pairwise_file, "--format", "xml"],
            "missing model": ["--model", tmp_path / "nothing", "--data", pairwise_file]}[case]
    rc, tensorflow, err = run_cli("score", *args, cwd=tmp_path)
    assert rc == 2 and not tensorflow and len(err.splitlines()) == 1 and err.startswith("rmcompress score: error:"), err
    assert {"missing data": "none.tsv: no such file", "other task": "text column",
            "bad format": "--format", "missing model": "nothing"}[case] in err
