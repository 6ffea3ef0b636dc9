"""Complexity-aware training end to end: ``train()`` with budgets, the CLI (``train --budget-flops``,
``train --gated --no-shrink`` + ``shrink``), and ``budget_compress`` for the compression recipes."""
from __future__ import annotations

import json

import numpy as np
import pytest

from rmcompress.cli import main
from rmcompress.models.structure import count
from rmcompress.cost.registry import is_gated
from rmcompress.models.archconfig import ArchConfig
from rmcompress.models.architectures import build_reward_model
from rmcompress.models.modeldir import load_model_dir, load_samples
from tests.helpers import tiny_config


def test_train_with_flops_budget_lands_on_budget_and_shrinks(tmp_path, pointwise_file):
    from rmcompress.training.trainer import train

    cfg = tiny_config(arch="cnn", budget_flops=0.4, max_steps=20, gate_learning_rate=0.2)
    r = train(pointwise_file, cfg, tmp_path / "m", verbose=0)
    rep = r.report
    for key in ("dense_flops", "dense_params", "flops", "params", "budget_flops", "flops_fraction",
                "shrink_max_abs_diff", "finetune_steps", "accuracy"):
        assert key in rep, key
    assert rep["budget_flops"] == 0.4
    assert 0.4 * 0.95 <= rep["flops"] / rep["dense_flops"] <= 0.4
    assert rep["shrink_max_abs_diff"] <= 1e-5
    bundle = load_model_dir(tmp_path / "m")
    assert not is_gated(bundle.model)
    assert count(bundle.model).flops == rep["flops"] == json.loads((tmp_path / "m/report.json").read_text())["flops"]
    assert sum(bundle.metadata["arch"]["filters"]) < 3 * 8 or bundle.metadata["arch"]["width"] < 16
    assert (tmp_path / "m/complexity_log.csv").is_file()


def test_train_penalty_mode_pairwise(tmp_path, pairwise_file):
    from rmcompress.training.trainer import train

    cfg = tiny_config(task="pairwise", arch="bow", flops_weight=1.0, params_weight=0.5, max_steps=8)
    r = train(pairwise_file, cfg, None, verbose=0)
    assert r.report["flops_weight"] == 1.0 and r.report["params_weight"] == 0.5
    assert "pairwise_accuracy" in r.report and r.report["flops"] <= r.report["dense_flops"]
    assert "vocab" in {layer.name[5:] for layer in r.training_model.scorer.layers if layer.name.startswith("gate_")}


def test_cli_train_budget_then_export(tmp_path, pointwise_file, capsys):
    out = tmp_path / "budget"
    rc = main(["train", "--data", str(pointwise_file), "--task", "pointwise", "--out", str(out),
               "--arch", "transformer", "--width", "16", "--depth", "2", "--heads", "2", "--ffn", "16",
               "--seq-len", "16", "--vocab-size", "200", "--max-steps", "12", "--batch-size", "32",
               "--budget-flops", "0.25", "--patience", "0"])
    assert rc == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["budget_flops"] == 0.25 and rep["flops"] <= 0.25 * rep["dense_flops"]
    assert rep["flops"] == count(load_model_dir(out).model).flops


def test_cli_no_shrink_then_shrink_command(tmp_path, pointwise_file):
    gated_dir, small_dir = tmp_path / "gated", tmp_path / "small"
    rc = main(["train", "--data", str(pointwise_file), "--task", "pointwise", "--out", str(gated_dir),
               "--arch", "bow", "--width", "16", "--hidden", "16", "--seq-len", "16", "--vocab-size", "200",
               "--max-steps", "6", "--gated", "--no-shrink", "--patience", "0"])
    assert rc == 0
    gated = load_model_dir(gated_dir).model
    assert is_gated(gated)
    assert main(["shrink", "--model", str(gated_dir), "--out", str(small_dir), "--budget-flops", "0.5"]) == 0
    rep = json.loads((small_dir / "report.json").read_text())
    assert rep["flops"] <= 0.5 * rep["dense_flops"] and rep["shrink_max_abs_diff"] <= 1e-5
    small = load_model_dir(small_dir)
    assert not is_gated(small.model) and small.metadata["complexity"]["flops"] == rep["flops"]
    ids = load_samples(small_dir)["validation_ids"]
    assert len(ids)
    # shrinking a plain model: exit code 2 with a one-line error
    assert main(["shrink", "--model", str(small_dir), "--out", str(tmp_path / "again")]) == 2


