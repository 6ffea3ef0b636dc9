"""Distillation: the loss terms, the mixin's composition, teacher scores, unlabeled texts, train()."""
from __future__ import annotations

import numpy as np
import pytest

from rmcompress.errors import ModelError, UsageError

pytestmark = pytest.mark.slow  # pretrained backbones


def tiny(**kw):
    from rmcompress.training.trainer import TrainConfig

    base = dict(arch="bow", width=16, hidden=16, seq_len=16, vocab_size=300, epochs=1, max_steps=6,
                batch_size=32, patience=0)
    return TrainConfig.from_flat(**{**base, **kw})


@pytest.fixture(scope="module")
def teachers(pointwise_file, pairwise_file, tmp_path_factory):
    """A pointwise transformer teacher and a pairwise bow teacher (own tokenizers)."""
    from rmcompress.training.trainer import train

    root = tmp_path_factory.mktemp("teachers")
    return {"pointwise": train(pointwise_file, tiny(arch="transformer", max_steps=40, learning_rate=3e-3,
                                                    vocab_size=400), root / "p", verbose=0),
            "pairwise": train(pairwise_file, tiny(task="pairwise", max_steps=10, seq_len=48), root / "q",
                              verbose=0)}


def test_distill_terms():
    from rmcompress.training.distill import distill_per_example

    s = np.array([0.5, -2.0, 3.0], np.float32)
    t = np.array([1.0, -2.0, -1.0], np.float32)
    np.testing.assert_allclose(distill_per_example(s, t, "mse").numpy(), (s - t) ** 2, rtol=1e-6)
    for temp in (1.0, 2.0):
        got = distill_per_example(s, t, "ce", temp).numpy()
        p, q = 1 / (1 + np.exp(-t / temp)), 1 / (1 + np.exp(-s / temp))
        kl = p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))
        np.testing.assert_allclose(got, temp ** 2 * kl, rtol=1e-4, atol=1e-6)
        assert got[1] == pytest.approx(0.0, abs=1e-6) and (got >= -1e-7).all()


def _batch(weight, labeled):
    """A pointwise distillation model on a constant scorer, and one batch."""
    from rmcompress._keras import keras
    from rmcompress.training.distill import DistillationModel, DistillSettings

    ids = keras.Input((4,), dtype="int32")
    r = keras.layers.Dense(1, kernel_initializer="ones", bias_initializer="zeros")(
        keras.layers.Lambda(lambda x: keras.backend.cast(x, "float32"))(ids))
    model = DistillationModel(keras.Model(ids, r), task="pointwise", loss="bce")
    model.init_distillation(DistillSettings(weight, "mse"))
    x = {"ids": np.array([[1, 0, 0, 0], [2, 0, 0, 0]], np.int32), "teacher": np.array([0.0, 1.0], np.float32),
         "labeled": np.array(labeled, np.float32)}
    y = np.array([1.0, 0.0], np.float32)
    return model, (x, y)


def test_loss_combines_label_and_teacher_terms_per_example():
    from rmcompress.models.losses import pointwise_loss

    rewards = np.array([1.0, 2.0], np.float32)
    label = pointwise_loss("bce", rewards, np.array([1.0, 0.0])).numpy()
    d = (rewards - np.array([0.0, 1.0])) ** 2
    for weight, labeled in ((0.0, [1, 1]), (1.0, [1, 1]), (0.3, [1, 1]), (0.3, [1, 0])):
        model, data = _batch(weight, labeled)
        per_example, quality = model.task_losses(data, training=False)
        expect = (1 - weight) * np.array(labeled) * label + weight * d
        np.testing.assert_allclose(per_example.numpy(), expect, rtol=1e-5)
    # an unlabeled row's accuracy is judged against the teacher's decision (teacher 1.0 > 0: positive)
    np.testing.assert_allclose(quality[0].numpy(), [1.0, 1.0])
    # batches without teacher inputs (validation) fall back to the task loss
    model, _ = _batch(0.5, [1, 1])
    plain, _ = model.task_losses((np.array([[1, 0, 0, 0]], np.int32), np.array([1.0])), training=False)
    np.testing.assert_allclose(plain.numpy(), label[:1], rtol=1e-5)


