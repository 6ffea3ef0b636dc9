"""``train --resume``: a run killed after epoch N continues from there and ends where an
uninterrupted run ends (same seed), with the interrupted run's vocabulary."""
from __future__ import annotations

import json
import signal

import pytest

from tests.helpers import TINY_TRAIN_FLAGS, rmcompress_subprocess, tiny_config

EPOCHS = 4
# no dropout: then the resumed run sees exactly the same computation as the uninterrupted one
# (360 training rows / batch 64 = 6 steps an epoch; --max-steps caps the total, not each epoch)
FLAGS = [*TINY_TRAIN_FLAGS, "--epochs", str(EPOCHS), "--max-steps", str(EPOCHS * 6), "--batch-size", "64",
         "--dropout", "0", "--patience", "3"]


def _cfg():
    return tiny_config(epochs=EPOCHS, max_steps=EPOCHS * 6, batch_size=64, dropout=0.0, patience=3)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, pointwise_file):
    """An uninterrupted run (in this process)."""
    from rmcompress.training.trainer import train

    out = tmp_path_factory.mktemp("ref") / "model"
    return train(pointwise_file, _cfg(), out, verbose=0)


def test_reference_runs_all_epochs(reference):
    assert reference.report["epochs_run"] == EPOCHS
    # The best validation epoch comes before the kills below, so a resumed run only ends with the
    # reference's (restored best) weights if early stopping's state survived the interruption.
    acc = reference.history["val_accuracy"]
    assert acc.index(max(acc)) < 2 and max(acc) > acc[-1]


