"""What ``train`` and ``compress`` show while they train, and ``--tensorboard``: off a terminal a
plain line per epoch of every training pass (Keras' own, verbosity 2), a line per compression pass
with its wall time, nothing with ``--quiet`` (results and errors still print); TensorBoard logs of
every training pass, the complexity scalars among them, in a directory of their own."""
from __future__ import annotations

import json
import re

import pytest

from tests.helpers import TINY_TRAIN_FLAGS, event_tags, tiny_config

COMPLEXITY = ("expected_flops_fraction", "flops_gap", "lambda_flops", "lambda_flops_sq")


def _epoch_lines(out: str) -> list[str]:
    """Keras' plain per-epoch lines (``6/6 - 3s - loss: ...``)."""
    return [line for line in out.splitlines() if re.match(r"^\d+/\d+ - .* - loss: ", line)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, pointwise_file):
    from rmcompress.training.trainer import train

    return train(pointwise_file, tiny_config(arch="bow"), tmp_path_factory.mktemp("progress") / "m").out_dir


def test_train_prints_a_line_per_epoch_off_a_terminal_and_logs_to_tensorboard(cli, tmp_path, pointwise_file):
    rc, out, err = cli("train", "--data", pointwise_file, "--task", "pointwise", "--out", tmp_path / "m",
                       "--tensorboard", tmp_path / "tb", "--budget-flops", "0.5", *TINY_TRAIN_FLAGS)
    assert rc == 0, err
    lines = _epoch_lines(out)
    assert len(lines) == 2 and "flops_gap" in lines[0]  # the gated fit's epoch, then the shrunk model's fine-tuning
    assert "\r" not in out and "\b" not in out  # no progress bar redrawn in place
    assert f"wrote {tmp_path / 'm'}" in out
    runs = event_tags(tmp_path / "tb")
    for tag in COMPLEXITY:
        assert runs["train"].get(f"epoch_{tag}", 0) >= 1, tag
    assert "finetune/train" in runs and "complexity" in runs


def test_train_quiet_shows_no_progress_but_the_result(cli, tmp_path, pointwise_file):
    rc, out, err = cli("train", "--quiet", "--data", pointwise_file, "--task", "pointwise", "--out", tmp_path / "m",
                       *TINY_TRAIN_FLAGS)
    assert rc == 0, err
    assert _epoch_lines(out) == [] and "loss:" not in out + err
    assert f"wrote {tmp_path / 'm'}" in out and "accuracy" in out  # the result table still prints


def test_tensorboard_inside_the_output_is_refused_before_any_work(cli, tmp_path, pointwise_file):
    out = tmp_path / "m"
    rc, _, err = cli("train", "--data", pointwise_file, "--task", "pointwise", "--out", out,
                     "--tensorboard", out / "tb", *TINY_TRAIN_FLAGS)
    assert rc == 2 and err.strip().splitlines() == [
        f"rmcompress train: error: {out}: overlaps the output {out / 'tb'} of the same run; choose a path beside it"]
    assert list(tmp_path.iterdir()) == []


def test_compress_prints_each_pass_with_its_time_and_logs_each_training_pass(cli, tmp_path, model_dir,
                                                                              pointwise_file):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("passes:\n  - budget: {flops_fraction: 0.6, steps: 4, batch_size: 32}\n  - fuse\n"
                      "  - quantise: {mode: dynamic}\nexport: {latency_runs: 0}\n")
    rc, out, err = cli("compress", "--model", model_dir, "--recipe", recipe, "--data", pointwise_file,
                       "--out", tmp_path / "c", "--tensorboard", tmp_path / "tb")
    assert rc == 0, err
    timed = re.findall(r"^\[r\] pass (\w+): (\d+\.\d) s; validation accuracy (\d\.\d{4}) "
                       r"\(drop (-?\d+\.\d\d) points\)$", err, re.M)
    assert [t[0] for t in timed] == ["budget", "fuse", "quantise"]
    report = json.loads((tmp_path / "c" / "report.json").read_text())
    assert [f"{n['validation']['accuracy']:.4f}" for n in report["passes"]] == [t[2] for t in timed]
    assert len(_epoch_lines(out)) == 2  # the budget pass's gated fit and its fine-tuning
    runs = event_tags(tmp_path / "tb")
    assert set(runs) == {"01-budget/gated/train", "01-budget/gated/complexity", "01-budget/finetune/train"}
    for tag in COMPLEXITY:
        assert runs["01-budget/gated/train"].get(f"epoch_{tag}", 0) >= 1, tag
        assert runs["01-budget/gated/train"].get(f"batch_{tag}", 0) >= 1, tag
        assert runs["01-budget/gated/complexity"].get(f"complexity/{tag}", 0) >= 1, tag


def test_compress_quiet_shows_no_progress_and_no_pass_lines(cli, tmp_path, model_dir, pointwise_file):
    recipe = tmp_path / "q.yaml"
    recipe.write_text("passes:\n  - prune: {sparsity: 0.5, steps: 2}\nexport: {latency_runs: 0}\n")
    rc, out, err = cli("compress", "--quiet", "--model", model_dir, "--recipe", recipe, "--data", pointwise_file,
                       "--out", tmp_path / "c")
    assert rc == 0, err
    assert _epoch_lines(out) == [] and "pass prune" not in err and err.strip() == ""
    assert f"wrote {tmp_path / 'c'}" in out