def test_with_distillation_composes_with_other_training_models(pointwise_file, teachers):
    """A training model with its own auxiliary term (as complexity-aware training has) keeps it."""
    from rmcompress._keras import tf
    from rmcompress.training.distill import DistillationPlan, DistillationTerm, DistillSettings
    from rmcompress.training.model import RewardTrainingModel
    from rmcompress.training.trainer import train

    class Penalised(RewardTrainingModel):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.add_auxiliary_metric("penalty")

        def auxiliary_losses(self, data, training):
            return {"penalty": 1e-3 * tf.add_n([tf.reduce_sum(tf.square(v)) for v in self.scorer.trainable_variables])}

    def build(scorer, cfg, loss):
        return Penalised(scorer, task=cfg.task, loss=loss)

    r = train(pointwise_file, tiny(teacher=str(teachers["pointwise"].out_dir)), build_training_model=build, verbose=0)
    assert isinstance(r.training_model, Penalised)
    assert any(isinstance(t, DistillationTerm) for t in r.training_model.terms)
    for key in ("penalty", "label_loss", "distill_loss", "val_distill_loss"):
        assert key in r.history
    assert DistillationPlan and DistillSettings(0.0).weight == 0.0


def test_teacher_scores_use_the_teachers_tokenizer_and_unlabeled_rows_join(pointwise_file, teachers, tmp_path):
    import pandas as pd

    from rmcompress.data.loaders import load_data
    from rmcompress.data.split import split_data
    from rmcompress.training.distill import DistillationPlan, teacher_rewards

    teacher = teachers["pointwise"].bundle
    data = load_data(pointwise_file, "pointwise")
    tr, va = split_data(data, 0.1, 0)
    pd.DataFrame({"text": ["a truly superb film", "utterly tedious plot", " "]}).to_csv(tmp_path / "u.csv", index=False)
    plan = DistillationPlan.prepare(str(teachers["pointwise"].out_dir), "pointwise", "bce", tr, va,
                                    unlabeled=str(tmp_path / "u.csv"), split_settings=(0.1, 0, "auto"))
    expect = teacher.model.predict(teacher.tokenizer.encode(tr.texts), verbose=0).reshape(-1)
    np.testing.assert_allclose(plan.train_targets, expect, atol=1e-6)
    assert plan.info["n_unlabeled"] == 2 and plan.info["teacher_same_split"] is True
    np.testing.assert_allclose(plan.unlabeled_targets,
                               teacher_rewards(teacher, ["a truly superb film", "utterly tedious plot"]), atol=1e-6)
    # a student with another vocabulary: rows are encoded with ITS tokenizer, targets stay aligned
    from rmcompress.data.pipeline import encode
    from rmcompress.data.tokenizer import Tokenizer, TokenizerConfig

    student_tok = Tokenizer.train(tr.texts, 120, TokenizerConfig(seq_len=12))
    enc = plan.attach(encode(tr, student_tok), student_tok, "train")
    assert len(enc) == len(tr) + 2 and enc.ids.shape[1] == 12
    assert enc.labeled.tolist() == [1.0] * len(tr) + [0.0, 0.0]
    x, _ = next(iter(enc.dataset(len(enc))))
    assert set(x) == {"ids", "teacher", "labeled"}


def test_teacher_scores_are_cached_per_teacher_and_texts(teachers, tmp_path):
    import pandas as pd

    from rmcompress.data.loaders import load_texts
    from rmcompress.errors import DataError
    from rmcompress.training import distill

    bundle = teachers["pointwise"].bundle
    calls = []
    real = bundle.model.predict
    bundle.model.predict = lambda *a, **k: calls.append(1) or real(*a, **k)
    try:
        first = distill.teacher_rewards(bundle, ["a good film", "a dull plot"])
        again = distill.teacher_rewards(bundle, ["a good film", "a dull plot"])
        other = distill.teacher_rewards(bundle, ["a dull plot"])
    finally:
        bundle.model.predict = real
    assert len(calls) == 2 and np.array_equal(first, again) and other[0] == pytest.approx(first[1], abs=1e-6)
    pd.DataFrame({"text": [" ", ""]}).to_csv(tmp_path / "empty.csv", index=False)
    with pytest.raises(DataError, match="no non-empty texts"):
        load_texts(tmp_path / "empty.csv")