def test_cli_cnn_kernel_widths_budget_run(tmp_path, pointwise_file, cli, capsys):
    """``--kernel-sizes 1,2,4``: one branch per width in the dense model, kept through the budget run
    and shrinking; bad widths are one-line errors naming the flag or the setting."""
    out = tmp_path / "k"
    rc, _, _ = cli("train", "--data", pointwise_file, "--task", "pointwise", "--out", out, "--arch", "cnn",
               "--width", "16", "--filters", "8", "--kernel-sizes", "1,2,4", "--seq-len", "16", "--vocab-size",
               "200", "--max-steps", "12", "--batch-size", "32", "--budget-flops", "0.3", "--patience", "0")
    assert rc == 0
    bundle = load_model_dir(out)
    assert bundle.metadata["arch"]["kernel_sizes"] == [1, 2, 4]
    assert bundle.metadata["train_config"]["kernel_sizes"] == [1, 2, 4]
    rep = json.loads((out / "report.json").read_text())
    dense = ArchConfig(arch="cnn", vocab_size=bundle.metadata["arch"]["vocab_size"], seq_len=16, width=16,
                       filters=8, kernel_sizes=[1, 2, 4])
    assert rep["dense_flops"] == count(build_reward_model(dense)).flops and rep["flops"] <= 0.3 * rep["dense_flops"]
    with pytest.raises(SystemExit):
        cli("train", "--data", pointwise_file, "--out", tmp_path / "bad", "--kernel-sizes", "3,x")
    assert "--kernel-sizes: '3,x': expected comma-separated integers" in capsys.readouterr().err
    rc, _, err = cli("train", "--data", pointwise_file, "--task", "pointwise", "--out", tmp_path / "dup",
                     "--arch", "cnn", "--kernel-sizes", "3,3", "--max-steps", "2")
    assert rc == 2 and "kernel_sizes=[3, 3]" in err and not (tmp_path / "dup").exists()


def test_budget_flags_must_be_fractions(tmp_path, pointwise_file, capsys):
    rc = main(["train", "--data", str(pointwise_file), "--task", "pointwise", "--out", str(tmp_path / "x"),
               "--budget-flops", "25"])
    assert rc == 2 and "budget-flops" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["flops", "params"])
def test_budget_compress_on_a_trained_model(trained_models, kind):
    from rmcompress.training.budget import budget_compress

    src = trained_models["transformer"]
    kw = {"flops_fraction": 0.3} if kind == "flops" else {"params_fraction": 0.5}
    out = budget_compress(src.bundle, src.train_data, src.val_data, steps=12, batch_size=32, **kw)
    rep = out.report
    frac = rep[f"{kind}_fraction"]
    assert frac <= kw[f"{kind}_fraction"] + 1e-9 and frac >= 0.9 * kw[f"{kind}_fraction"]
    assert rep["dense_flops"] == count(src.bundle.model).flops
    assert count(out.model).as_dict() == {"flops": rep["flops"], "params": rep["params"]}
    assert out.tokenizer is src.bundle.tokenizer and out.metadata["complexity"]["flops"] == rep["flops"]
    assert out.metadata["arch"] != src.bundle.metadata["arch"]
    assert "accuracy" in rep and rep["shrink_max_abs_diff"] <= 1e-5
    assert np.isfinite(out.model.predict(src.val_data.ids[:4], verbose=0)).all()


