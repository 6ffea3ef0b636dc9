"""RewardTrainingModel honours Keras' ``compile``: the user's loss (per example, as Keras computes
it), metrics (in the history, reset each epoch), sample weights, and a clear error for what it
refuses."""
from __future__ import annotations

import numpy as np
import pytest

from rmcompress._keras import keras, tf
from rmcompress.errors import UsageError
from rmcompress.models.losses import pairwise_loss
from rmcompress.training.model import RewardTrainingModel
from tests.helpers import zoo_ids, zoo_model


def _data(n=32):
    ids = zoo_ids(n)
    return ids, (ids[:, 0] % 2).astype("float32")


def _wrapped(name="kim_cnn", **compile_kw):
    keras.utils.set_random_seed(0)
    model = RewardTrainingModel(zoo_model(name))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), **compile_kw)
    return model


def test_user_loss_equals_the_keras_loss_of_a_plain_model():
    """``compile(loss="mse")`` trains on the MSE of the reward (not the task's BCE): the evaluated
    loss equals plain Keras' on the same scorer, and per example it is ``(y - r)^2``."""
    ids, y = _data()
    model = _wrapped(loss="mse")
    scorer = model.scorer
    plain = keras.models.clone_model(scorer)
    plain.set_weights(scorer.get_weights())
    plain.compile(loss="mse")
    expected = plain.evaluate(ids, y, batch_size=32, verbose=0)
    got = model.evaluate(ids, y, batch_size=32, verbose=0, return_dict=True)
    assert got["loss"] == pytest.approx(expected, rel=1e-5)
    assert got["task_loss"] == pytest.approx(expected, rel=1e-5)
    per_example, _ = model.task_losses((ids, y), training=False)
    r = scorer(ids, training=False).numpy().reshape(-1)
    np.testing.assert_allclose(per_example.numpy(), (y - r) ** 2, rtol=1e-5)
    bce = RewardTrainingModel(scorer)  # no compiled loss: the task's
    bce.compile(optimizer="adam")
    task_loss, _ = bce.task_losses((ids, y), training=False)
    assert not np.allclose(task_loss.numpy(), per_example.numpy())


def test_loss_objects_functions_and_sample_weights():
    """A ``Loss`` object, a Keras loss function and a user function returning ``[B, 1]`` each give
    ``[B]`` per-example losses whose mean is Keras' value; sample weights multiply them, and the
    weighted loss ``fit`` reports equals plain Keras'."""
    ids, y = _data()
    w = np.linspace(0.0, 2.0, len(y)).astype("float32")

    def squared(yt, yp):
        return tf.square(yt - yp)  # [B, 1], as fit gives it: unreduced

    for loss, reference in ((keras.losses.Huber(delta=0.5), keras.losses.Huber(delta=0.5)),
                            (keras.losses.mean_absolute_error, keras.losses.MeanAbsoluteError()),
                            (squared, keras.losses.MeanSquaredError())):
        model = _wrapped(loss=loss)
        r = model.scorer(ids, training=False).numpy().reshape(-1, 1)
        per_example, _ = model.task_losses((ids, y), training=False)
        assert per_example.shape == (len(y),)
        assert float(tf.reduce_mean(per_example)) == pytest.approx(float(reference(y[:, None], r)), rel=1e-5)
        weighted, _ = model.task_losses((ids, y, w), training=False)
        np.testing.assert_allclose(weighted.numpy(), w * per_example.numpy(), rtol=1e-5)
    model = _wrapped(loss="mae")
    plain = keras.models.clone_model(model.scorer)
    plain.set_weights(model.scorer.get_weights())
    plain.compile(loss="mae")
    expected = plain.evaluate(ids, y, sample_weight=w, batch_size=32, verbose=0)
    got = model.evaluate(ids, y, sample_weight=w, batch_size=32, verbose=0, return_dict=True)
    assert got["loss"] == pytest.approx(expected, rel=1e-5)


