"""Fine-tuning a bridged backbone (both tasks), --init copies, the CLI, and export of the result."""
from __future__ import annotations

import json

import numpy as np
import pytest

from rmcompress.data import synthetic as S
from tests.helpers import WORDS, pretrained_config

pytestmark = pytest.mark.slow  # pretrained backbones


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    from rmcompress.models.backbones import save_random_preset

    return save_random_preset(tmp_path_factory.mktemp("preset") / "bert", WORDS, hidden_dim=16,
                              num_layers=2, num_heads=2, intermediate_dim=32, scale=0.02)



@pytest.fixture(scope="module")
def finetuned(preset, pointwise_file, tmp_path_factory):
    from rmcompress.training.trainer import train

    return train(pointwise_file, pretrained_config(backbone=str(preset), learning_rate=1e-2, max_steps=30, dropout=0.0),
                 tmp_path_factory.mktemp("ft") / "model", verbose=0)


def test_finetune_pointwise_backbone_learns_and_saves(finetuned, preset):
    from rmcompress.models.modeldir import load_model_dir

    r = finetuned
    assert r.report["arch"] == "bert" and r.report["vocab_size"] == r.bundle.tokenizer.vocab_size
    assert r.report["accuracy"] >= 0.65 and r.history["accuracy"][-1] > 0.7  # 30 steps, synthetic data
    back = load_model_dir(r.out_dir)
    meta = back.metadata
    assert meta["backbone"]["family"] == "BertBackbone" and meta["arch"]["arch"] == "bert"
    assert meta["train_config"]["backbone"] == str(preset)
    assert json.loads((r.out_dir / "tokenizer_settings.json").read_text())["mode"] == "bert"
    ids = back.tokenizer.encode(["the film is really good", "i hated this movie"])
    assert (ids[:, 0] == back.tokenizer.special_ids()["cls"]).all()
    np.testing.assert_allclose(back.model.predict(ids, verbose=0), r.bundle.model.predict(ids, verbose=0), atol=1e-6)


def test_backbone_training_uses_adamw_with_warmup_and_small_default_rate(preset, pointwise_file):
    from rmcompress._keras import keras
    from rmcompress.training.trainer import TrainConfig, train

    assert TrainConfig.from_flat(backbone="x").optim.learning_rate == 3e-5 and TrainConfig().optim.learning_rate == 1e-3
    r = train(pointwise_file, pretrained_config(backbone=str(preset), max_steps=4, warmup_fraction=0.5), verbose=0)
    opt = r.training_model.optimizer
    assert isinstance(opt, keras.optimizers.AdamW)
    sched = opt.learning_rate if callable(getattr(opt, "learning_rate", None)) else opt._learning_rate
    rates = [float(sched(s)) for s in (0, 1, 2, 3)]
    assert rates[0] < rates[1] <= rates[2] and rates[2] == pytest.approx(3e-5, rel=1e-3)


def test_finetune_pairwise_backbone_keeps_the_end(preset, pairwise_file):
    from rmcompress.training.trainer import train

    r = train(pairwise_file, pretrained_config(task="pairwise", backbone=str(preset), learning_rate=3e-3, max_steps=10), verbose=0)
    assert r.report["task"] == "pairwise" and "pairwise_accuracy" in r.report
    tok = r.bundle.tokenizer
    assert tok.config.keep == "end" and tok.mode == "bert"
    long = "how do i " + " ".join(["bake bread"] * 20) + " happy to help"
    row = tok.encode([long])[0]
    assert tok.decode(row[-4:-1]) == "happy to help"


def test_init_copies_a_model_directory(finetuned, pointwise_file):
    from rmcompress.training.sources import scorer_source

    cfg = pretrained_config(init=str(finetuned.out_dir))
    assert cfg.optim.learning_rate == 3e-5
    src = scorer_source(cfg, "pointwise")
    copy = src.build()
    ids = src.tokenizer.encode(["a good film", "a dull plot"])
    np.testing.assert_allclose(copy.predict(ids, verbose=0), finetuned.bundle.model.predict(ids, verbose=0), atol=1e-6)
    assert copy.get_layer("block0_attn") is not finetuned.bundle.model.get_layer("block0_attn")


def test_export_finetuned_backbone_savedmodel_and_tflite(finetuned, tmp_path):
    from rmcompress.evaluation.evaluate import evaluate
    from rmcompress.export.exporter import export_model
    from rmcompress.runtime.savedmodel import SavedModelRunner

    rep = export_model(finetuned.out_dir, tmp_path / "exp", latency_runs=5)
    assert rep["parity_max_abs_diff"] <= 1e-4 and rep["savedmodel_parity_max_abs_diff"] <= 1e-4
    files = {p.name for p in (tmp_path / "exp").iterdir()}
    assert {"model.tflite", "saved_model", "vocab.txt", "tokenizer.json", "metadata.json"} <= files
    meta = json.loads((tmp_path / "exp" / "metadata.json").read_text())
    assert meta["tokenizer_mode"] == "bert" and meta["special_ids"]["cls"] == 5
    texts = ["the film is really good", "i hated this movie", ""]
    sm = SavedModelRunner(tmp_path / "exp" / "saved_model")
    keras_scores = finetuned.bundle.model.predict(finetuned.bundle.tokenizer.encode(texts), verbose=0).reshape(-1)
    np.testing.assert_allclose(sm.score_text(texts), keras_scores, atol=1e-5)
    ev = evaluate(tmp_path / "exp" / "model.tflite", finetuned.bundle.metadata["data"], latency_runs=0)
    assert ev["accuracy"] > 0.65


def test_exact_gelu_backbone_exports_to_tflite(tmp_path, pointwise_file):
    """DistilBERT (erf GELU) through the same path: the float TFLite file matches Keras."""
    from rmcompress.export.exporter import export_model
    from rmcompress.models.backbones import save_random_preset
    from rmcompress.training.trainer import train

    d = save_random_preset(tmp_path / "distil", WORDS, family="distil_bert", scale=0.1)
    r = train(pointwise_file, pretrained_config(backbone=str(d), max_steps=2), tmp_path / "m", verbose=0)
    assert r.bundle.metadata["arch"]["activation"] == "gelu"
    rep = export_model(r.out_dir, tmp_path / "exp", formats="tflite", latency_runs=0)
    assert rep["parity_max_abs_diff"] <= 1e-4


def test_cli_train_backbone_and_bad_backbone(preset, pointwise_file, tmp_path, capsys):
    from rmcompress.cli import main

    # --verbose: in-process, the CLI must not redirect this test process's stderr
    rc = main(["train", "--verbose", "--data", str(pointwise_file), "--task", "pointwise", "--out", str(tmp_path / "m"),
               "--backbone", str(preset), "--seq-len", "16", "--max-steps", "2", "--batch-size", "16",
               "--patience", "0"])
    assert rc == 0 and (tmp_path / "m" / "model.keras").is_file()
    capsys.readouterr()
    rc = main(["train", "--verbose", "--data", str(pointwise_file), "--task", "pointwise", "--out", str(tmp_path / "m2"),
               "--backbone", str(tmp_path / "missing" / "dir")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "no such backbone folder" in err[0]
    rc = main(["train", "--verbose", "--data", str(pointwise_file), "--task", "pointwise", "--out", str(tmp_path / "m3"),
               "--unlabeled", str(pointwise_file)])
    assert rc == 2 and "--unlabeled needs --teacher" in capsys.readouterr().err
