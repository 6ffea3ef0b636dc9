"""The complexity callbacks in the user's own ``fit`` on a model they wrote: a compiled Keras loss
and metric beside the complexity term, the three callbacks on any wrapped model and a clear error
on a model without a complexity term, and one unit per name in the CSV log and the history."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import rmcompress
from rmcompress._keras import keras
from rmcompress.errors import UsageError
from rmcompress.training.complexity_callbacks import BudgetController, BudgetEarlyStopping, ComplexityLogger
from rmcompress.training.model import RewardTrainingModel
from tests.helpers import zoo_ids, zoo_model


def _data(n=64):
    ids = zoo_ids(n)
    return ids, (ids[:, 0] % 2).astype("float32")


def _user_model(name="kim_cnn", **kw):
    keras.utils.set_random_seed(0)
    model = rmcompress.ComplexityAwareModel(zoo_model(name), budget_flops=0.5, **kw)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse",
                  metrics=[keras.metrics.AUC(from_logits=True, name="auc")])
    return model


def test_user_sequential_model_trains_in_its_own_fit_with_the_three_callbacks(tmp_path):
    ids, y = _data()
    model = _user_model(gate_learning_rate=0.2, multiplier_learning_rate=0.5)
    start = model.complexity_state()["expected_flops_fraction"]
    logger = ComplexityLogger(tmp_path / "cx.csv", every=2)
    stopper = BudgetEarlyStopping(monitor="val_auc", mode="max", patience=5)
    hist = model.fit(ids, y, batch_size=16, epochs=3, validation_data=(ids[:16], y[:16]), verbose=0,
                     callbacks=[BudgetController(warmup_steps=4), logger, stopper]).history
    for key in ("loss", "task_loss", "auc", "val_auc", "expected_flops_fraction", "flops_target", "flops_lagrangian"):
        assert key in hist and len(hist[key]) == 3, key
    assert all(np.isfinite(hist["loss"]))
    assert model.complexity_state()["flops_target"] == pytest.approx(0.5)  # the controller reached the budget
    assert hist["expected_flops_fraction"][-1] < start
    assert len(logger.rows) == 12 // 2 + 3 and (tmp_path / "cx.csv").is_file()


def test_loss_on_a_batch_is_the_keras_loss_plus_the_complexity_term():
    ids, y = _data(16)
    model = _user_model()
    got = model.evaluate(ids, y, batch_size=16, verbose=0, return_dict=True)
    pred = model.scorer(ids, training=False)
    keras_mse = float(keras.losses.MeanSquaredError()(y[:, None], pred))
    assert got["task_loss"] == pytest.approx(keras_mse, rel=1e-5)
    assert got["loss"] == pytest.approx(keras_mse + got["flops_lagrangian"], rel=1e-5)
    auc = keras.metrics.AUC(from_logits=True)
    auc.update_state(y, pred)
    assert got["auc"] == pytest.approx(float(auc.result()), abs=1e-6)


@pytest.mark.parametrize("callback", [lambda: BudgetController(5), lambda: ComplexityLogger(),
                                      lambda: BudgetEarlyStopping()])
@pytest.mark.parametrize("wrap", [True, False])
def test_callbacks_refuse_a_model_without_a_complexity_term(callback, wrap):
    ids, y = _data(16)
    keras.utils.set_random_seed(0)
    model = zoo_model("dan")
    if wrap:
        model = RewardTrainingModel(model)
        model.compile(optimizer="adam")
    else:
        model.compile(optimizer="adam", loss="mse")
    cb = callback()
    with pytest.raises(UsageError, match=f"^{type(cb).__name__} needs a model with a complexity term.*wrap the model "
                                         "in rmcompress.ComplexityAwareModel or add a ComplexityTerm"):
        model.fit(ids, y, batch_size=16, epochs=1, verbose=0, callbacks=[cb])


def test_a_name_has_one_unit_in_the_csv_log_and_the_history(tmp_path):
    """Gates and multipliers frozen, so the complexity state is the same at every step: every column
    the CSV log shares with the history holds the same value (counts are counts, fractions are
    fractions), and the counts relate to the fractions through the dense cost."""
    ids, y = _data(32)
    model = _user_model(gate_learning_rate=0.0, multiplier_learning_rate=0.0)
    logger = ComplexityLogger(tmp_path / "cx.csv", every=1)
    hist = model.fit(ids, y, batch_size=16, epochs=2, verbose=0, callbacks=[BudgetController(0), logger]).history
    df = pd.read_csv(tmp_path / "cx.csv")
    epochs = df[df["kind"] == "epoch"].reset_index(drop=True)
    shared = sorted(set(epochs.columns) & set(hist))
    assert {"expected_flops_fraction", "expected_params_fraction", "flops_target", "flops_gap", "lambda_flops",
            "loss", "task_loss", "auc"} <= set(shared)
    for name in shared:
        np.testing.assert_allclose(epochs[name].to_numpy(), hist[name], rtol=1e-4, atol=1e-6, err_msg=name)
    assert 0.0 < epochs["expected_flops_fraction"].iloc[-1] <= 1.0
    np.testing.assert_allclose(epochs["expected_flops"], epochs["expected_flops_fraction"] * epochs["dense_flops"],
                               rtol=1e-5)
    assert (epochs["expected_flops"] > 1.0).all() and "expected_flops" not in hist
    np.testing.assert_allclose(epochs["flops_fraction"], epochs["flops"] / epochs["dense_flops"], rtol=1e-5)


def test_keras_tensorboard_callback_in_the_user_s_own_fit_logs_the_complexity_scalars(tmp_path):
    """``keras.callbacks.TensorBoard`` beside the complexity callbacks on a wrapped user model: the
    expected FLOPs, the budget gap and the multipliers are TensorBoard scalars like any metric."""
    from tests.helpers import event_tags

    ids, y = _data()
    model = _user_model()
    model.fit(ids, y, batch_size=16, epochs=2, validation_data=(ids[:16], y[:16]), verbose=0,
              callbacks=[BudgetController(warmup_steps=4), ComplexityLogger(tensorboard_dir=tmp_path / "tb" / "cx", every=2),
                         keras.callbacks.TensorBoard(str(tmp_path / "tb"), update_freq=1)])
    runs = event_tags(tmp_path / "tb")
    for tag in ("expected_flops_fraction", "flops_gap", "lambda_flops", "lambda_flops_sq", "auc"):
        assert runs["train"][f"epoch_{tag}"] == 2 and runs["train"][f"batch_{tag}"] == 8, tag
        assert runs["validation"][f"epoch_{tag}"] == 2, tag
    assert {"complexity/expected_flops", "complexity/flops_gap", "complexity/lambda_flops"} <= set(runs["cx"])
