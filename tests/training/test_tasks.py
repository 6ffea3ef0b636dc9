"""Task objects, loss terms composed on one training model, and the one fit loop."""
import re
from pathlib import Path

import numpy as np
import pytest

from rmcompress._keras import keras, tf
from rmcompress.errors import UsageError
from rmcompress.training.tasks import PairwiseTask, PointwiseTask, make_task


def test_make_task_picks_the_loss_and_the_metrics():
    assert isinstance(make_task("pointwise"), PointwiseTask) and make_task("pointwise").loss == "bce"
    assert make_task("pointwise", label_kind="real").loss == "mse"
    assert make_task("pointwise", "mae", label_kind="binary").loss == "mae"
    pw = make_task("pairwise", "bce", center_coefficient=0.5)
    assert isinstance(pw, PairwiseTask) and pw.loss == "pairwise" and pw.center_coefficient == 0.5
    assert make_task("pointwise").quality_names == ("accuracy",) and make_task("pointwise", "mse").quality_names == ("mae",)
    assert pw.quality_names == ("pairwise_accuracy", "mean_margin")
    assert make_task("pointwise").monitor() == ("val_accuracy", "max")
    assert make_task("pointwise", "mse").monitor() == ("val_task_loss", "min")
    assert pw.monitor() == ("val_pairwise_accuracy", "max")
    with pytest.raises(UsageError, match="--loss 'hinge'"):
        make_task("pointwise", "hinge")
    with pytest.raises(ValueError, match="task 'listwise' unknown"):
        make_task("listwise")


def test_tasks_own_the_batch_layout_loss_and_quality():
    scorer = keras.Sequential([keras.layers.Lambda(lambda x: tf.reduce_sum(tf.cast(x, tf.float32), -1, keepdims=True))])
    ids = np.array([[1, 0], [0, 0], [2, 1]], np.int32)
    y = np.array([1.0, 1.0, 0.0], np.float32)
    pt = PointwiseTask("bce")
    out = pt.call(scorer, {"ids": ids, "teacher": y}, training=False)  # extra columns ride along
    r = pt.value(out).numpy()
    np.testing.assert_allclose(r, [1.0, 0.0, 3.0])
    np.testing.assert_allclose(pt.per_example_loss(out, ids, y).numpy(), np.log1p(np.exp(r)) - y * r, rtol=1e-5)
    np.testing.assert_allclose(pt.quality(pt.value(out), y)[0].numpy(), [1.0, 0.0, 0.0])
    assert pt.first_example(ids).shape == (1, 2)

    pw = PairwiseTask()
    x = {"chosen": ids, "rejected": ids[::-1], "margin": np.zeros(3, np.float32)}
    out = pw.call(scorer, x, training=False)
    margin = pw.value(out).numpy()
    np.testing.assert_allclose(margin, [-2.0, 0.0, 2.0])
    np.testing.assert_allclose(pw.per_example_loss(out, x, None).numpy(), np.log1p(np.exp(-margin)), rtol=1e-5)
    acc, mean_margin = pw.quality(pw.value(out), None)
    np.testing.assert_allclose(acc.numpy(), [0.0, 0.0, 1.0])
    np.testing.assert_allclose(mean_margin.numpy(), margin)
    assert set(pw.first_example(x)) == set(x) and pw.first_example(x)["chosen"].shape == (1, 2)
    # rows without a label take the teacher's decision
    has = tf.constant([True, False, False])
    np.testing.assert_allclose(pw.teacher_labels(None, tf.constant([-1.0, 2.0, -2.0]), has).numpy(), [1, 1, 0])


