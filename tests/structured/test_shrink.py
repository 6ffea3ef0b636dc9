"""``shrink``: exact equivalence with the gated model's deterministic outputs, exact FLOPs, smaller
layers, TFLite export; the budget projection."""
from __future__ import annotations

import numpy as np
import pytest

from rmcompress._keras import keras, tf
from rmcompress.models.structure import count
from rmcompress.layers.gates import CLOSED_LOG_ALPHA, gate_layers
from rmcompress.structured.gating import gated_copy
from rmcompress.cost.registry import is_gated
from rmcompress.structured.shrink import ensure_feasible, project_to_budget, shrink
from rmcompress.models.structure import gated_cost, infer_arch_config
from rmcompress.errors import ModelError
from rmcompress.models.archconfig import ArchConfig
from rmcompress.models.architectures import build_reward_model

CFG = dict(vocab_size=60, seq_len=16, width=16, depth=3, heads=2, head_dim=8, ffn=12, filters=[4, 5, 3],
           hidden=10, dropout=0.1)


def _ids(n=16, seed=0):
    rng = np.random.RandomState(seed)
    ids = rng.randint(1, 60, (n, 16)).astype("int32")
    for r in range(n):
        ids[r, rng.randint(3, 17):] = 0
    return ids


def _randomise(model, seed=0, spread=2.5):
    """Random weights (biases too) and random gates: non-binary kept values, closed units."""
    rng = np.random.RandomState(seed)
    for w in model.weights:
        if w.dtype == tf.float32 and "log_alpha" not in w.name:
            w.assign(rng.normal(0, 0.3, w.shape))
    for gate in gate_layers(model).values():
        gate.log_alpha.assign(rng.normal(0.5, spread, gate.log_alpha.shape))


def _check(gated, ids):
    shrunk = shrink(gated)
    assert not is_gated(shrunk)
    np.testing.assert_allclose(shrunk(ids).numpy(), gated(ids).numpy(), atol=1e-5, rtol=0)
    assert count(shrunk).as_dict() == count(gated).as_dict()
    assert gated_cost(gated, "deterministic").flops == count(shrunk).flops
    return shrunk


@pytest.mark.parametrize("arch", ["transformer", "cnn", "bow"])
@pytest.mark.parametrize("seed", [0, 1])
def test_shrink_equals_gated_deterministic_outputs(arch, seed):
    g = gated_copy(build_reward_model(ArchConfig(arch=arch, **CFG)), gate_vocab=True)
    _randomise(g, seed)
    shrunk = _check(g, _ids(seed=seed))
    assert count(shrunk).flops < gated_cost(g, "full").flops
    assert count(shrunk).params < gated_cost(g, "full").params


def test_shrink_removes_blocks_heads_and_ffn_sublayers():
    g = gated_copy(build_reward_model(ArchConfig(arch="transformer", **CFG)))
    _randomise(g)
    gates = gate_layers(g)
    gates["block0_attn_block"].log_alpha.assign([CLOSED_LOG_ALPHA])              # whole block 0 closed
    gates["block1_attn_heads"].log_alpha.assign([CLOSED_LOG_ALPHA] * 2)    # block 1: attention removed
    gates["block1_ffn_in"].log_alpha.assign([5.0] * 3 + [CLOSED_LOG_ALPHA] * 9)
    gates["block2_attn_block"].log_alpha.assign([5.0])
    gates["block2_attn_heads"].log_alpha.assign([5.0, CLOSED_LOG_ALPHA])
    gates["block2_ffn_in"].log_alpha.assign([CLOSED_LOG_ALPHA] * 12)   # block 2: FFN removed
    shrunk = _check(g, _ids())
    cfg = infer_arch_config(shrunk)
    names = {layer.name for layer in shrunk.layers}
    assert "block0_attn" not in names and "block0_ffn_in" not in names
    assert "block1_attn" not in names and "block1_attn_norm" not in names
    assert shrunk.get_layer("block1_ffn_in").units == 3
    assert shrunk.get_layer("block2_attn").num_heads == 1 and "block2_ffn_in" not in names
    assert cfg.blocks_present()[1:] == [True, True]


