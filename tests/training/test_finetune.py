"""The one fit loop shows the run's progress and logs every fit to TensorBoard: Keras' verbosity
(nothing, or a plain line per epoch off a terminal) and Keras' own TensorBoard callback in the
fit's directory, with the complexity metrics as scalars."""
from __future__ import annotations

import numpy as np

from rmcompress._keras import keras, tf
from rmcompress.config.progress import Progress
from rmcompress.models.archconfig import ArchConfig
from rmcompress.models.architectures import build_reward_model
from rmcompress.training.complexity_model import ComplexityAwareModel
from rmcompress.training.finetune import fit_model
from tests.helpers import event_tags

CFG = dict(vocab_size=80, seq_len=16, width=8, depth=1, heads=2, head_dim=4, ffn=8, hidden=8, dropout=0.0)


def _ds():
    rng = np.random.RandomState(0)
    ids = rng.randint(1, 80, (64, 16)).astype("int32")
    return tf.data.Dataset.from_tensor_slices((ids, (ids[:, 0] % 2).astype("float32"))).batch(16).repeat()


def _model():
    keras.utils.set_random_seed(0)
    model = ComplexityAwareModel(build_reward_model(ArchConfig(arch="bow", **CFG)), budget_flops=0.5)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    return model


def test_silent_by_default_and_a_plain_line_per_epoch_at_verbosity_2(capfd):
    fit_model(_model(), _ds(), 3, 2)
    assert capfd.readouterr().out == ""
    fit_model(_model(), _ds(), 3, 2, progress=Progress(2))
    out = capfd.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("3/3 - ")]
    assert len(lines) == 2 and "expected_flops_fraction" in lines[0]  # one line per epoch, metrics on it
    assert "\r" not in out and "\b" not in out and "=====" not in out  # no bar redrawn in place


def test_tensorboard_logs_every_metric_with_the_complexity_scalars(tmp_path):
    fit_model(_model(), _ds(), 3, 2, validation_data=_ds().take(1), progress=Progress(0, tmp_path / "fit"))
    runs = event_tags(tmp_path / "fit")
    assert set(runs) == {"train", "validation"}
    for tag in ("epoch_loss", "epoch_expected_flops_fraction", "epoch_flops_gap", "epoch_lambda_flops",
                "epoch_lambda_flops_sq", "epoch_expected_params_fraction"):
        assert runs["train"].get(tag) == 2, tag  # one value per epoch
    assert runs["train"]["batch_flops_gap"] == 6  # every step of a fit shorter than TENSORBOARD_POINTS
    assert runs["validation"]["epoch_flops_gap"] == 2
