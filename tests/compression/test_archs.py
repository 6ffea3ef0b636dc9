"""Recipes on the other architectures (CNN, bag of embeddings), exported, parity-checked, evaluated."""
from __future__ import annotations

import pytest

from tests.helpers import tiny_config
from rmcompress.compression.pipeline import compress

INT8 = {"name": "int8-fac", "passes": ["fuse", {"factorise": {"max_error": 0.5}}, "length",
                                       {"quantise": {"mode": "int8", "calibration_samples": 32}}],
        "export": {"formats": ["tflite"], "latency_runs": 5}}


@pytest.mark.parametrize("arch, recipe", [("cnn", INT8), ("bow", "lossless")])
def test_pointwise_architectures(arch, recipe, pointwise_file, tmp_path):
    from rmcompress.training.trainer import train

    train(pointwise_file, tiny_config(arch=arch, max_steps=4), tmp_path / "m", verbose=0)
    r = compress(tmp_path / "m", recipe, pointwise_file, tmp_path / "out", latency_runs=5)
    assert 0 <= r["accuracy"] <= 1 and r["n_examples"] > 0 and (tmp_path / "out" / "model.tflite").is_file()
    if arch == "cnn":
        assert r["passes"][[n["pass"] for n in r["passes"]].index("length")]["margin"] == 4  # widest kernel 5
    assert r["length_trim_max_abs_diff"] <= (1e-4 if r["quantize"] == "float16" else 0.05)


def test_transformer_with_a_head_hidden_layer_through_budget_fuse_and_int8(pointwise_file, tmp_path):
    """``--head-hidden``: the budget pass gates the reward-head units too, fuse folds the final
    LayerNorm's scale into the hidden layer, and the int8 export passes its parity check."""
    from rmcompress.training.trainer import train

    train(pointwise_file, tiny_config(arch="transformer", head_hidden=8, max_steps=4), tmp_path / "m", verbose=0)
    recipe = {"name": "hh", "passes": [{"budget": {"flops_fraction": 0.3, "steps": 6, "gate_init": "magnitude"}},
                                       "fuse", {"quantise": {"mode": "int8", "calibration_samples": 32}}],
              "export": {"formats": ["tflite"], "latency_runs": 5}}
    r = compress(tmp_path / "m", recipe, pointwise_file, tmp_path / "out", latency_runs=5)
    budget, fuse = r["passes"][0], r["passes"][1]
    assert budget["flops_after"] <= 0.3 * budget["flops_before"] and budget["finetune_fraction"] == 0.8
    assert any(entry.endswith("-> hidden") for entry in fuse["folded_layernorm_scale"])
    assert 0 <= r["accuracy"] <= 1 and (tmp_path / "out" / "model.tflite").is_file()