def test_distilled_student_tracks_the_teacher(pointwise_file, teachers):
    """With distill_weight 1 a bag-of-embeddings student learns the transformer teacher's rewards."""
    from rmcompress.metrics import spearman
    from rmcompress.training.trainer import train

    cfg = tiny(teacher=str(teachers["pointwise"].out_dir), distill_weight=1.0, max_steps=60, learning_rate=1e-2,
               dropout=0.0)
    student = train(pointwise_file, cfg, verbose=0)
    plain = train(pointwise_file, tiny(max_steps=2, dropout=0.0), verbose=0)
    val = student.val_data
    s = student.bundle.model.predict(val.ids, verbose=0).reshape(-1)
    p = plain.bundle.model.predict(plain.val_data.ids, verbose=0).reshape(-1)
    print("spearman student/teacher", spearman(val.teacher, s), "untrained", spearman(val.teacher, p))
    assert spearman(val.teacher, s) > 0.65 and spearman(val.teacher, s) > spearman(val.teacher, p) + 0.3
    assert student.history["distill_loss"][-1] < student.history["distill_loss"][0]


def test_pairwise_distillation_on_margins_with_unlabeled_pairs(pairwise_file, teachers, tmp_path):
    from rmcompress.data.synthetic import pairwise_frame
    from rmcompress.training.trainer import train

    pairwise_frame(30, seed=7).to_json(tmp_path / "u.jsonl", orient="records", lines=True)
    r = train(pairwise_file, tiny(task="pairwise", seq_len=48, teacher=str(teachers["pairwise"].out_dir),
                                  distill_loss="ce", distill_temperature=2.0, unlabeled=str(tmp_path / "u.jsonl")),
              verbose=0)
    assert r.report["n_unlabeled"] == 30 and r.report["distill_objective"] == "ce"
    enc = r.train_data
    n = len(enc) - 30
    assert enc.labeled[:n].min() == 1 and enc.labeled[n:].max() == 0
    t = teachers["pairwise"].bundle  # the targets are the teacher's margins on the training pairs
    tc = t.model.predict(t.tokenizer.encode([r.bundle.tokenizer.decode(enc.chosen[0])]), verbose=0)
    assert np.isfinite(enc.teacher).all() and tc.shape == (1, 1) and "distill_loss" in r.history


def test_distillation_under_mirrored_strategy(pointwise_file, teachers):
    from rmcompress._keras import tf
    from rmcompress.training.trainer import train

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    r = train(pointwise_file, tiny(teacher=str(teachers["pointwise"].out_dir), max_steps=3), verbose=0,
              strategy=strategy)
    assert np.isfinite(r.history["loss"]).all() and "distill_loss" in r.history
    t = str(teachers["pointwise"].out_dir)  # the block term runs the teacher inside the replicated step
    r = train(pointwise_file, tiny(arch="transformer", init=t, teacher=t, distill_blocks=1.0, max_steps=3),
              verbose=0, strategy=strategy)
    assert np.isfinite(r.history["block_loss"]).all()


def test_distillation_usage_errors(pointwise_file, teachers, tmp_path):
    from rmcompress.training.trainer import train

    with pytest.raises(UsageError, match="--unlabeled needs --teacher"):
        tiny(unlabeled="x.csv")
    with pytest.raises(UsageError, match="distill-weight"):
        tiny(teacher="t", distill_weight=1.5)
    with pytest.raises(UsageError, match="distill-loss"):
        tiny(teacher="t", distill_loss="kl")
    with pytest.raises(ModelError, match="pairwise model, but the task here is pointwise"):
        train(pointwise_file, tiny(teacher=str(teachers["pairwise"].out_dir)), verbose=0)
    real = tmp_path / "real.csv"
    real.write_text("text,label\n" + "\n".join(f"good film {i},{i / 10}" for i in range(20)) + "\n")
    with pytest.raises(UsageError, match="ce needs logits"):
        train(real, tiny(teacher=str(teachers["pointwise"].out_dir), distill_loss="ce"), verbose=0)
    with pytest.raises(UsageError, match="different scales"):
        train(real, tiny(teacher=str(teachers["pointwise"].out_dir)), verbose=0)


