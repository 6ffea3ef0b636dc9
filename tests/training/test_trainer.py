"""Training end to end on tiny data: reports, model directories, both tasks, loss choice."""
import json

import numpy as np
import pandas as pd
import pytest

from rmcompress.models.modeldir import load_model_dir, load_samples
from rmcompress.training.trainer import train

from tests.helpers import tiny_config

REPORT_KEYS = {"task", "n_examples", "flops", "params", "size_bytes", "size_gzip_bytes"}


@pytest.mark.parametrize("name", ["transformer", "cnn", "bow", "pairwise"])
def test_model_directory_is_complete(trained_models, name):
    res = trained_models[name]
    d = res.out_dir
    for f in ("model.keras", "vocab.txt", "tokenizer.json", "metadata.json", "report.json", "samples.npz", "history.csv"):
        assert (d / f).is_file(), f
    report = json.loads((d / "report.json").read_text())
    assert REPORT_KEYS <= set(report)
    key = "pairwise_accuracy" if name == "pairwise" else "accuracy"
    assert 0.0 <= report[key] <= 1.0
    bundle = load_model_dir(d)
    assert bundle.task == ("pairwise" if name == "pairwise" else "pointwise")
    ids = load_samples(d)["validation_ids"]
    np.testing.assert_allclose(bundle.model.predict(ids, verbose=0), res.bundle.model.predict(ids, verbose=0), atol=1e-6)


def test_pairwise_truncation_keeps_the_end(trained_models):
    assert trained_models["pairwise"].bundle.tokenizer.config.keep == "end"
    assert trained_models["transformer"].bundle.tokenizer.config.keep == "start"


def test_learns_the_demo_task(pointwise_file):
    res = train(pointwise_file, tiny_config(arch="cnn", max_steps=None, epochs=10, batch_size=16, learning_rate=5e-3),
                None, verbose=0)
    assert res.report["accuracy"] > 0.7  # chance is ~0.5


def test_real_valued_scores_use_mse(tmp_path):
    rng = np.random.RandomState(0)
    words = ["good", "bad", "fine", "poor"]
    texts = [" ".join(rng.choice(words, 4)) for _ in range(120)]
    scores = [t.count("good") - t.count("bad") + 0.5 for t in texts]
    pd.DataFrame({"text": texts, "score": scores}).to_csv(tmp_path / "s.csv", index=False)
    res = train(tmp_path / "s.csv", tiny_config(arch="bow"), None, verbose=0)
    assert res.report["loss"] == "mse" and "mae" in res.report
    res = train(tmp_path / "s.csv", tiny_config(arch="bow", loss="mae"), None, verbose=0)
    assert res.report["loss"] == "mae"


def test_early_stopping_restores_best(pointwise_file):
    res = train(pointwise_file, tiny_config(arch="bow", max_steps=None, epochs=6, patience=1, learning_rate=0.3),
                None, verbose=0)
    hist = res.history["val_accuracy"]
    assert res.report["epochs_run"] == len(hist)
    assert res.report["accuracy"] == pytest.approx(max(hist), abs=1e-6)


def test_head_hidden_reaches_the_architecture_and_is_refused_elsewhere():
    from rmcompress.errors import UsageError
    from rmcompress.training.trainer import TrainConfig, arch_config

    cfg = TrainConfig.from_flat(arch="transformer", head_hidden=8)
    assert arch_config(cfg, 100).head_hidden == 8
    assert arch_config(TrainConfig.from_flat(arch="transformer"), 100).head_hidden == 0
    with pytest.raises(UsageError, match="--head-hidden"):
        TrainConfig.from_flat(arch="bow", head_hidden=8)
    with pytest.raises(UsageError, match="--head-hidden"):
        TrainConfig.from_flat(arch="transformer", head_hidden=-1)


def test_a_budget_run_shows_nothing_by_default_and_logs_its_fits_to_tensorboard(tmp_path, pointwise_file, capfd):
    from rmcompress.errors import UsageError
    from rmcompress.ownership import MANIFEST
    from tests.helpers import event_tags

    tb = tmp_path / "tb"
    train(pointwise_file, tiny_config(arch="bow", budget_flops=0.5), tmp_path / "m", tensorboard=tb)
    assert "loss:" not in capfd.readouterr().out  # the Python API prints no progress unless asked
    runs = event_tags(tb)
    assert {"train", "validation", "complexity", "finetune/train"} <= set(runs)
    for tag in ("expected_flops_fraction", "flops_gap", "lambda_flops", "lambda_flops_sq"):
        assert runs["train"].get(f"epoch_{tag}", 0) >= 1 and runs["train"].get(f"batch_{tag}", 0) >= 1, tag
        assert runs["complexity"].get(f"complexity_epoch/{tag}", 0) >= 1, tag
    assert runs["finetune/train"]["epoch_loss"] == 1 and (tb / MANIFEST).is_file()
    with pytest.raises(UsageError, match=rf"^{tb}: already exists; pass --overwrite"):
        train(pointwise_file, tiny_config(arch="bow"), tmp_path / "m2", tensorboard=tb)
    assert not (tmp_path / "m2").exists()
    train(pointwise_file, tiny_config(arch="bow"), tmp_path / "m2", tensorboard=tb, overwrite=True)
    assert "complexity" not in event_tags(tb)  # replaced: the ungated run's logs only
