"""Bad input is reported before TensorFlow loads: each case runs the CLI in a fresh interpreter and
checks the exit status, the one-line message and that ``tensorflow`` was never imported.

(How long that takes is measured by ``benchmarks/cli_feedback.py``, not asserted here.)
"""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import pytest

from tests.helpers import run_cli_probe as run_cli
from tests.helpers import ROOT



@pytest.fixture
def fake_model(tmp_path):
    """A directory that passes the on-disk checks (its model file is never read here)."""
    d = tmp_path / "model"
    d.mkdir()
    (d / "model.keras").write_bytes(b"")
    (d / "metadata.json").write_text(json.dumps({"format": "rmcompress.model", "task": "pointwise", "loss": "bce"}))
    return d


@pytest.fixture
def bad_labels(tmp_path):
    f = tmp_path / "bad.tsv"
    f.write_text("text\tlabel\ngood film\t1\nbad film\t0\nodd film\t7\n")
    return f


def cases(tmp_path, fake_model, bad_labels):
    missing = tmp_path / "missing.tsv"
    bad_recipe = tmp_path / "bad.yaml"
    bad_recipe.write_text("passes:\n  - prune: {sparsity: 1.5}\n")
    broken_meta = tmp_path / "broken"
    broken_meta.mkdir()
    (broken_meta / "model.keras").write_bytes(b"")
    (broken_meta / "metadata.json").write_text("{not json")
    out = tmp_path / "out"
    one_class = tmp_path / "one_class.tsv"
    one_class.write_text("text\tlabel\n" + "".join(f"film {i}\t1\n" for i in range(20)))
    dup = tmp_path / "dup.tsv"
    dup.write_text("text\ttext\tlabel\na\tb\t1\nc\td\t0\n")
    good = tmp_path / "good.tsv"
    good.write_text("text\tlabel\n" + "".join(f"film {i}\t{i % 2}\n" for i in range(20)))
    big_vocab = tmp_path / "big_vocab"
    big_vocab.mkdir()
    (big_vocab / "model.keras").write_bytes(b"")
    (big_vocab / "vocab.txt").write_text("".join(f"t{i}\n" for i in range(30)))
    (big_vocab / "metadata.json").write_text(json.dumps({"format": "rmcompress.model", "task": "pointwise",
                                                         "loss": "bce", "arch": {"vocab_size": 20}}))
    bad_task = tmp_path / "bad_task"
    bad_task.mkdir()
    (bad_task / "model.keras").write_bytes(b"")
    (bad_task / "metadata.json").write_text(json.dumps({"format": "rmcompress.model", "task": "ranking"}))
    bad_arch = tmp_path / "bad_arch"
    bad_arch.mkdir()
    (bad_arch / "model.keras").write_bytes(b"")
    (bad_arch / "metadata.json").write_text(json.dumps({"format": "rmcompress.model", "task": "pointwise",
                                                        "arch": "big", "loss": ["bce"]}))
    bad_loss = tmp_path / "bad_loss"
    bad_loss.mkdir()
    (bad_loss / "model.keras").write_bytes(b"")
    (bad_loss / "metadata.json").write_text(json.dumps({"format": "rmcompress.model", "task": "pointwise",
                                                        "loss": 3, "complexity": None}))
    bad_regex = tmp_path / "regex.yaml"
    bad_regex.write_text("passes:\n  - prune: {sparsity: 0.5, layers: {include: ['block0_(ffn']}}\n")
    no_layer = tmp_path / "nolayer.yaml"
    no_layer.write_text("passes:\n  - prune: {sparsity: 0.5, layers: {include: ['^ffn_dense']}}\n")
    with zipfile.ZipFile(fake_model / "model.keras", "w") as z:  # the layers a .keras archive declares
        z.writestr("config.json", json.dumps({"config": {"layers": [{"config": {"name": n}} for n in
                                                                    ("token_ids", "token_embedding", "reward")]}}))
    t = ["train", "--task", "pointwise", "--out", out]
    return [
        (t + ["--data", good, "--learning-rate", "nan"], "argument --learning-rate: 'nan' is not a finite number"),
        (t + ["--data", good, "--weight-decay", "inf"], "argument --weight-decay: 'inf' is not a finite number"),
        (t + ["--data", good, "--seq-len", "0"], "--seq-len 0 must be >= 1"),
        (t + ["--data", good, "--seq-len", "100000"], "too large for this machine's"),
        (t + ["--data", good, "--warmup-fraction", "2"], "--warmup-fraction 2.0 must be in [0, 1]"),
        (t + ["--data", good, "--patience", "-1"], "--patience -1 must be >= 0"),
        (t + ["--data", good, "--heads", "0"], "--heads 0 must be >= 1"),
        (t + ["--data", good, "--heads", "3"], "--heads 3 must divide --width 64"),
        (t + ["--data", good, "--vocab-size", "3"], "--vocab-size 3 must be >= 64"),
        (t + ["--data", good, "--seed", "-1"], "--seed -1 must be in [0, 2147483647]"),
        (t + ["--data", good, "--arch", "foo"], "argument --arch: invalid choice: 'foo'"),
        (t + ["--data", one_class], "one_class.tsv: every label is 1 (20 rows)"),
        (t + ["--data", dup], "dup.tsv:1: column 'text' appears twice"),
        (["evaluate", "--model", big_vocab, "--data", good], "vocab.txt defines 30 token ids but"),
        (["export", "--model", big_vocab, "--out", out], "has a token table of 20 rows"),
        (["evaluate", "--model", bad_task, "--data", good], "bad_task/metadata.json: 'task' = 'ranking'"),
        (["evaluate", "--model", bad_arch, "--data", good], "bad_arch/metadata.json: 'arch' = 'big'; expected a JSON object"),
        (["compress", "--model", bad_arch, "--recipe", "light", "--data", good, "--out", out],
         "bad_arch/metadata.json: 'arch' = 'big'"),
        (["export", "--model", bad_loss, "--out", out], "bad_loss/metadata.json: 'loss' = '3'; expected a loss name"),
        (["compress", "--model", fake_model, "--recipe", bad_regex, "--data", good, "--out", out],
         "regex.yaml: passes[0].prune.layers.include[0]: 'block0_(ffn' is not a valid regular expression"),
        (["compress", "--model", fake_model, "--recipe", no_layer, "--data", good, "--out", out],
         "nolayer.yaml: passes[0].prune.layers.include[0]: '^ffn_dense' matches no layer of"),
        (["shrink", "--model", fake_model, "--out", out, "--budget-flops", "nan"], "'nan' is not a finite number"),
        (["evaluate", "--model", fake_model, "--data", good, "--max-examples", "0"], "--max-examples 0 must be >= 1"),
        (["evaluate", "--model", tmp_path / "nope", "--data", bad_labels], "nope: no such file or directory"),
        (["evaluate", "--model", fake_model, "--data", missing], "missing.tsv"),
        (["evaluate", "--model", fake_model, "--data", bad_labels], "bad.tsv"),
        (["evaluate", "--model", broken_meta, "--data", bad_labels], "metadata.json: invalid JSON"),
        (["compress", "--model", tmp_path / "nope", "--recipe", "light", "--data", bad_labels, "--out", out],
         "no such model directory"),
        (["compress", "--model", fake_model, "--recipe", bad_recipe, "--data", bad_labels, "--out", out],
         "bad.yaml"),
        (["compress", "--model", fake_model, "--recipe", "light", "--data", missing, "--out", out], "missing.tsv"),
        (["compress", "--model", fake_model, "--recipe", "light", "--data", bad_labels, "--out", out], "bad.tsv"),
        (["export", "--model", tmp_path / "nope", "--out", out], "no such model directory"),
        (["shrink", "--model", broken_meta, "--out", out], "metadata.json: invalid JSON"),
        (["train", "--task", "pointwise", "--data", good, "--out", "", "--overwrite"],
         "output path '' is empty (an unset shell variable?)"),
        (["export", "--model", fake_model, "--out", "", "--overwrite"], "output path '' is empty"),
        (["train", "--task", "pointwise", "--data", missing, "--out", out], "missing.tsv"),
        (["train", "--task", "pairwise", "--data", bad_labels, "--out", out], "bad.tsv"),
        (["train", "--task", "pointwise", "--loss", "bce", "--data", bad_labels, "--out", out], "bad.tsv"),
        (["train", "--task", "pointwise", "--data", bad_labels, "--val-fraction", "2", "--out", out],
         "--val-fraction 2.0 must be in [0, 1)"),
        (["train", "--task", "pointwise", "--data", bad_labels, "--val-data", missing, "--out", out],
         "missing.tsv"),
    ]


def test_bad_input_is_reported_before_tensorflow_loads(tmp_path, fake_model, bad_labels):
    for args, expected in cases(tmp_path, fake_model, bad_labels):
        rc, tf_loaded, err = run_cli(*args, cwd=tmp_path)
        assert rc == 2, (args, err)
        assert len(err.splitlines()) == 1 and expected in err, (args, err)
        assert not tf_loaded, f"{args[0]} loaded TensorFlow before reporting: {err}"
    assert not (tmp_path / "out").exists()


def test_help_loads_no_tensorflow(tmp_path):
    p = subprocess.run([sys.executable, "-c", "import sys\nfrom rmcompress.cli import build_parser\n"
                        "build_parser().format_help()\nprint('tensorflow' in sys.modules)"],
                       cwd=str(tmp_path), capture_output=True, text=True, timeout=60, env={"PYTHONPATH": str(ROOT)})
    assert p.stdout.strip() == "False", p.stderr
