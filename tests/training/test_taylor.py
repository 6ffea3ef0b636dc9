"""Importance pruning (magnitude and Taylor scores) to a budget on models the user wrote."""
from __future__ import annotations

import numpy as np
import pytest

from rmcompress.data.pipeline import EncodedData
from rmcompress.models.structure import count
from rmcompress.training.taylor import importance_prune, unit_scores_by
from tests.helpers import zoo_ids, zoo_model


@pytest.mark.parametrize("name", ["kim_cnn", "parallel_conv", "transformer_preln", "residual_gated", "keras3_cnn"])
@pytest.mark.parametrize("method", ["magnitude", "taylor"])
def test_importance_prune_of_a_user_model_lands_on_the_budget(name, method):
    model = zoo_model(name)
    ids = zoo_ids(64, seed=5)
    data = EncodedData("pointwise", ids=ids, labels=(ids[:, 0] % 2).astype(np.float32))
    scores = unit_scores_by(method, model, data, batches=4)
    assert scores and all(np.all(np.isfinite(v)) for v in scores.values())
    pruned = importance_prune(model, method, flops_fraction=0.5, data=data, batches=4)
    assert count(pruned).flops <= 0.5 * count(model).flops
    assert {type(layer).__module__.split(".")[0] for layer in pruned.layers} == {"tf_keras"}


def test_taylor_scores_rank_a_dead_unit_last():
    """A Dense unit whose outgoing weights are zero changes nothing: its Taylor score is 0."""
    model = zoo_model("dan")
    hidden = [layer for layer in model.layers if type(layer).__name__ == "Dense"]
    first, second = hidden[0], hidden[1]
    kernel, bias = second.get_weights()
    kernel[3, :] = 0.0
    second.set_weights([kernel, bias])
    ids = zoo_ids(64, seed=2)
    data = EncodedData("pointwise", ids=ids, labels=(ids[:, 0] % 2).astype(np.float32))
    scores = unit_scores_by("taylor", model, data, batches=4)
    assert scores[first.name][3] == pytest.approx(0.0, abs=1e-9)
    assert np.argmin(scores[first.name]) == 3