@pytest.mark.parametrize("name", ["transformer", "pairwise"])
def test_budget_compress_self_distillation_pulls_the_student_to_the_source(trained_models, name):
    """``distill_weight`` trains the shrunk model to match the source model's rewards (pairwise: its
    margins): with a high weight the student ends closer to the source than with labels alone."""
    from rmcompress.training.budget import budget_compress, with_teacher_targets

    src = trained_models[name]
    data = with_teacher_targets(src.bundle.model, src.train_data)
    assert data.teacher.shape == (len(src.train_data),) and data.labeled.min() == 1.0
    gaps = {}
    for w in (0.0, 0.95):
        out = budget_compress(src.bundle, src.train_data, src.val_data, flops_fraction=0.5, steps=40,
                              batch_size=32, distill_weight=w, learning_rate=3e-3)
        assert out.report["distill_weight"] == w
        if data.task == "pairwise":
            got = (out.model.predict(data.chosen, verbose=0) - out.model.predict(data.rejected, verbose=0)).ravel()
        else:
            got = out.model.predict(data.ids, verbose=0).ravel()
        gaps[w] = float(np.mean((got - data.teacher) ** 2))
    assert gaps[0.95] < gaps[0.0], gaps


@pytest.mark.parametrize("method", ["gates", "taylor"])
def test_budget_compress_with_width_chooses_the_residual_width_too(trained_models, method):
    """``width=True``: the residual width competes with heads, FFN units and blocks for the budget;
    the shrunk transformer is narrower, lands on the budget and its count is exact."""
    from rmcompress.training.budget import budget_compress

    src = trained_models["transformer"]
    dense_width = src.bundle.metadata["arch"]["width"]
    out = budget_compress(src.bundle, src.train_data, src.val_data, flops_fraction=0.3, steps=12, batch_size=32,
                          method=method, width=True)
    rep = out.report
    assert rep["flops_fraction"] <= 0.3 + 1e-9 and count(out.model).as_dict() == {"flops": rep["flops"],
                                                                                  "params": rep["params"]}
    widths = {int(layer.gamma.shape[0]) for layer in out.model.layers if type(layer).__name__ == "LayerNormalization"}
    assert widths == {out.model.get_layer("token_embedding").output_dim}
    if method == "gates":  # gated training: closed channels leave, the shrink is exact
        assert rep["shrink_max_abs_diff"] <= 1e-5
    assert np.isfinite(out.model.predict(src.val_data.ids[:4], verbose=0)).all()
    kept = out.model.get_layer("token_embedding").output_dim
    assert kept <= dense_width
    with pytest.raises(Exception, match="distill_features"):
        budget_compress(src.bundle, src.train_data, src.val_data, flops_fraction=0.3, steps=4, width=True,
                        distill_features=1.0)


@pytest.mark.parametrize("method, width", [("taylor", True), ("gates", False)])
def test_budget_compress_with_block_distillation(trained_models, method, width):
    """``distill_blocks``: the pruned (and, with ``width``, narrower) model trains against the source's
    hidden states; the report records the weight; a layer the source lacks stops it naming the layer."""
    from rmcompress.errors import UsageError
    from rmcompress.training.budget import budget_compress

    src = trained_models["transformer"]
    out = budget_compress(src.bundle, src.train_data, src.val_data, flops_fraction=0.4, steps=6, batch_size=32,
                          method=method, stages=2, width=width, distill_weight=0.5, distill_blocks=1.0)
    assert out.report["distill_blocks"] == 1.0 and out.report["flops_fraction"] <= 0.4 + 1e-9
    assert np.isfinite(out.model.predict(src.val_data.ids[:4], verbose=0)).all()
    with pytest.raises(UsageError, match="'nope'"):
        budget_compress(src.bundle, src.train_data, src.val_data, flops_fraction=0.4, steps=2, method=method,
                        distill_blocks=1.0, distill_block_layers=["nope"])
