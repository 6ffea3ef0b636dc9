"""ComplexityAwareModel and ComplexityTerm: penalty and budget modes, metrics, callbacks,
tf.distribute equivalence."""
from __future__ import annotations

import numpy as np
import pytest

from rmcompress._keras import keras, tf
from rmcompress.layers.gates import gate_layers
from rmcompress.errors import ModelError, UsageError
from rmcompress.models.archconfig import ArchConfig
from rmcompress.models.architectures import build_reward_model
from rmcompress.structured.gating import gated_copy
from rmcompress.training.complexity_callbacks import BudgetController, BudgetEarlyStopping, ComplexityLogger
from rmcompress.training.complexity_model import ComplexityAwareModel, ComplexityTerm, complexity_term
from rmcompress.training.model import RewardTrainingModel

CFG = dict(vocab_size=80, seq_len=16, width=16, depth=1, heads=2, head_dim=8, ffn=16, filters=[4, 4, 4],
           hidden=8, dropout=0.0)


def _data(n=64, seed=0):
    rng = np.random.RandomState(seed)
    ids = rng.randint(1, 80, (n, 16)).astype("int32")
    ids[:, 12:] = 0
    y = (ids[:, 0] % 2).astype("float32")
    return ids, y


def _ds(batch=16, n=64):
    ids, y = _data(n)
    return tf.data.Dataset.from_tensor_slices((ids, y)).batch(batch, drop_remainder=True)


def _model(arch="transformer", **kw):
    keras.utils.set_random_seed(0)
    scorer = gated_copy(build_reward_model(ArchConfig(arch=arch, **CFG)))
    model = ComplexityAwareModel(scorer, **kw)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    return model


def test_penalty_mode_lowers_expected_flops_and_logs_metrics():
    model = _model("bow", flops_weight=2.0, gate_learning_rate=0.3)
    start = model.complexity_state()["expected_flops_fraction"]
    hist = model.fit(_ds().repeat(), epochs=2, steps_per_epoch=10, verbose=0).history
    for key in ("task_loss", "expected_flops_fraction", "expected_params_fraction", "reward", "flops_penalty",
                "accuracy"):
        assert key in hist, key
    assert hist["expected_flops_fraction"][-1] < start - 0.05
    # penalty term = weight * E[F]/F_dense, logged as such
    assert hist["flops_penalty"][-1] == pytest.approx(2.0 * hist["expected_flops_fraction"][-1], rel=0.1)


def test_budget_mode_multipliers_rise_while_over_budget():
    model = _model("cnn", budget_flops=0.3, gate_learning_rate=0.2, multiplier_learning_rate=0.5)
    ctrl = BudgetController(warmup_steps=10)
    hist = model.fit(_ds().repeat(), epochs=2, steps_per_epoch=10, verbose=0, callbacks=[ctrl]).history
    for key in ("flops_target", "flops_gap", "lambda_flops", "lambda_flops_sq", "flops_lagrangian"):
        assert key in hist, key
    state = model.complexity_state()
    assert state["flops_target"] == pytest.approx(0.3)
    assert state["lambda_flops"] > 0  # over budget during warm-up: ascent raised the multiplier
    assert state["expected_flops_fraction"] < 0.9


def test_budget_controller_schedule():
    ctrl = BudgetController(warmup_steps=100, delay_steps=50)
    assert ctrl.target(0, 0.25) == 1.0 and ctrl.target(50, 0.25) == 1.0
    assert ctrl.target(100, 0.25) == pytest.approx(0.625)
    assert ctrl.target(150, 0.25) == ctrl.target(1000, 0.25) == 0.25
    assert BudgetController(0).target(0, 0.4) == 0.4


def test_reward_discount_documented_values():
    model = _model("bow", flops_weight=1.0)
    assert float(model.discount(tf.constant(1.0))) == pytest.approx(1.0)
    assert float(model.discount(tf.constant(0.25))) == pytest.approx(1.02)  # two halvings, 1% each


def test_complexity_logger_csv_and_tensorboard(tmp_path):
    model = _model("bow", budget_flops=0.5)
    logger = ComplexityLogger(tmp_path / "cx.csv", tmp_path / "tb", every=2)
    model.fit(_ds().repeat(), epochs=2, steps_per_epoch=4, verbose=0, callbacks=[logger])
    import pandas as pd

    df = pd.read_csv(tmp_path / "cx.csv")
    assert set(df["kind"]) == {"step", "epoch"} and len(df) == 4 + 2
    for col in ("expected_flops", "flops", "flops_gap", "lambda_flops", "task_loss", "reward"):
        assert col in df.columns, col
    events = list((tmp_path / "tb").glob("events.out.tfevents.*"))
    tags = {v.tag for e in tf.compat.v1.train.summary_iterator(str(events[0])) for v in e.summary.value}
    assert {"complexity/expected_flops", "complexity/lambda_flops", "complexity_epoch/task_loss"} <= tags


class _StubTerm(ComplexityTerm):
    """Enough of a complexity term for BudgetEarlyStopping."""

    def __init__(self, model):
        self.model = model

    def budget_met(self, tolerance):
        return self.model.met


class _Stub:
    """Enough of a model for BudgetEarlyStopping."""

    def __init__(self):
        self.met, self.w, self.stop_training = False, 0, False
        self.terms = [_StubTerm(self)]

    def get_weights(self):
        return self.w

    def set_weights(self, w):
        self.w = w


