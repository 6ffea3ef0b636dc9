"""Mixed-precision training: bfloat16 compute, float32 reward/loss/complexity term, float32 model
directory with the trained weights, and the global policy left as it was."""
import json

import numpy as np
import pytest

from rmcompress._keras import keras, tf
from rmcompress.layers.gates import L0Gate
from rmcompress.models.architectures import ArchConfig, build_reward_model
from rmcompress.structured.gating import gated_copy
from rmcompress.models.modeldir import load_model_dir, load_samples
from rmcompress.training.complexity_model import complexity_term
from rmcompress.training.precision import MIXED, float32_outputs, is_mixed, policy_scope, recast
from rmcompress.training.trainer import train

from tests.helpers import tiny_config


def _compute_dtypes(model) -> set:
    return {layer.dtype_policy.compute_dtype for layer in model.submodules if isinstance(layer, keras.layers.Layer)}


def test_policy_scope_restores_the_policy_also_after_an_error():
    with policy_scope(True):
        assert keras.mixed_precision.global_policy().name == MIXED
    assert keras.mixed_precision.global_policy().name == "float32"
    with pytest.raises(RuntimeError):
        with policy_scope(True):
            raise RuntimeError("boom")
    assert keras.mixed_precision.global_policy().name == "float32"
    with policy_scope(False):
        assert keras.mixed_precision.global_policy().name == "float32"


def test_recast_round_trip_keeps_the_weights_bit_for_bit():
    arch = ArchConfig(arch="transformer", vocab_size=50, seq_len=8, width=16, depth=1, heads=2, head_dim=8, ffn=32)
    model = gated_copy(build_reward_model(arch))
    mixed = recast(model, MIXED)
    assert is_mixed(mixed) and not is_mixed(model)
    assert "bfloat16" in _compute_dtypes(mixed)
    gates = [l for l in mixed.submodules if isinstance(l, L0Gate)]
    assert gates and all(g.dtype_policy.name == "float32" and g.log_alpha.dtype == tf.float32 for g in gates)
    back = recast(mixed, "float32")
    assert _compute_dtypes(back) <= {"float32", "int32"}
    for a, b in zip(model.get_weights(), back.get_weights()):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    ids = np.random.RandomState(0).randint(1, 50, size=(16, 8)).astype(np.int32)
    want = model.predict(ids, verbose=0)
    got = np.asarray(mixed.predict(ids, verbose=0), np.float32)
    np.testing.assert_allclose(got, want, rtol=5e-2, atol=5e-2 * np.abs(want).max())
    np.testing.assert_array_equal(back.predict(ids, verbose=0), want)


def test_float32_outputs_casts_floating_tensors_only():
    out = float32_outputs((tf.ones([2], tf.bfloat16), tf.ones([2], tf.int32), None))
    assert out[0].dtype == tf.float32 and out[1].dtype == tf.int32 and out[2] is None


def test_mixed_precision_run_writes_a_float32_model_with_the_trained_weights(pointwise_file, tmp_path):
    res = train(pointwise_file, tiny_config(arch="transformer", mixed_precision=True), tmp_path / "m")
    assert keras.mixed_precision.global_policy().name == "float32"
    trained = res.training_model.scorer
    assert "bfloat16" in _compute_dtypes(trained)  # it trained in mixed precision
    bundle = load_model_dir(res.out_dir)
    assert _compute_dtypes(bundle.model) <= {"float32", "int32"}
    assert _compute_dtypes(res.bundle.model) <= {"float32", "int32"}
    for a, b in zip(trained.get_weights(), bundle.model.get_weights()):
        assert b.dtype == np.float32 or not np.issubdtype(b.dtype, np.floating)
        np.testing.assert_array_equal(a, b)
    ids = load_samples(res.out_dir)["validation_ids"][:64]
    want = np.asarray(trained.predict(ids, verbose=0), np.float32)
    got = bundle.model.predict(ids, verbose=0)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=5e-2, atol=5e-2 * np.abs(want).max())
    report = json.loads((res.out_dir / "report.json").read_text())
    assert report["mixed_precision"] is True
    assert bundle.metadata["train_config"]["mixed_precision"] is True


def test_budget_run_keeps_the_complexity_term_in_float32_and_lands_on_the_budget(pointwise_file):
    res = train(pointwise_file, tiny_config(arch="cnn", mixed_precision=True, budget_flops=0.5, max_steps=12), None)
    model = res.training_model
    term = complexity_term(model)
    assert "bfloat16" in _compute_dtypes(model.scorer)
    assert term.gates and all(g.dtype_policy.name == "float32" and g.log_alpha.dtype == tf.float32
                              for g in term.gates.values())
    assert all(v.dtype == tf.float32 for v in term.expected_fractions().values())
    assert all(v.dtype == tf.float32 for v in term.scalars(model, None, True).values())
    row = res.extra["complexity_log"][-1]
    assert np.isfinite(row["expected_flops_fraction"]) and 0 < row["expected_flops_fraction"] <= 1
    assert res.report["flops_fraction"] <= 0.5 * 1.02
    assert res.report["mixed_precision"] is True
    assert _compute_dtypes(res.bundle.model) <= {"float32", "int32"}
    assert keras.mixed_precision.global_policy().name == "float32"


def test_the_policy_is_float32_after_a_failed_run(pointwise_file):
    def failing(scorer, cfg, loss):
        assert keras.mixed_precision.global_policy().name == MIXED  # built under the mixed policy
        raise RuntimeError("no training model")

    with pytest.raises(RuntimeError, match="no training model"):
        train(pointwise_file, tiny_config(arch="bow", mixed_precision=True), None, build_training_model=failing)
    assert keras.mixed_precision.global_policy().name == "float32"