# -- representation distillation (pooled features) ------------------------------------------------
def test_feature_scale_and_distance():
    from rmcompress.training.distill import feature_distance, feature_scale

    rng = np.random.RandomState(0)
    feats = rng.normal(size=(500, 3)).astype(np.float32) * np.array([1.0, 10.0, 0.0], np.float32)
    scale = feature_scale(feats)
    sigma = feats.std(axis=0)
    np.testing.assert_allclose(scale[:2], 1 / sigma[:2], rtol=1e-5)
    assert scale[2] == pytest.approx(1 / (1e-3 * sigma[1]), rel=1e-5)  # a dead feature: floored, finite
    u = feats[:4] + sigma * np.array([1.0, -2.0, 0.0], np.float32)  # 1 and 2 teacher-sds away
    got = feature_distance(u, feats[:4], scale).numpy()
    np.testing.assert_allclose(got, np.full(4, (1.0 + 4.0 + 0.0) / 3), rtol=1e-5)


def _feature_batch(features_weight):
    """A tiny transformer scorer, its own pooled features as the teacher's, one batch."""
    from rmcompress._keras import keras
    from rmcompress.models.archconfig import ArchConfig
    from rmcompress.models.architectures import build_reward_model
    from rmcompress.training.distill import DistillationModel, DistillSettings, feature_model

    keras.utils.set_random_seed(0)
    scorer = build_reward_model(ArchConfig(arch="transformer", vocab_size=50, seq_len=8, width=8, depth=1,
                                           heads=2, head_dim=4, ffn=8))
    ids = np.random.RandomState(1).randint(1, 50, size=(6, 8)).astype(np.int32)
    reward, feats = feature_model(scorer).predict(ids, verbose=0)
    scale = np.full(feats.shape[1], 2.0, np.float32)
    model = DistillationModel(scorer, task="pointwise", loss="bce")
    model.init_distillation(DistillSettings(0.5, "mse", features=features_weight, feature_scale=scale))
    x = {"ids": ids, "teacher": reward.ravel(), "labeled": np.ones(6, np.float32), "teacher_features": feats}
    return model, x, np.ones(6, np.float32), feats


def test_feature_term_adds_b_times_the_scaled_distance():
    model, x, y, feats = _feature_batch(0.7)
    same, _ = model.task_losses((x, y), training=False)  # teacher features = the student's own: f = 0
    shifted = {**x, "teacher_features": feats + 0.5}    # 0.5 away, scale 2: f = 1 per example
    moved, _ = model.task_losses((shifted, y), training=False)
    np.testing.assert_allclose(moved.numpy() - same.numpy(), np.full(6, 0.7), rtol=1e-4)
    assert "feature_loss" in [m.name for m in model.metrics]
    without, _ = _feature_batch(0.0)[0].task_losses((x, y), training=False)  # b = 0: no feature term
    np.testing.assert_allclose(without.numpy(), same.numpy(), rtol=1e-5, atol=1e-6)