def test_budget_early_stopping_waits_for_the_budget():
    stub = _Stub()
    cb = BudgetEarlyStopping(monitor="val_accuracy", mode="max", patience=1)
    cb.set_model(stub)
    for epoch, (met, acc) in enumerate([(False, 0.9), (False, 0.5), (True, 0.6), (True, 0.7), (True, 0.65)]):
        stub.met, stub.w = met, epoch
        cb.on_epoch_end(epoch, {"val_accuracy": acc})
        if epoch < 4:
            assert not stub.stop_training, epoch  # never stops before the budget is met
    assert stub.stop_training and cb.best_epoch == 3
    cb.on_train_end()
    assert stub.w == 3  # the best in-budget weights, not the over-budget 0.9 epoch


def test_plain_scorer_and_bad_budgets_are_rejected():
    with pytest.raises(ModelError, match="no gates"):
        RewardTrainingModel(build_reward_model(ArchConfig(arch="bow", **CFG)), terms=[ComplexityTerm(flops_weight=1.0)])
    with pytest.raises(UsageError, match="budget-flops"):
        _model("bow", budget_flops=1.5)


def test_mirrored_step_equals_single_device_step():
    """One step on two logical CPUs (global batch split 8 + 8) gives the single-device loss and
    gradients (summed over replicas) within 1e-5, gate noise included."""
    ids, y = _data(16)
    ds = tf.data.Dataset.from_tensor_slices((ids, y)).batch(16)
    kw = dict(flops_weight=0.3, params_weight=0.2, budget_flops=0.5, budget_params=0.7)

    def build(strategy):
        with strategy.scope():
            keras.utils.set_random_seed(0)
            scorer = gated_copy(build_reward_model(ArchConfig(arch="transformer", **CFG)))
            m = ComplexityAwareModel(scorer, **kw)
            m.compile(optimizer=keras.optimizers.SGD(0.1))
        return m

    single = build(tf.distribute.get_strategy())
    for gate in gate_layers(single.scorer).values():  # gates half open: noise matters
        gate.log_alpha.assign(np.linspace(-1.0, 2.0, gate.units))
    for var in single.complexity_term.multiplier_variables():
        var.assign(0.7)
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    dist = build(mirrored)
    dist.set_weights(single.get_weights())

    batch = next(iter(ds))
    loss, grads, _, _ = tf.function(single.gradients)(batch)
    names = [v.name for v in single.trainable_variables]
    dbatch = next(iter(mirrored.experimental_distribute_dataset(ds)))
    dloss, dgrads, _, _ = tf.function(lambda b: mirrored.run(dist.gradients, args=(b,)))(dbatch)
    assert float(mirrored.reduce("SUM", dloss, axis=None)) == pytest.approx(float(loss), abs=1e-5)
    checked = 0
    for g, dg, name in zip(grads, dgrads, names):
        if g is None:
            continue
        total = tf.convert_to_tensor(mirrored.reduce("SUM", dg, axis=None))
        np.testing.assert_allclose(total.numpy(), tf.convert_to_tensor(g).numpy(), atol=1e-5, err_msg=name)
        checked += 1
    assert checked == len(single.trainable_variables)


def test_complexity_term_composes_on_a_plain_training_model():
    """``RewardTrainingModel(terms=[ComplexityTerm(...)])`` trains exactly like the
    ``ComplexityAwareModel`` with the same settings: same history, same weights, and the term's
    optimizers are tracked by the model (checkpointed)."""
    kw = dict(budget_flops=0.4, flops_weight=0.5, gate_learning_rate=0.2, multiplier_learning_rate=0.5)
    aware = _model("cnn", **kw)
    keras.utils.set_random_seed(0)
    scorer = gated_copy(build_reward_model(ArchConfig(arch="cnn", **CFG)))
    plain = RewardTrainingModel(scorer, terms=[ComplexityTerm(**kw)])
    plain.compile(optimizer=keras.optimizers.Adam(1e-2))
    runs = [m.fit(_ds().repeat(), epochs=1, steps_per_epoch=4, verbose=0, callbacks=[BudgetController(2)]).history
            for m in (aware, plain)]
    assert runs[0] == runs[1] and "lambda_flops" in runs[1]
    for a, b in zip(aware.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)
    term = complexity_term(plain)
    assert set(plain.term_optimizers) == {"gate", "multiplier"}
    assert plain.term_optimizers["gate"] is term.gate_optimizer
    assert int(term.gate_optimizer.iterations.numpy()) == 4 and term.multipliers["flops"][0].numpy() != 0.0
    assert complexity_term(aware) is aware.complexity_term and aware.targets is aware.complexity_term.targets


@pytest.mark.parametrize("callback", [BudgetController(5), ComplexityLogger(), BudgetEarlyStopping()])
def test_complexity_callbacks_refuse_a_model_without_the_term(callback):
    keras.utils.set_random_seed(0)
    model = RewardTrainingModel(build_reward_model(ArchConfig(arch="bow", **CFG)))
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    with pytest.raises(UsageError, match=f"^{type(callback).__name__} needs a model with a complexity term"):
        model.fit(_ds(), epochs=1, verbose=0, callbacks=[callback])