def test_shrink_narrows_embedding_and_cuts_vocabulary_rows():
    g = gated_copy(build_reward_model(ArchConfig(arch="cnn", **CFG)), gate_vocab=True)
    _randomise(g, 3)
    gates = gate_layers(g)
    la = gates["vocab"].log_alpha.numpy()
    la[::2] = CLOSED_LOG_ALPHA
    gates["vocab"].log_alpha.assign(la)
    shrunk = _check(g, _ids())
    emb = shrunk.get_layer("token_embedding")
    assert emb.input_dim < 60 and emb.output_dim < 16
    assert shrunk.get_layer("token_remap").input_vocab_size == 60
    assert shrunk.get_layer("token_remap").table_dtype == "int16"  # 2 bytes a token where the rows allow
    # gate the shrunk model again and shrink again: the remap tables compose
    again = gated_copy(shrunk, gate_vocab=True)
    gv = gate_layers(again)
    la2 = gv["vocab"].log_alpha.numpy()
    la2[:3] = CLOSED_LOG_ALPHA
    gv["vocab"].log_alpha.assign(la2)
    gv["conv4"].log_alpha.assign(np.full(gv["conv4"].units, CLOSED_LOG_ALPHA))
    twice = shrink(again)
    np.testing.assert_allclose(twice(_ids()).numpy(), again(_ids()).numpy(), atol=1e-5)
    assert twice.get_layer("token_embedding").input_dim == emb.input_dim - 3


def test_shrunk_model_exports_to_tflite():
    from rmcompress.runtime.tflite import TFLiteRunner, convert

    g = gated_copy(build_reward_model(ArchConfig(arch="transformer", **CFG)), gate_vocab=True)
    _randomise(g, 5)
    gate_layers(g)["vocab"].log_alpha.assign(np.r_[np.full(20, CLOSED_LOG_ALPHA), np.full(39, 3.0)])
    shrunk = shrink(g)
    runner = TFLiteRunner(convert(shrunk))
    ids = _ids()
    np.testing.assert_allclose(runner.score(ids), g(ids).numpy().reshape(-1), atol=1e-5)


def test_ensure_feasible_keeps_a_unit_where_the_graph_needs_one():
    g = gated_copy(build_reward_model(ArchConfig(arch="bow", **CFG)))
    _randomise(g)
    for gate in gate_layers(g).values():
        gate.log_alpha.assign(np.full(gate.units, CLOSED_LOG_ALPHA))
    assert set(ensure_feasible(g)) == {"token_embedding", "hidden"}
    shrunk = _check(g, _ids())
    assert infer_arch_config(shrunk).width == 1 and infer_arch_config(shrunk).hidden == 1


@pytest.mark.parametrize("budget", [0.5, 0.2, 0.05])
def test_project_to_budget_lands_on_the_budget(budget):
    g = gated_copy(build_reward_model(ArchConfig(arch="transformer", **{**CFG, "ffn": 48})))
    _randomise(g, 7, spread=1.0)
    dense = gated_cost(g, "full").flops
    out = project_to_budget(g, budget_flops=budget)
    flops = count(g).flops
    assert out["budget_met"] and flops == out["flops"]
    assert budget * dense * 0.95 <= flops <= budget * dense
    _check(g, _ids())


def test_project_to_budget_params_with_vocabulary():
    g = gated_copy(build_reward_model(ArchConfig(arch="bow", **CFG)), gate_vocab=True)
    _randomise(g, 2, spread=0.5)
    dense = gated_cost(g, "full").params
    project_to_budget(g, budget_params=0.3)
    assert 0.27 * dense <= count(g).params <= 0.3 * dense
    _check(g, _ids())