def test_loss_is_task_plus_complexity_plus_distillation():
    """One model with the complexity term (penalty mode) and the distillation term: the step's loss
    is the mean of ``(1 - a) * labeled * task + a * d`` plus ``w * E[FLOPs] / FLOPs_dense``."""
    from rmcompress.models.architectures import ArchConfig, build_reward_model
    from rmcompress.structured.gating import gated_copy
    from rmcompress.training.complexity_model import ComplexityAwareModel
    from rmcompress.training.distill import DistillationTerm, DistillSettings
    from rmcompress.training.model import RewardTrainingModel

    keras.utils.set_random_seed(0)
    scorer = gated_copy(build_reward_model(ArchConfig(arch="bow", vocab_size=40, seq_len=6, width=8, hidden=8)))
    a, w = 0.3, 0.7
    model = ComplexityAwareModel(scorer, task="pointwise", loss="bce", flops_weight=w,
                                 terms=[DistillationTerm(DistillSettings(a, "mse"))])
    ids = np.random.RandomState(0).randint(1, 40, size=(5, 6)).astype(np.int32)
    labels = np.array([1, 0, 1, 1, 0], np.float32)
    teacher = np.array([0.5, -1.0, 2.0, 0.0, 1.0], np.float32)
    labeled = np.array([1, 1, 0, 1, 0], np.float32)
    x = {"ids": ids, "teacher": teacher, "labeled": labeled}
    total, per_example, _, aux, _ = model._step_loss((x, labels), training=False)

    plain = RewardTrainingModel(scorer, task="pointwise", loss="bce")
    task_loss, _ = plain.task_losses((ids, labels), training=False)
    r = scorer(ids, training=False).numpy().reshape(-1)
    distill = (1 - a) * labeled * task_loss.numpy() + a * (r - teacher) ** 2
    complexity = w * float(model.expected_fractions()["flops"].numpy())
    assert set(aux) == {"flops_penalty"} and complexity > 0
    np.testing.assert_allclose(per_example.numpy(), distill, rtol=1e-5)
    np.testing.assert_allclose(float(total), distill.mean() + complexity, rtol=1e-5)
    assert {"label_loss", "distill_loss", "flops_penalty", "expected_flops_fraction"} <= {m.name for m in model.metrics}


def test_distillation_is_a_term_not_a_class_swap():
    root = Path(__file__).resolve().parents[2] / "rmcompress"
    swaps = [str(p) for p in root.rglob("*.py") if re.search(r"\.__class__\s*=", p.read_text())]
    assert swaps == []


def test_one_fit_loop_serves_every_caller(monkeypatch, trained_models):
    """``model.fit`` is called only by :func:`rmcompress.training.finetune.fit_model`; the passes'
    fine-tuning, ``budget_compress`` and ``train()`` all reach it."""
    root = Path(__file__).resolve().parents[2] / "rmcompress"
    callers = sorted(str(p.relative_to(root)) for p in root.rglob("*.py") if re.search(r"\.fit\(", p.read_text()))
    assert callers == ["training/finetune.py", "training/model.py"]  # model.py: RewardTrainingModel.fit -> super

    import rmcompress.training.budget as budget_module
    import rmcompress.training.finetune as loop
    from rmcompress.training.budget import budget_compress
    from rmcompress.compression.finetune import finetune as pass_finetune
    from rmcompress.compression.state import CompressState  # noqa: F401
    from rmcompress.config.progress import Progress

    calls = []
    real = loop.fit_model

    def spy(model, ds, steps_per_epoch, *args, **kwargs):
        calls.append(steps_per_epoch)
        return real(model, ds, steps_per_epoch, *args, **kwargs)

    monkeypatch.setattr(loop, "fit_model", spy)
    monkeypatch.setattr(budget_module, "fit_model", spy)  # bound at import there
    res = trained_models["bow"]
    state = type("S", (), {"seed": 0, "train": res.train_data, "task": "pointwise", "loss": "bce",
                           "progress": Progress()})()
    clone = keras.models.clone_model(res.bundle.model)
    clone.set_weights(res.bundle.model.get_weights())
    history = pass_finetune(clone, state, 2, 1e-3, 16)
    assert calls == [2] and "loss" in history
    calls.clear()
    budget_compress(res.bundle, res.train_data, res.val_data, flops_fraction=0.6, steps=4, batch_size=16)
    assert calls == [3, 1]  # the gated phase (70% of the steps) and the shrunk model's fine-tuning