@pytest.mark.parametrize("kill_at, done", [("train:epoch_end:2", 2), ("train:after_fit", EPOCHS)])
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, pointwise_file, reference, cli, kill_at, done):
    from rmcompress.training.resume import backup_dir_for

    out = tmp_path / "model"
    backup = backup_dir_for(out)
    killed = rmcompress_subprocess("train", "--data", pointwise_file, "--task", "pointwise", "--out", out,
                                   *FLAGS, kill_at=kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not out.exists()
    assert (backup / "manifest.json").is_file() and (backup / "tokenizer" / "vocab.txt").is_file()
    vocab_before = (backup / "tokenizer" / "vocab.txt").read_text()

    # without --resume the leftover backup is refused (one line, exit 2)
    rc, _, err = cli("train", "--data", pointwise_file, "--task", "pointwise", "--out", out, *FLAGS)
    assert rc == 2 and "--resume" in err and str(backup) in err and len(err.strip().splitlines()) == 1

    # with different settings, resuming is refused, naming the setting
    rc, _, err = cli("train", "--data", pointwise_file, "--task", "pointwise", "--out", out, *FLAGS,
                     "--learning-rate", "0.01", "--resume")
    assert rc == 2 and "learning_rate" in err

    rc, _, err = cli("train", "--data", pointwise_file, "--task", "pointwise", "--out", out, *FLAGS, "--resume")
    assert rc == 0, err
    assert "resuming" in err and f"after epoch {done}" in err
    assert not backup.exists(), "the backup is removed once the model directory is complete"
    assert (out / "vocab.txt").read_text() == vocab_before

    report = json.loads((out / "report.json").read_text())
    assert report["resumed_after_epoch"] == done
    assert report["epochs_run"] == EPOCHS
    ref = reference.report
    assert report["accuracy"] == pytest.approx(ref["accuracy"], abs=1e-6)
    assert report["auc"] == pytest.approx(ref["auc"], abs=1e-4)
    ref_hist = reference.history["val_task_loss"]
    import pandas as pd

    hist = pd.read_csv(out / "history.csv")
    assert len(hist) == EPOCHS
    assert hist["val_task_loss"].tolist() == pytest.approx(ref_hist, rel=1e-4, abs=1e-5)

    from rmcompress.models.modeldir import load_model_dir

    bundle = load_model_dir(out)
    import numpy as np

    ids = reference.val_data.ids[:32]
    np.testing.assert_allclose(bundle.model.predict(ids, verbose=0), reference.bundle.model.predict(ids, verbose=0),
                               atol=1e-4)


def test_resume_without_backup_trains_from_scratch(tmp_path, pointwise_file, cli):
    out = tmp_path / "m"
    rc, _, err = cli("train", "--data", pointwise_file, "--task", "pointwise", "--out", out, *TINY_TRAIN_FLAGS,
                     "--resume")
    assert rc == 0, err
    assert "no interrupted run" in err
    assert (out / "model.keras").is_file()


def test_resume_refuses_different_data(tmp_path, pointwise_file, cli):
    """A backup from other data is not continued (the fingerprint covers texts and labels)."""
    from rmcompress.training.resume import Backup, backup_dir_for
    from rmcompress.data.loaders import load_data
    from rmcompress.data.tokenizer import Tokenizer

    out = tmp_path / "m"
    data = load_data(pointwise_file, "pointwise")
    cfg = tiny_config()
    settings = {**cfg.flat_dict(), "metadata_extra": {}, "training_model": None}
    bk = Backup(backup_dir_for(out))
    bk.start(Tokenizer(["[PAD]", "[UNK]", "a"]), settings, "not-the-same-data", str(pointwise_file))
    rc, _, err = cli("train", "--data", pointwise_file, "--task", "pointwise", "--out", out, *TINY_TRAIN_FLAGS,
                     "--resume")
    assert rc == 2 and "data differs" in err
    assert len(data) > 0


def test_ctrl_c_keeps_the_backup_and_says_how_to_resume(tmp_path, pointwise_file, default_sigint):
    """SIGINT (Ctrl-C) mid-training: exit 130, one line naming --resume, no model directory."""
    import os
    import subprocess
    import sys
    import time

    from tests.helpers import ROOT
    from rmcompress.fileio import backup_dir_for

    out = tmp_path / "model"
    backup = backup_dir_for(out)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("RMCOMPRESS_KILL_AT", None)
    flags = [a for a in TINY_TRAIN_FLAGS]
    flags[flags.index("--epochs") + 1] = "500"
    flags[flags.index("--max-steps") + 1] = "100000"
    proc = subprocess.Popen([sys.executable, "-m", "rmcompress", "train", "--data", str(pointwise_file), "--task",
                             "pointwise", "--out", str(out), *flags], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.time()
        while not (backup / "state-0.json").exists() and proc.poll() is None and time.time() - t0 < 240:
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("rmcompress train: interrupted; continue from the last "
                                                   "completed epoch with the same command and --resume"), err
    assert not out.exists() and (backup / "manifest.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".rmc-tmp-")]


def test_strategies_keras_cannot_back_up_train_without_a_backup(tmp_path, pointwise_file):
    from rmcompress._keras import tf
    from rmcompress.errors import UsageError
    from rmcompress.training.trainer import train

    one = tf.distribute.OneDeviceStrategy("/cpu:0")
    result = train(pointwise_file, tiny_config(), tmp_path / "m", verbose=0, strategy=one)
    assert (tmp_path / "m" / "model.keras").is_file() and result.report["epochs_run"] == 1
    with pytest.raises(UsageError, match="--resume needs .* OneDeviceStrategy"):
        train(pointwise_file, tiny_config(), tmp_path / "m2", verbose=0, strategy=one, resume=True)


def test_entry_exits_at_once_after_an_interrupt(monkeypatch):
    """The executable's entry point: after Ctrl-C (130) it leaves through ``os._exit`` (no
    interpreter shutdown to wait on TensorFlow threads); other statuses through SystemExit."""
    from rmcompress import cli

    class Exited(Exception):
        pass

    def fake_exit(code):
        raise Exited(code)

    monkeypatch.setattr(cli.os, "_exit", fake_exit)
    monkeypatch.setattr(cli, "main", lambda: cli.INTERRUPTED)
    with pytest.raises(Exited, match="130"):
        cli.entry()
    monkeypatch.setattr(cli, "main", lambda: 2)
    with pytest.raises(SystemExit) as e:
        cli.entry()
    assert e.value.code == 2