def test_pairwise_user_loss_sees_ones_and_the_margin():
    """Pairwise: ``loss(ones, r_c - r_r)``; binary cross-entropy on logits is then the task's
    Bradley-Terry loss (no margin, no centering)."""
    keras.utils.set_random_seed(0)
    ids = zoo_ids(16)
    batch = {"chosen": ids[:8], "rejected": ids[8:]}
    model = RewardTrainingModel(zoo_model("kim_cnn"), task="pairwise")
    model.compile(optimizer="adam", loss=keras.losses.BinaryCrossentropy(from_logits=True),
                  metrics=[keras.metrics.BinaryAccuracy(name="agree", threshold=0.0)])
    per_example, quality = model.task_losses((batch,), training=False)
    rc, rr = model.scorer(ids[:8]), model.scorer(ids[8:])
    np.testing.assert_allclose(per_example.numpy(), pairwise_loss(rc, rr).numpy(), rtol=1e-5, atol=1e-6)
    got = model.evaluate(tf.data.Dataset.from_tensors((batch,)), verbose=0, return_dict=True)
    assert got["agree"] == pytest.approx(float(np.mean(quality[0].numpy())))  # margin > 0 with target 1


class _Rows(keras.metrics.Metric):
    """The number of rows seen (the sum of their sample weights when given)."""

    def __init__(self, name):
        super().__init__(name=name)
        self.n = self.add_weight(name="n", initializer="zeros")

    def update_state(self, y_true, y_pred, sample_weight=None):
        w = tf.ones_like(tf.reshape(y_pred, [-1])) if sample_weight is None else tf.reshape(sample_weight, [-1])
        self.n.assign_add(tf.reduce_sum(tf.cast(w, tf.float32)))

    def result(self):
        return tf.identity(self.n)


def test_compiled_metrics_reach_the_history_and_reset_each_epoch():
    ids, y = _data(64)
    w = np.linspace(0.0, 1.0, len(y)).astype("float32")
    auc = keras.metrics.AUC(from_logits=True, name="auc")
    model = _wrapped("dan", loss="mse", metrics=[auc, _Rows("rows")], weighted_metrics=[_Rows("weighted_rows")])
    hist = model.fit(ids, y, sample_weight=w, batch_size=16, epochs=2, verbose=0).history
    assert auc in model.metrics
    assert hist["rows"] == [64.0, 64.0]  # reset at each epoch, unweighted
    assert hist["weighted_rows"] == pytest.approx([float(w.sum())] * 2)
    assert len(hist["auc"]) == 2 and all(0.0 <= v <= 1.0 for v in hist["auc"])
    got = model.evaluate(ids, y, batch_size=64, verbose=0, return_dict=True)
    reference = keras.metrics.AUC(from_logits=True)
    reference.update_state(y, model.scorer(ids, training=False))
    assert got["auc"] == pytest.approx(float(reference.result()), abs=1e-6)
    assert got["rows"] == 64.0


def test_refused_compile_arguments_and_metric_names():
    with pytest.raises(UsageError, match="loss_weights"):
        _wrapped(loss="mse", loss_weights=[0.5])
    with pytest.raises(UsageError, match="one loss for the reward output"):
        _wrapped(loss={"out": "mse"})
    with pytest.raises(UsageError, match="compile\\(loss='no_such_loss'\\)"):
        _wrapped(loss="no_such_loss")
    with pytest.raises(UsageError, match="reduction='sum'"):
        _wrapped(loss=keras.losses.MeanSquaredError(reduction="sum"))
    ids, y = _data(16)
    model = _wrapped(metrics=[keras.metrics.BinaryAccuracy(name="accuracy")])  # the task reports "accuracy"
    with pytest.raises(UsageError, match="already reports a metric named 'accuracy'"):
        model.fit(ids, y, batch_size=16, epochs=1, verbose=0)


def test_compiled_optimizer_trains_the_scorer():
    ids, y = _data(32)
    model = _wrapped(loss="mse")
    before = [w.copy() for w in model.scorer.get_weights()]
    model.fit(ids, y, batch_size=16, epochs=1, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 2
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.scorer.get_weights()))
