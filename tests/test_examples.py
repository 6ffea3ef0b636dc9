"""examples/edge_score.py (LiteRT + tokenizers + numpy only) gives the rewards of ``rmcompress score``."""
import json
import subprocess
import sys

import numpy as np
import pytest

from rmcompress.compression.pipeline import compress

from tests.helpers import ROOT, tiny_config

TEXTS = ["A great, moving film!", "dull and lifeless", "Naïve... but fun; isn't it?", "the film " * 20, "中文 ok"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, pointwise_file):
    from rmcompress.training.trainer import train

    return train(pointwise_file, tiny_config(arch="transformer"), tmp_path_factory.mktemp("m") / "m", verbose=0).out_dir


@pytest.mark.parametrize("recipe", ["light", pytest.param("aggressive", marks=pytest.mark.slow)])  # ~2 min
def test_edge_example_scores_like_rmcompress(cli, model_dir, pointwise_file, tmp_path, recipe):
    out = tmp_path / recipe
    compress(model_dir, recipe, pointwise_file, out, latency_runs=0)
    env = {"PATH": "/usr/bin:/bin"}  # no PYTHONPATH: the example needs nothing of rmcompress
    p = subprocess.run([sys.executable, "-c", "import sys, runpy; sys.argv = sys.argv[1:]; "
                        "sys.modules['tensorflow'] = None; runpy.run_path(sys.argv[0], run_name='__main__')",
                        str(ROOT / "examples" / "edge_score.py"), str(out), *TEXTS],
                       capture_output=True, text=True, timeout=120, env=env, cwd=str(tmp_path))
    assert p.returncode == 0, p.stderr
    edge = [json.loads(line) for line in p.stdout.splitlines()]
    data = tmp_path / "texts.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    rc, ref_out, err = cli("score", "--model", out / "model.tflite", "--data", data)
    assert rc == 0, err
    ref = [json.loads(line) for line in ref_out.splitlines()]
    assert [r["text"] for r in edge] == TEXTS == [r["text"] for r in ref]
    np.testing.assert_allclose([r["reward"] for r in edge], [r["reward"] for r in ref], atol=1e-5, rtol=0)
    assert len({round(r["reward"], 6) for r in edge}) > 1  # the texts score differently