def test_feature_term_trains_and_refuses_what_it_cannot_match():
    from rmcompress._keras import keras
    from rmcompress.training.distill import DistillationModel, DistillSettings, feature_model

    model, x, y, feats = _feature_batch(1.0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    target = {**x, "teacher_features": feats + 0.5}
    first = model.train_on_batch(target, y, return_dict=True)["feature_loss"]
    for _ in range(30):
        last = model.train_on_batch(target, y, return_dict=True)["feature_loss"]
    assert last < 0.5 * first
    ids = keras.Input((4,), dtype="int32")
    no_pool = keras.Model(ids, keras.layers.Dense(1)(keras.layers.Lambda(lambda t: keras.backend.cast(t, "float32"))(ids)),
                          name="nopool")
    with pytest.raises(UsageError, match="'pool'.*nopool|nopool.*'pool'"):
        feature_model(no_pool)
    pairwise = DistillationModel(model.scorer, task="pairwise")
    with pytest.raises(UsageError, match="pointwise only"):
        pairwise.init_distillation(DistillSettings(0.5, "mse", features=1.0))
    with pytest.raises(UsageError, match="distill-features"):
        DistillSettings(0.5, "mse", features=-1.0)


def test_train_with_distill_features_from_a_teacher_copy(pointwise_file, teachers, tmp_path):
    """``rmcompress train --init T --teacher T --distill-features B``: the teacher's pooled features
    ride with train/val rows; a student of another width is refused with both widths named."""
    from rmcompress.training.trainer import train

    t = str(teachers["pointwise"].out_dir)
    r = train(pointwise_file, tiny(arch="transformer", init=t, teacher=t, distill_features=1.0, max_steps=4),
              verbose=0)
    assert "feature_loss" in r.history and "val_feature_loss" in r.history
    # the copy starts equal to the teacher: its features match (f ~ 0 before any step changes it)
    assert r.history["val_feature_loss"][0] < 0.5
    assert r.report["distill_features"] == 1.0
    with pytest.raises(UsageError, match="16 wide.*8|8 wide.*16"):
        train(pointwise_file, tiny(width=8, hidden=8, teacher=t, distill_features=1.0), verbose=0)
    with pytest.raises(UsageError, match="--distill-features needs --teacher"):
        tiny(distill_features=1.0)


def test_train_with_distill_blocks_from_a_teacher_copy(pointwise_file, teachers):
    """``rmcompress train --init T --teacher T --budget-flops F --distill-blocks C``: the gated copy's
    residual stream after each block matches the teacher's (a copy starts at ~0 through the identity
    projection); a student with its own vocabulary, a layer the teacher lacks and the flags without
    what they need are refused in one line."""
    from rmcompress.training.trainer import train

    t = str(teachers["pointwise"].out_dir)
    r = train(pointwise_file, tiny(arch="transformer", init=t, teacher=t, distill_blocks=1.0, max_steps=2,
                                   learning_rate=1e-6), verbose=0)
    assert "block_loss" in r.history and r.report["distill_blocks"] == 1.0
    assert 0 <= r.history["val_block_loss"][0] < 1e-3  # an unchanged copy matches every block
    r = train(pointwise_file, tiny(arch="transformer", init=t, teacher=t, distill_blocks=1.0, max_steps=4,
                                   budget_flops=0.6), verbose=0)
    assert 0 < r.history["block_loss"][0] < 10 and r.report["flops_fraction"] <= 0.6 + 0.02
    with pytest.raises(UsageError, match="vocabulary .* is not the teacher's"):
        train(pointwise_file, tiny(arch="transformer", vocab_size=120, teacher=t, distill_blocks=1.0), verbose=0)
    with pytest.raises(UsageError, match="no layer of model .* matches 'nope{i}'"):
        train(pointwise_file, tiny(arch="transformer", init=t, teacher=t, distill_blocks=1.0,
                                   distill_block_layers="nope{i}"), verbose=0)
    with pytest.raises(UsageError, match="--distill-blocks needs --teacher"):
        tiny(distill_blocks=1.0)
    with pytest.raises(UsageError, match="set --distill-blocks > 0 too"):
        tiny(teacher=t, distill_block_layers="block{i}_ffn_residual")


def test_unlabeled_rows_are_read_with_the_training_column_names(tmp_path):
    import pandas as pd

    from rmcompress.training.distill import load_unlabeled

    pd.DataFrame({"q": ["hi?", "ok?"], "good": ["yes", "sure"], "bad": ["no", "nope"]}).to_json(
        tmp_path / "u.jsonl", orient="records", lines=True)
    pairs = load_unlabeled(tmp_path / "u.jsonl", "pairwise",
                           {"prompt_column": "q", "chosen_column": "good", "rejected_column": "bad", "text_column": None})
    assert len(pairs) == 2 and pairs.chosen[0].startswith("hi?") and pairs.chosen[0].endswith("yes")
    pd.DataFrame({"body": ["a film", "a plot"]}).to_csv(tmp_path / "u.csv", index=False)
    assert load_unlabeled(tmp_path / "u.csv", "pointwise", {"text_column": "body"}).texts == ["a film", "a plot"]
