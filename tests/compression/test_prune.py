"""prune (tfmot) on every weight layer type the architectures use, checked against the model it came
from: magnitude masks, 2:4 patterns, schedules, layer selection, strip parity."""
from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import transformer_state
from rmcompress.compression.fuse import fuse
from rmcompress.compression.prune import prune
from rmcompress.compression.settings import PruneSettings
from rmcompress.compression.targets import select_layers, weight_arrays


@pytest.fixture(scope="module")
def state(tmp_path_factory, pointwise_file):
    return transformer_state(tmp_path_factory, pointwise_file, max_steps=4)


def test_one_shot_magnitude_pruning_matches_numpy(state):
    model = state.model
    pruned, note = prune(model, state, PruneSettings(sparsity=0.5, schedule="constant", steps=0))
    names = note["layers"]
    # the position table is an embedding too; the reward head stays dense
    assert set(names) == {"token_embedding", "position_embedding", "block0_attn", "block0_ffn_in", "block0_ffn_out"}
    for name in names:
        before, after = weight_arrays(model.get_layer(name)), weight_arrays(pruned.get_layer(name))
        assert set(before) == set(after)
        for k in before:
            b, a = before[k], after[k]
            assert abs(np.mean(a == 0) - 0.5) <= 1.0 / b.size + 1e-9, (name, k)
            kept = a != 0
            np.testing.assert_array_equal(a[kept], b[kept])  # no weight update with steps=0
            assert np.abs(b[~kept]).max() <= np.abs(b[kept]).min()  # the smallest magnitudes went
        assert note["sparsity"][name] == {k: pytest.approx(0.5, abs=0.01) for k in before}
    np.testing.assert_array_equal(pruned.get_layer("reward").get_weights()[0], model.get_layer("reward").get_weights()[0])
    # the stripped model is the source model with those weights zeroed
    from rmcompress.compression.targets import copy_model

    manual = copy_model(model)
    for name in names:
        layer = manual.get_layer(name)
        layer.set_weights([np.where(p == 0, 0, w) for w, p in zip(layer.get_weights(), pruned.get_layer(name).get_weights())])
    ids = state.val_ids(64)
    np.testing.assert_allclose(pruned.predict(ids, verbose=0), manual.predict(ids, verbose=0), atol=1e-6)
    assert note["strip_max_abs_diff"] <= 1e-6
    assert all(not type(l).__name__.startswith("Prune") for l in pruned.layers)  # strip_pruning done


def test_two_of_four_pattern_on_fused_layers_and_polynomial_schedule(state, tmp_path):
    fused, _ = fuse(state.model, state.val_ids(32))
    try:
        import tensorboard  # noqa: F401
        logs = str(tmp_path / "logs")
    except ImportError:  # PruningSummaries needs TensorBoard: a clear recipe error without it
        from rmcompress.errors import RecipeError

        with pytest.raises(RecipeError, match="summaries_dir: PruningSummaries needs the tensorboard package"):
            prune(fused, state, PruneSettings(steps=1, summaries_dir=str(tmp_path / "logs")))
        logs = None
    pruned, note = prune(fused, state, PruneSettings(m_by_n=[2, 4], schedule="constant", steps=2,
                                                     summaries_dir=logs, learning_rate=1e-3))
    assert set(note["m_by_n_layers"]) == set(note["layers"])
    for name in note["layers"]:
        for k, w in weight_arrays(pruned.get_layer(name)).items():
            full = (w.shape[0] // 4) * 4  # complete groups (tfmot pads a ragged last group)
            groups = w.T[:, :full].reshape(w.shape[1], -1, 4)  # 4 consecutive input weights per output
            assert np.all((groups == 0).sum(-1) >= 2), (name, k)
    if logs:
        assert any((tmp_path / "logs").rglob("*"))  # PruningSummaries wrote TensorBoard logs
    pruned, note = prune(fused, state, PruneSettings(sparsity=0.8, schedule="polynomial", steps=12, frequency=2,
                                                     layers={"include": ["ffn"]}, embedding=False))
    assert note["layers"] == ["block0_ffn_in", "block0_ffn_out"]
    assert note["overall_sparsity"] == pytest.approx(0.8, abs=0.02)


def test_selection_rules(state):
    assert select_layers(state.model, {"exclude": []}, embedding=False) == [
        "block0_attn", "block0_ffn_in", "block0_ffn_out", "reward"]
    from rmcompress.errors import RecipeError

    with pytest.raises(RecipeError, match="not a valid regular expression"):
        select_layers(state.model, {"include": ["("]})
    with pytest.raises(RecipeError, match="no layer selected"):
        prune(state.model, state, PruneSettings(layers={"include": ["nothing"]}, steps=0, schedule="constant"))
