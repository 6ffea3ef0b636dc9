"""Shared recipe prefixes: kept only at branching points, restored as copies, and a run restored
from one gives the model and report of the same run from scratch."""
from __future__ import annotations

import numpy as np
import pytest

from rmcompress.compression.pipeline import compress
from rmcompress.compression.prefixcache import PrefixCache
from rmcompress.compression.recipe import Recipe
from tests.helpers import tiny_config

BUDGET = {"budget": {"flops_fraction": 0.5, "steps": 8, "batch_size": 16}}


def _recipe(name: str, *tail) -> Recipe:
    return Recipe.from_dict({"name": name, "passes": [BUDGET, "fuse", *tail]})


A = _recipe("a", {"quantise": {"mode": "dynamic"}})
# B trains after the point where it parts from A: its prune pass runs on the restored state
B = _recipe("b", {"prune": {"sparsity": 0.5, "steps": 3, "batch_size": 16}}, {"quantise": {"mode": "float16"}})
C = Recipe.from_dict({"name": "c", "passes": ["fuse", {"quantise": {"mode": "dynamic"}}]})


def test_only_branching_points_are_kept_and_released_when_no_run_needs_them():
    cache = PrefixCache()
    cache.plan([A, B, C])
    assert not cache.branching(A.passes[:1])  # both runs go on with fuse: the deeper prefix is kept
    assert cache.branching(A.passes[:2])      # budget + fuse, then they part
    assert not cache.branching(C.passes[:1])  # one run starts with a bare fuse
    assert not cache.branching(A.passes)      # the whole recipe: one run
    cache.release(A)
    assert not cache.branching(B.passes[:2])  # only B is left to start with it
    two = PrefixCache()
    two.plan([A, A, B])
    two.release(B)
    assert not two.branching(A.passes[:2])    # the runs left all go on with the same pass
    assert two.branching(A.passes)
    one = PrefixCache()
    one.plan([A, A])
    assert one.branching(A.passes)            # the same recipe twice: the second starts at its end


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, pointwise_file):
    from rmcompress.training.trainer import train

    out = tmp_path_factory.mktemp("prefix") / "m"
    train(pointwise_file, tiny_config(arch="transformer", max_steps=6), out, verbose=0)
    return out


def _weights(path):
    from rmcompress.models.modeldir import load_model_dir

    return load_model_dir(path).model.get_weights()


def test_a_run_restored_from_a_kept_prefix_equals_the_run_from_scratch(model_dir, pointwise_file, tmp_path):
    cache = PrefixCache()
    cache.plan([A, B])
    a = compress(model_dir, A, pointwise_file, tmp_path / "a", latency_runs=0, cache=cache)
    assert len(cache) == 1 and not any(p.get("reused") for p in a["passes"])
    lines = []
    b = compress(model_dir, B, pointwise_file, tmp_path / "b", latency_runs=0, cache=cache, log=lines.append)
    assert [p["pass"] for p in b["passes"] if p.get("reused")] == ["budget", "fuse"]
    assert any("reusing the state after budget, fuse" in line for line in lines)
    assert not any("pass budget" in line for line in lines)  # the budget pass did not run again
    alone = compress(model_dir, B, pointwise_file, tmp_path / "alone", latency_runs=0)
    assert b["passes"][-2]["pass"] == "prune" and not b["passes"][-2].get("reused")
    for k in ("accuracy", "flops", "params", "size_bytes", "vs_source_decision_agreement", "accuracy_drop_points"):
        assert b[k] == alone[k], k
    assert [p["validation"] for p in b["passes"]] == [p["validation"] for p in alone["passes"]]
    for x, y in zip(_weights(tmp_path / "b" / "model"), _weights(tmp_path / "alone" / "model")):
        np.testing.assert_array_equal(x, y)
    cache.release(A)
    cache.release(B)
    assert len(cache) == 0


def test_a_restored_state_is_a_copy_and_another_context_finds_nothing(model_dir, pointwise_file):
    from rmcompress.compression.state import prepare_state
    from rmcompress.models.modeldir import load_model_dir

    state = prepare_state(load_model_dir(model_dir), pointwise_file)
    cache = PrefixCache()
    cache.plan([C, Recipe.from_dict({"name": "d", "passes": ["fuse", {"quantise": {"mode": "float16"}}]})])
    assert cache.store("ctx", C.passes[:1], state)
    assert not cache.store("ctx", C.passes[:1], state)  # kept once
    k, first = cache.restore("ctx", C.passes)
    assert k == 1 and first.model is not state.model
    first.model.set_weights([w + 1.0 for w in first.model.get_weights()])
    _, second = cache.restore("ctx", C.passes)
    for x, y in zip(second.model.get_weights(), state.model.get_weights()):
        np.testing.assert_array_equal(x, y)
    assert cache.restore("other", C.passes) == (0, None)


def test_a_model_whose_clone_scores_differently_is_not_kept(model_dir, pointwise_file, monkeypatch):
    from rmcompress.compression import prefixcache
    from rmcompress.compression.state import prepare_state
    from rmcompress.models.modeldir import load_model_dir

    state = prepare_state(load_model_dir(model_dir), pointwise_file)
    real = prefixcache.keras.models.clone_model

    def off_by_one(model):  # a clone whose weights set_weights then overwrites: shift its bias after
        clone = real(model)
        original = clone.set_weights

        def shifted(weights):
            original([w + 0.5 for w in weights])
        clone.set_weights = shifted
        return clone

    monkeypatch.setattr(prefixcache.keras.models, "clone_model", off_by_one)
    cache = PrefixCache()
    cache.plan([C, C])
    assert not cache.store("ctx", C.passes, state) and len(cache) == 0