def test_shrink_of_a_plain_model_is_an_error():
    with pytest.raises(ModelError, match="no gate layers"):
        shrink(build_reward_model(ArchConfig(arch="bow", **CFG)))


def test_shrunk_model_is_an_ordinary_model(tmp_path):
    g = gated_copy(build_reward_model(ArchConfig(arch="cnn", **CFG)))
    _randomise(g, 4)
    shrunk = shrink(g)
    shrunk.save(tmp_path / "s.keras")
    from rmcompress.layers.encoder import CUSTOM_LAYERS

    back = keras.models.load_model(tmp_path / "s.keras", custom_objects=CUSTOM_LAYERS, safe_mode=True, compile=False)
    np.testing.assert_array_equal(back(_ids()).numpy(), shrunk(_ids()).numpy())


def test_magnitude_prune_removes_the_smallest_units_to_the_budget():
    from rmcompress.structured.magnitude import magnitude_prune, unit_scores

    keras.utils.set_random_seed(0)
    model = build_reward_model(ArchConfig(arch="transformer", **{**CFG, "depth": 1, "ffn": 40}))
    ffn_in, ffn_out = model.get_layer("block0_ffn_in"), model.get_layer("block0_ffn_out")
    k_in, k_out = ffn_in.kernel.numpy(), ffn_out.kernel.numpy()
    k_in[:, :10] *= 0.01  # units 0..9 are tiny
    k_out[:10] *= 0.01
    ffn_in.kernel.assign(k_in)
    ffn_out.kernel.assign(k_out)
    scores = unit_scores(model)
    assert set(np.argsort(scores["block0_ffn_in"])[:10]) == set(range(10))
    dense = count(model).flops
    small = magnitude_prune(model, flops_fraction=0.6)
    assert count(small).flops <= 0.6 * dense
    kept_in = small.get_layer("block0_ffn_in").kernel.numpy() if "block0_ffn_in" in {
        layer.name for layer in small.layers} else np.zeros((16, 0))
    # the large units are kept first, with unchanged weights (small ones only where they still fit)
    for c in range(10, 40):
        assert np.any(np.all(np.isclose(kept_in, k_in[:, c:c + 1]), axis=0)), c
    assert kept_in.shape[1] < 40 or "block0_attn" not in {layer.name for layer in small.layers}


def test_transformer_head_hidden_is_a_group_and_prunes_to_a_bag_with_a_hidden_layer():
    """``head_hidden``: a ReLU layer between the pooling and the reward, gated like any group. With
    every block and some hidden units closed the shrunk model is embeddings -> final LN -> mean ->
    hidden -> reward, equal to the gated one, counted exactly, and it exports to TFLite."""
    from rmcompress.runtime.tflite import TFLiteRunner, convert

    cfg = ArchConfig(arch="transformer", **{**CFG, "head_hidden": 6})
    plain = build_reward_model(cfg)
    table = count(plain).table.set_index("layer")
    # hidden: 2*16*6 matmul + 6 bias + 6 ReLU; reward now reads 6 units: 2*6 + 1
    assert table.loc["hidden", "flops"] == 2 * 16 * 6 + 6 + 6 and table.loc["hidden", "params"] == 16 * 6 + 6
    assert table.loc["reward", "flops"] == 2 * 6 + 1 and table.loc["reward", "params"] == 7
    assert infer_arch_config(plain).head_hidden == 6
    g = gated_copy(build_reward_model(cfg))
    _randomise(g, 4)
    gates = gate_layers(g)
    assert gates["hidden"].units == 6
    for i in range(3):
        gates[f"block{i}_attn_block"].log_alpha.assign([CLOSED_LOG_ALPHA])
    gates["hidden"].log_alpha.assign([5.0, CLOSED_LOG_ALPHA, 5.0, 5.0, CLOSED_LOG_ALPHA, 0.5])
    shrunk = _check(g, _ids())
    c = infer_arch_config(shrunk)
    assert c.head_hidden == 4 and not any(c.blocks_present())
    names = {layer.name for layer in shrunk.layers}
    assert {"final_norm", "pool", "hidden", "reward"} <= names and not any(n.startswith("block") for n in names)
    runner = TFLiteRunner(convert(shrunk))
    np.testing.assert_allclose(runner.score(_ids()), g(_ids()).numpy().reshape(-1), atol=1e-5)
    with pytest.raises(ModelError, match="head_hidden"):
        ArchConfig(arch="bow", head_hidden=4)


