"""length: a dynamic sequence dimension gives the same rewards at any cut >= the real length (Keras
and TFLite), buckets come from the data, and latency is measured at the real lengths."""
from __future__ import annotations

import numpy as np
import pytest

from rmcompress.compression.length import (bucket_for, check_trim_parity, choose_buckets, dynamic_length_model,
                                           latency_at_lengths, min_length, needed_lengths, real_lengths, trim)
from rmcompress.models.archconfig import ArchConfig
from rmcompress.models.architectures import build_reward_model
from tests.helpers import SMALL, randomize, token_ids


def test_lengths_and_buckets():
    ids = np.array([[5, 6, 0, 0], [5, 0, 0, 0], [0, 0, 0, 0], [1, 2, 3, 4]])
    assert list(real_lengths(ids)) == [2, 1, 0, 4]
    rng = np.random.RandomState(0)
    many = np.zeros((1000, 64), np.int32)
    for i, L in enumerate(rng.randint(1, 40, size=1000)):
        many[i, :L] = 7
    b = choose_buckets(many, 64, (0.5, 0.9))
    assert b[-1] == 64 and all(x % 8 == 0 for x in b) and len(b) == 3
    assert b[0] >= np.quantile(real_lengths(many), 0.5)
    assert [bucket_for(L, [16, 32, 64]) for L in (1, 16, 17, 64, 80)] == [16, 16, 32, 64, 64]


@pytest.mark.parametrize("arch", ["transformer", "cnn", "bow"])
def test_dynamic_length_gives_the_same_rewards(arch):
    model = randomize(build_reward_model(ArchConfig(arch=arch, **SMALL)), seed=2)
    dyn = dynamic_length_model(model)
    assert dyn.input_shape == (None, None) and model.input_shape == (None, 16)
    ids = token_ids(n=32)
    floor = min_length(model)
    assert floor == (5 if arch == "cnn" else 1)
    full = model.predict(ids, verbose=0).reshape(-1)
    worst = 0.0
    for L in (max(floor, 8), 12, 16):
        rows = np.flatnonzero(needed_lengths(ids, floor - 1, 16) <= L)
        assert len(rows)
        got = dyn.predict(trim(ids[rows], L), verbose=0).reshape(-1)
        worst = max(worst, float(np.max(np.abs(got - full[rows]))))
    assert worst <= 1e-5


def test_dynamic_tflite_runs_at_any_length_and_measures_real_length_latency():
    from rmcompress.runtime.tflite import TFLiteRunner, convert

    model = randomize(build_reward_model(ArchConfig(arch="transformer", **SMALL)), seed=2)
    flat = convert(dynamic_length_model(model))
    runner = TFLiteRunner(flat)
    assert runner.dynamic_length
    ids = token_ids(n=40)
    full = runner.score(ids)
    np.testing.assert_allclose(full, model.predict(ids, verbose=0).reshape(-1), atol=1e-4)
    assert check_trim_parity(runner.score, TFLiteRunner(flat).score, ids, [8, 16]) <= 1e-5
    lat = latency_at_lengths(flat, ids, [8, 16], runs=30, warmup=5)
    assert lat["latency_ms_p50_real_length"] > 0 and sum(lat["bucket_counts"].values()) == len(ids)
    dyn = latency_at_lengths(flat, ids, None, runs=30, warmup=5)
    assert dyn["mean_scored_length"] == pytest.approx(np.mean(np.maximum(real_lengths(ids), 1)))
    # cutting a CNN input right after its last token would drop windows that read padding
    cnn = randomize(build_reward_model(ArchConfig(arch="cnn", **SMALL)), seed=2)
    assert list(needed_lengths(np.array([[3, 4, 0, 0, 0, 0, 0, 0]]), min_length(cnn) - 1, 8)) == [6]


def test_op_profile_times_every_op():
    from rmcompress.evaluation.op_profile import op_dtypes, profile_ops, summarise
    from rmcompress.runtime.tflite import convert

    model = randomize(build_reward_model(ArchConfig(arch="transformer", **SMALL)), seed=2)
    flat = convert(model)
    table = profile_ops(flat, token_ids(n=1), runs=5, warmup=1)
    assert len(table) == len(op_dtypes(flat)) and table["us"].notna().all() and (table["us"] > 0).all()
    assert {"FULLY_CONNECTED", "BATCH_MATMUL", "SOFTMAX"} <= set(table["op"])
    summary = summarise(table)
    assert summary["share"].sum() == pytest.approx(1.0) and summary["count"].sum() == len(table)

