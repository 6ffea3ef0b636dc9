"""attention: with one head left, keep it, drop attention or shorten the length buckets -- each
alternative is what it claims, and the choice follows the validation figures."""
from __future__ import annotations

import numpy as np
import pytest

from rmcompress.compression.attention import (AttentionPass, attention_heads, choose, drop_attention, keras_score,
                                              validation_quality)
from rmcompress.compression.recipe import Recipe
from rmcompress.compression.settings import AttentionSettings
from rmcompress.errors import RecipeError
from tests.helpers import tiny_config


@pytest.fixture(scope="module")
def one_head_state(tmp_path_factory, pointwise_file):
    from rmcompress.compression.state import prepare_state
    from rmcompress.models.modeldir import load_model_dir
    from rmcompress.training.trainer import train

    out = tmp_path_factory.mktemp("onehead") / "m"
    train(pointwise_file, tiny_config(arch="transformer", heads=1, max_steps=30), out, verbose=0)

    def fresh():
        return prepare_state(load_model_dir(out), pointwise_file, {"val_fraction": 0.2})
    return fresh


def test_dropping_the_head_equals_the_attention_branch_reduced_to_its_bias(one_head_state):
    from rmcompress._keras import keras

    state = one_head_state()
    assert sum(attention_heads(state.model).values()) == 1
    ids = state.val_ids(128)
    small, diff = drop_attention(state.model, 1e-5, ids)
    assert attention_heads(small) == {} and diff <= 1e-5
    # independent reference: the source with the head's output kernel zeroed outputs the bias alone
    ref = keras.models.clone_model(state.model)
    ref.set_weights(state.model.get_weights())
    att = [layer for layer in ref.layers if hasattr(layer, "output_kernel")]
    assert len(att) == 1
    att[0].output_kernel.assign(np.zeros(att[0].output_kernel.shape, np.float32))
    assert np.max(np.abs(keras_score(small)(ids) - keras_score(ref)(ids))) <= 1e-5
    assert np.max(np.abs(keras_score(small)(ids) - keras_score(state.model)(ids))) > 1e-4  # it did change


def test_the_pass_records_every_alternative_and_keeps_the_best_on_validation(one_head_state):
    state = one_head_state()
    keep_scores = keras_score(state.model)(state.val_ids())
    result = AttentionPass()(state, AttentionSettings(steps=20))
    note, new = result.notes, result.state
    alts = note["alternatives"]
    assert set(alts) == {"keep", "drop", "length"} and note["metric"] == "accuracy"
    # length: the same model, scored at shorter buckets, equal to full length
    assert alts["length"]["accuracy"] == alts["keep"]["accuracy"] and alts["length"]["trim_max_abs_diff"] <= 1e-5
    assert alts["length"]["tokens"] < alts["keep"]["tokens"] and alts["length"]["buckets"][-1] == 16
    assert alts["drop"]["flops"] < alts["keep"]["flops"] and alts["drop"]["shrink_max_abs_diff"] <= 1e-5
    # the steps drop trained, beside those asked (what the search reads to skip a repeat at more steps)
    assert note["steps"] == alts["drop"]["finetune_steps"] <= note["steps_requested"] == 20
    best = max(a["accuracy"] for a in alts.values())
    assert note["chosen_validation"] == best == alts[note["chosen"]]["accuracy"]
    # the figure recorded is the kept model's own validation figure
    assert validation_quality(new, keras_score(new.model))["accuracy"] == pytest.approx(alts[note["chosen"]]["accuracy"])
    if note["chosen"] == "length":
        assert new.export.length.buckets == alts["length"]["buckets"]
        assert np.array_equal(keras_score(new.model)(new.val_ids()), keep_scores)
    if note["chosen"] == "drop":
        assert attention_heads(new.model) == {}


def test_the_choice_follows_validation_then_cost():
    c = {"keep": {"accuracy": 0.80, "flops": 100, "tokens": 64.0},
         "drop": {"accuracy": 0.78, "flops": 60, "tokens": 64.0},
         "length": {"accuracy": 0.80, "flops": 100, "tokens": 30.0}}
    assert choose(c, "accuracy", 0.0) == "length"          # ties with keep on validation, cheaper
    assert choose(c, "accuracy", 2.0) == "drop"            # within 2 points and cheapest
    c["drop"]["accuracy"] = 0.81
    assert choose(c, "accuracy", 0.0) == "drop"            # better on validation wins outright
    c["keep"]["accuracy"] = 0.83
    assert choose(c, "accuracy", 0.0) == "keep"            # however much the others save


def test_the_pass_does_nothing_with_more_heads(trained_models, pointwise_file):
    from rmcompress.compression.state import prepare_state
    from rmcompress.models.modeldir import load_model_dir

    state = prepare_state(load_model_dir(trained_models["transformer"].out_dir), pointwise_file)
    model = state.model
    result = AttentionPass()(state, AttentionSettings())
    assert "2 heads left" in result.notes["skipped"] and result.state.model is model
    assert (result.notes["steps"], result.notes["steps_requested"]) == (0, 600)  # nothing trained


def test_recipe_settings_are_validated():
    spec = Recipe.from_dict({"passes": [{"budget": {"flops_fraction": 0.1}},
                                        {"attention": {"alternatives": ["keep", "drop"]}}]}).passes[1]
    assert spec.settings == AttentionSettings(alternatives=["keep", "drop"])
    with pytest.raises(RecipeError, match="passes\\[0\\].attention.alternatives"):
        Recipe.from_dict({"passes": [{"attention": {"alternatives": ["keep", "prune"]}}]})
    with pytest.raises(RecipeError, match="may not follow|order|before"):
        Recipe.from_dict({"passes": ["prune", "attention"]})