def test_head_hidden_in_magnitude_pruning_and_fuse():
    """The registry's slices serve magnitude scores for the ``hidden`` group; ``fuse`` folds the
    final LayerNorm's scale through the mean pooling into the hidden layer (exact)."""
    from rmcompress.structured.magnitude import magnitude_prune, normalised_scores
    from rmcompress.compression.fuse import fuse, max_abs_diff

    model = build_reward_model(ArchConfig(arch="transformer", **{**CFG, "head_hidden": 6}))
    _randomise(model, 5)
    assert normalised_scores(model)["hidden"].shape == (6,)
    small = magnitude_prune(model, flops_fraction=0.3)
    assert count(small).flops <= 0.3 * count(model).flops and infer_arch_config(small).head_hidden >= 1
    fused, note = fuse(model, sample_ids=_ids())
    assert note["folded_layernorm_scale"] == ["final_norm -> pool -> hidden"]
    assert max_abs_diff(model, fused, _ids()) < 1e-5


@pytest.mark.parametrize("seed", [0, 1])
def test_cnn_head_hidden_shrinks_exactly(seed):
    """The cnn's ``head_hidden`` layer reads the pooled filters: closed filters remove its input
    rows, closed hidden units its columns; shrink == gated and the counts agree."""
    g = gated_copy(build_reward_model(ArchConfig(arch="cnn", **{**CFG, "head_hidden": 7})))
    _randomise(g, seed)
    gates = gate_layers(g)
    gates["hidden"].log_alpha.assign([5.0, CLOSED_LOG_ALPHA, 5.0, 0.5, CLOSED_LOG_ALPHA, 5.0, 5.0])
    shrunk = _check(g, _ids(seed=seed))
    cfg = infer_arch_config(shrunk)
    assert cfg.head_hidden == 5
    assert shrunk.get_layer("hidden").kernel.shape[0] == sum(cfg.per_conv())


def test_cnn_with_narrow_kernel_widths_shrinks_exactly():
    """``kernel_sizes`` 1 and 2 (cheaper filters for small budgets): gated, shrunk, equal outputs and
    FLOPs; the widths survive shrinking and a width-1 filter costs 2 (T) E FLOPs."""
    cfg = ArchConfig(arch="cnn", **{**CFG, "kernel_sizes": [1, 2, 5], "head_hidden": 4})
    g = gated_copy(build_reward_model(cfg))
    assert set(gate_layers(g)) == {"token_embedding", "conv1", "conv2", "conv5", "hidden"}
    _randomise(g, seed=3, spread=1.5)
    shrunk = _check(g, _ids(seed=3))
    assert infer_arch_config(shrunk).kernel_sizes == [1, 2, 5]
    plain = build_reward_model(ArchConfig(arch="cnn", **{**CFG, "kernel_sizes": [1], "filters": 1}))
    conv = count(plain).table.set_index("layer").loc["conv1"]
    assert conv["flops"] == 2 * 16 * CFG["width"] + 16 + 16  # multiply-adds at T=16 positions, bias, ReLU


@pytest.mark.parametrize("widths", [[3, 3], [0, 2], [], [17]])
def test_bad_kernel_widths_are_refused_by_name(widths):
    with pytest.raises(ModelError, match=r"kernel_sizes=.*distinct widths between 1 and the sequence length 16"):
        ArchConfig(arch="cnn", **{**CFG, "kernel_sizes": widths, "filters": 4})
