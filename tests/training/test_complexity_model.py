"""Budget training of models the user wrote, in their own ``fit``: ``ComplexityAwareModel`` gates
the plain model itself, the expected FLOPs follow the budget, and ``model.shrink()`` lands on it
with the shrunk model equal to the gated one."""
from __future__ import annotations

import numpy as np
import pytest

from rmcompress._keras import keras
from rmcompress.errors import ModelError
from rmcompress.layers.gates import gate_layers
from rmcompress.models.structure import count, cost_model
from rmcompress.structured.gating import gated_copy
from rmcompress.training.complexity_model import ComplexityAwareModel, ComplexityTerm
from rmcompress.training.model import RewardTrainingModel
from tests.helpers import ZOO, zoo_ids, zoo_model


def _floor(gated):
    """FLOPs with every group at the one unit it must keep."""
    term_structure = ComplexityAwareModel(gated).structure
    alive = {g: 1 for g in term_structure.groups}
    return float(cost_model(gated, term_structure).evaluate(alive).flops)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_budget_training_on_a_user_model(name):
    model = zoo_model(name)
    ids = zoo_ids(128, seed=3)
    labels = (ids[:, 1] % 2).astype(np.float32)
    wrapped = ComplexityAwareModel(model, budget_flops=0.5)
    assert wrapped.scorer is not model and gate_layers(wrapped.scorer)
    wrapped.compile(optimizer=keras.optimizers.Adam(1e-3))
    start = wrapped.expected_fractions()["flops"].numpy()
    wrapped.fit(ids, labels, batch_size=32, epochs=3, verbose=0)
    assert wrapped.expected_fractions()["flops"].numpy() < start  # the gates moved toward the budget
    shrunk = wrapped.shrink()
    dense = count(model).flops
    limit = max(0.5 * dense, _floor(wrapped.scorer))
    assert count(shrunk).flops <= limit + 1e-6
    a = np.asarray(wrapped.scorer(ids, training=False)).reshape(-1)
    b = np.asarray(shrunk(ids, training=False)).reshape(-1)
    assert np.max(np.abs(a - b)) <= 1e-5 * max(1.0, np.max(np.abs(a)))


def test_a_complexity_term_on_an_ungated_scorer_says_how_to_gate_it():
    with pytest.raises(ModelError, match="gated_copy"):
        RewardTrainingModel(zoo_model("dan"), terms=[ComplexityTerm(budget_flops=0.5)])


def test_a_gated_scorer_is_used_as_it_is():
    gated = gated_copy(zoo_model("dan"))
    assert ComplexityAwareModel(gated, budget_flops=0.5).scorer is gated
