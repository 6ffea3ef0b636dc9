"""Gating and shrinking models the user wrote: the gated copy computes what the model does, the
shrunk model what the gated one does (1e-5), with the user's own layer classes, loadable without
rmcompress, at exactly the FLOPs/params the gates promised."""
from __future__ import annotations

import numpy as np
import pytest

from rmcompress._keras import keras
from rmcompress.cost.registry import is_gated
from rmcompress.layers.gates import gate_layers
from rmcompress.models.structure import count, gated_cost, structure_of
from rmcompress.structured.gating import gated_copy
from rmcompress.structured.shrink import shrink
from tests.helpers import ZOO, ZOO_SEQ, ZOO_VOCAB, randomize, zoo_ids, zoo_model


def _out(model, ids):
    return np.asarray(model(ids, training=False), np.float64).reshape(-1)


def _close_half(gated, seed=0):
    """Half of each group's units closed, the rest open with gate values in (0, 1]."""
    rng = np.random.RandomState(seed)
    for gate in gate_layers(gated).values():
        la = rng.uniform(-1.0, 3.0, gate.units)
        la[rng.permutation(gate.units)[: gate.units // 2]] = -10.0
        gate.log_alpha.assign(la.astype(np.float32))


@pytest.mark.parametrize("name", sorted(ZOO))
def test_gated_copy_then_shrink_is_exact(name, tmp_path):
    model = zoo_model(name)
    ids = zoo_ids()
    gated = gated_copy(model)
    assert is_gated(gated) and not is_gated(model)
    np.testing.assert_allclose(_out(gated, ids), _out(model, ids), atol=2e-6)  # a gated norm's own float32 sums
    _close_half(gated)
    promised = gated_cost(gated, "deterministic")
    shrunk = shrink(gated)
    assert not is_gated(shrunk)
    diff = np.max(np.abs(_out(shrunk, ids) - _out(gated, ids)))
    assert diff <= 1e-5 * max(1.0, np.max(np.abs(_out(gated, ids)))), diff
    report = count(shrunk)
    assert (report.flops, report.params) == (int(promised.flops), int(promised.params))
    assert report.flops < count(model).flops
    # the user's own layer classes, nothing of rmcompress: loads with plain tf_keras
    assert {type(layer).__module__.split(".")[0] for layer in shrunk.layers} == {"tf_keras"}
    path = tmp_path / "shrunk.keras"
    shrunk.save(path)
    again = keras.models.load_model(path)
    np.testing.assert_allclose(_out(again, ids), _out(shrunk, ids), atol=1e-6)


def test_gated_copy_leaves_the_user_model_alone():
    model = zoo_model("kim_cnn")
    before = [w.copy() for w in model.get_weights()]
    gated = gated_copy(model)
    for v in gated.trainable_variables:
        v.assign(v * 0.5)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_closed_units_leave_the_shrunk_layers():
    model = zoo_model("parallel_conv")
    gated = gated_copy(model)
    structure = structure_of(gated)
    gates = gate_layers(gated)
    convs = [g for g in structure.groups if g.startswith("conv1d")]
    keep = {}
    for g in convs:  # keep the first two filters of every branch
        la = np.full(gates[g].units, -10.0, np.float32)
        la[:2] = 10.0
        gates[g].log_alpha.assign(la)
        keep[g] = 2
    shrunk = shrink(gated)
    for g in convs:
        assert shrunk.get_layer(g).filters == 2
    hidden = next(layer for layer in shrunk.layers if isinstance(layer, keras.layers.Dense) and layer.units == 8)
    assert hidden.kernel.shape[0] == 2 * len(convs)  # its input rows follow the concatenation
    ids = zoo_ids()
    np.testing.assert_allclose(_out(shrunk, ids), _out(gated, ids), atol=1e-5)


def test_shrink_to_a_budget_lands_on_it():
    model = zoo_model("dan")
    gated = gated_copy(model)
    shrunk = shrink(gated, budget_flops=0.5)
    assert count(shrunk).flops <= 0.5 * count(model).flops
    assert count(shrunk).flops > 0.4 * count(model).flops  # one unit's granularity, not far below


@pytest.mark.parametrize("name", ["transformer_postln", "transformer_preln", "keras3_transformer"])
def test_an_attention_layer_with_no_head_left_goes_with_its_residual_add(name):
    model = zoo_model(name)
    ids = zoo_ids()
    gated = gated_copy(model)
    for group, gate in gate_layers(gated).items():
        if group.endswith("_heads"):
            gate.log_alpha.assign(np.full(gate.units, -10.0, np.float32))
    promised = gated_cost(gated, "deterministic")
    shrunk = shrink(gated)
    assert not any(isinstance(layer, keras.layers.MultiHeadAttention) for layer in shrunk.layers)
    np.testing.assert_allclose(_out(shrunk, ids), _out(gated, ids), atol=1e-5)
    report = count(shrunk)
    assert (report.flops, report.params) == (int(promised.flops), int(promised.params))


@pytest.mark.parametrize("name", ["transformer_postln", "transformer_preln", "keras3_transformer"])
@pytest.mark.parametrize("closed", ["ffn", "all"])
def test_a_feed_forward_branch_with_no_unit_left_goes_with_its_residual_add(name, closed):
    """``all``: heads and units of every branch closed, so biases fold through removed branches."""
    model = zoo_model(name)
    ids = zoo_ids()
    gated = gated_copy(model)
    structure = structure_of(gated)
    for group, gate in gate_layers(gated).items():
        branch = group in {r.group for r in structure.removals.values()} or group in structure.blocks
        if branch and (closed == "all" or not group.endswith(("_heads", "_block"))):
            gate.log_alpha.assign(np.full(gate.units, -10.0, np.float32))
    promised = gated_cost(gated, "deterministic")
    shrunk = shrink(gated)
    dense = [layer for layer in shrunk.layers if isinstance(layer, keras.layers.Dense)]
    assert len(dense) == 1  # only the reward layer is left
    assert any(isinstance(layer, keras.layers.MultiHeadAttention) for layer in shrunk.layers) == (closed == "ffn")
    np.testing.assert_allclose(_out(shrunk, ids), _out(gated, ids), atol=1e-5)
    report = count(shrunk)
    assert (report.flops, report.params) == (int(promised.flops), int(promised.params))


def _own_attention_model():
    """A functional model of rmcompress's own attention, pooling and mask layers (not one of the
    shipped architectures): pre-LN attention and feed-forward branches."""
    from rmcompress.layers import encoder as L
    ids = keras.Input((ZOO_SEQ,), dtype="int32")
    mask = L.PaddingMask()(ids)
    x = keras.layers.Embedding(ZOO_VOCAB, 16, name="emb")(ids)
    for i in range(2):
        a = L.MultiHeadSelfAttention(4, 4, name=f"att{i}")([keras.layers.LayerNormalization()(x), mask])
        x = keras.layers.Add()([x, a])
        f = keras.layers.Dense(24, activation="relu", name=f"up{i}")(keras.layers.LayerNormalization()(x))
        x = keras.layers.Add()([x, keras.layers.Dense(16, name=f"down{i}")(f)])
    pooled = L.MaskedMeanPooling()([keras.layers.LayerNormalization()(x), mask])
    return randomize(keras.Model(ids, keras.layers.Dense(1)(pooled), name="own_attention"))


@pytest.mark.parametrize("closed", ["half", "att0", "all"])
def test_own_attention_heads_are_gated_and_shrunk_exactly(closed):
    model = _own_attention_model()
    ids = zoo_ids()
    gated = gated_copy(model)
    assert set(structure_of(gated).groups) == {"att0_heads", "att1_heads", "up0", "up1", "att0_block", "att1_block",
                                              "emb", "vocab"}  # padding masked by id: the rows can go (not gated here)
    assert structure_of(gated).streams == ("emb",)  # the residual width
    np.testing.assert_allclose(_out(gated, ids), _out(model, ids), atol=2e-6)
    _close_half(gated)
    for group, gate in gate_layers(gated).items():
        if group != "emb" and (closed == "all" or group == closed + "_heads"):  # the width keeps half
            gate.log_alpha.assign(np.full(gate.units, -10.0, np.float32))
    promised = gated_cost(gated, "deterministic")
    shrunk = shrink(gated)
    heads = {layer.name: layer.num_heads for layer in shrunk.layers if hasattr(layer, "num_heads")}
    assert heads == ({} if closed == "all" else {"att0": 2, "att1": 2} if closed == "half" else {"att1": 2})
    np.testing.assert_allclose(_out(shrunk, ids), _out(gated, ids), atol=1e-5)
    report = count(shrunk)
    assert (report.flops, report.params) == (int(promised.flops), int(promised.params))


@pytest.mark.parametrize("name", ["transformer_postln", "transformer_preln", "keras3_transformer"])
def test_a_closed_block_gate_removes_both_branches(name):
    model = zoo_model(name)
    ids = zoo_ids()
    gated = gated_copy(model)
    np.testing.assert_allclose(_out(gated, ids), _out(model, ids), atol=2e-6)
    structure = structure_of(gated)
    block = sorted(structure.blocks)[0]
    _close_half(gated)
    gates = gate_layers(gated)
    gates[block].log_alpha.assign(np.full(1, -10.0, np.float32))
    for g in structure.blocks[block]:  # the branches' own gates stay partly open
        assert gates[g].deterministic_open() > 0
    promised = gated_cost(gated, "deterministic")
    shrunk = shrink(gated)
    removed = {n for r in structure.removals.values() if r.group in structure.blocks[block] for n in r.removed}
    assert removed and not removed & {layer.name for layer in shrunk.layers}
    np.testing.assert_allclose(_out(shrunk, ids), _out(gated, ids), atol=1e-5)
    report = count(shrunk)
    assert (report.flops, report.params) == (int(promised.flops), int(promised.params))


def _shipped(arch):
    from rmcompress.models.architectures import build_reward_model
    return randomize(build_reward_model({"arch": arch, "vocab_size": ZOO_VOCAB, "seq_len": ZOO_SEQ, "width": 16,
                                         "heads": 2, "head_dim": 4, "ffn": 12, "depth": 2, "dropout": 0.1}))


@pytest.mark.parametrize("name", ["transformer_postln", "transformer_preln", "keras3_transformer", "own_attention",
                                  "transformer", "bert"])
def test_residual_width_gates_shrink_to_what_the_gated_model_computes(name, tmp_path):
    """``gate_width``: the residual width is gated where it is written; closing half its channels
    (and half of every other group) then shrinking gives a narrower model that computes what the
    gated one does, at the FLOPs/params the gates promised, loadable with plain tf_keras."""
    model = (_own_attention_model() if name == "own_attention" else _shipped(name) if name in ("transformer", "bert")
             else zoo_model(name))
    ids = zoo_ids()
    structure = structure_of(model)
    (width,) = structure.streams
    gated = gated_copy(model, gate_width=True)
    assert width in gate_layers(gated) and width not in gate_layers(gated_copy(model))
    np.testing.assert_allclose(_out(gated, ids), _out(model, ids), atol=2e-6)
    _close_half(gated, seed=3)
    promised = gated_cost(gated, "deterministic")
    shrunk = shrink(gated)
    kept = int(np.count_nonzero(gate_layers(gated)[width].deterministic_values()))
    assert 0 < kept < structure.groups[width]
    emb = next(layer for layer in shrunk.layers if isinstance(layer, keras.layers.Embedding))
    assert emb.output_dim == kept
    norms = [layer for layer in shrunk.layers if isinstance(layer, keras.layers.LayerNormalization)]
    assert norms and all(int(n.gamma.shape[0]) == kept for n in norms)
    diff = np.max(np.abs(_out(shrunk, ids) - _out(gated, ids)))
    assert diff <= 1e-5 * max(1.0, np.max(np.abs(_out(gated, ids)))), diff
    report = count(shrunk)
    assert (report.flops, report.params) == (int(promised.flops), int(promised.params))
    assert report.flops < count(model).flops
    path = tmp_path / "shrunk.keras"
    shrunk.save(path)
    again = keras.models.load_model(path, custom_objects=_custom_objects())
    np.testing.assert_allclose(_out(again, ids), _out(shrunk, ids), atol=1e-6)


def test_a_removed_branch_bias_is_cut_to_the_kept_width():
    """A branch with no unit left folds its output bias (gated and cut to the kept channels) into
    the layer that made its residual, while the width shrinks too."""
    model = _shipped("transformer")
    ids = zoo_ids()
    gated = gated_copy(model, gate_width=True)
    gates = gate_layers(gated)
    for g in ("block0_attn_heads", "block1_ffn_in"):
        gates[g].log_alpha.assign(np.full(gates[g].units, -10.0, np.float32))
    gates["token_embedding"].log_alpha.assign(np.where(np.arange(16) % 3 == 0, -10.0, 1.0).astype(np.float32))
    shrunk = shrink(gated)
    names = {layer.name for layer in shrunk.layers}
    assert "block0_attn" not in names and "block1_ffn_in" not in names and "block1_attn" in names
    assert shrunk.get_layer("token_embedding").output_dim == 10
    np.testing.assert_allclose(_out(shrunk, ids), _out(gated, ids), atol=1e-5)


def _custom_objects():
    from rmcompress.layers.encoder import CUSTOM_LAYERS
    return CUSTOM_LAYERS
