"""Gates, budget training and shrink on the bridged post-LN ``bert`` encoder (tiny random backbone):
heads, FFN units and whole blocks (both branches), exact registry counts, shrink equivalence,
TFLite export, the CLI and the ``budget`` recipe pass, QAT."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers import MATMUL_OPS, WORDS, check_registry_matches_profiler, pretrained_config, profile_by_layer

TEXTS = ["the film is really good", "i hated this movie", "a great and wonderful story",
         "boring , slow and bad", "not good at all", "always a delight"] * 2


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    from rmcompress.models.backbones import save_random_preset

    return save_random_preset(tmp_path_factory.mktemp("preset") / "bert", WORDS, hidden_dim=16, num_layers=3,
                              num_heads=4, intermediate_dim=32, scale=0.3)


@pytest.fixture(scope="module")
def train_preset(tmp_path_factory):
    from rmcompress.models.backbones import save_random_preset

    return save_random_preset(tmp_path_factory.mktemp("preset") / "bert", WORDS, hidden_dim=16, num_layers=2,
                              num_heads=2, intermediate_dim=32, scale=0.02)


@pytest.fixture(scope="module")
def bridged(preset):
    from rmcompress.models.backbones import load_pretrained

    ps = load_pretrained(preset, seq_len=16, dropout=0.1)
    scorer = ps.build()
    rng = np.random.RandomState(1)
    head = scorer.get_layer("reward")
    head.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in head.get_weights()])
    return ps, scorer, ps.tokenizer.encode(TEXTS)


def _set(gate, values):
    gate.log_alpha.assign(np.asarray(values, np.float32))


def test_gated_bert_builds_and_all_open_gates_cost_the_dense_count(bridged):
    from rmcompress.models.structure import count
    from rmcompress.layers.gates import gate_layers
    from rmcompress.structured.gating import gated_copy
    from rmcompress.cost.registry import CompiledCost
    from rmcompress.models.structure import cost_model, gated_cost, infer_arch_config, structure_of
    from rmcompress._keras import tf

    ps, scorer, ids = bridged
    from dataclasses import replace

    assert infer_arch_config(scorer) == replace(ps.arch, block_present=[True] * 3)
    gated = gated_copy(scorer)
    gates = gate_layers(gated)
    assert sorted(gates) == sorted([f"block{i}_{s}" for i in range(3) for s in ("attn_block", "attn_heads", "ffn_in")])
    np.testing.assert_allclose(gated.predict(ids, verbose=0), scorer.predict(ids, verbose=0), atol=1e-5)
    dense = count(scorer)
    assert dense.params == scorer.count_params()
    assert count(gated).flops == dense.flops and count(gated).params == dense.params
    assert gated_cost(gated, "full").flops == dense.flops
    for g in gates.values():
        _set(g, np.full(g.units, 30.0))
    expected = gated_cost(gated, "expected")
    assert float(expected.flops) == pytest.approx(dense.flops, rel=1e-6)
    assert float(expected.params) == pytest.approx(dense.params, rel=1e-6)
    structure = structure_of(gated)
    compiled = CompiledCost(cost_model(gated, structure), list(structure.groups))
    f, p = compiled({g: tf.constant(float(n)) for g, n in structure.groups.items()})
    assert float(f) == pytest.approx(dense.flops, rel=1e-6) and float(p) == pytest.approx(dense.params, rel=1e-6)


@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_registry_agrees_with_tf_profiler_on_bert(activation):
    from rmcompress.models.archconfig import ArchConfig
    from rmcompress.models.architectures import build_reward_model

    cfg = ArchConfig(arch="bert", vocab_size=60, seq_len=12, width=16, depth=3, heads=[2, 0, 2], head_dim=4,
                     ffn=[24, 8, 0], activation=activation, dropout=0.0, norm_epsilon=1e-12)
    if activation == "gelu":  # the erf GELU is one Erf op + Mul/Add the profiler counts; compare matmuls only
        from rmcompress.models.structure import count

        model = build_reward_model(cfg)
        prof = profile_by_layer(model)
        for name, row in count(model).table.set_index("layer").iterrows():
            ops = prof.get(name, {})
            assert sum(v for k, v in ops.items() if k in MATMUL_OPS) == row["flops_matmul"], name
        return
    check_registry_matches_profiler(build_reward_model(cfg))


def _close_some(gated, soft: bool = True):
    """Closed: every head of block0, head 1 of block1, 10 FFN units of block1, every FFN unit of
    block2, the whole of block2; ``soft``: non-binary (folded) values on a head and 5 units."""
    from rmcompress.layers.gates import gate_layers

    g = gate_layers(gated)
    a, b = (0.5, 0.3) if soft else (30.0, 30.0)
    _set(g["block0_attn_heads"], [-30.0] * 4)
    _set(g["block1_attn_heads"], [30.0, -30.0, a, 30.0])
    _set(g["block1_ffn_in"], [-30.0] * 10 + [b] * 5 + [30.0] * 17)
    _set(g["block2_ffn_in"], [-30.0] * 32)
    _set(g["block2_attn_block"], [-30.0])
    for name in ("block0_attn_block", "block1_attn_block", "block0_ffn_in", "block2_attn_heads"):
        _set(g[name], np.full(g[name].units, 30.0))
    return g


def test_shrink_equals_gated_model_and_its_expected_cost(bridged, tmp_path):
    from rmcompress.models.structure import count
    from rmcompress.structured.gating import gated_copy
    from rmcompress.cost.registry import is_gated
    from rmcompress.structured.shrink import shrink
    from rmcompress.models.structure import gated_cost, infer_arch_config
    from rmcompress.models.modeldir import load_model_dir, save_model_dir

    ps, scorer, ids = bridged
    gated = gated_copy(scorer)
    _close_some(gated, soft=False)  # saturated gates: the expected cost is the shrunk count
    expected = gated_cost(gated, "expected")
    hard = count(shrink(gated))
    assert float(expected.flops) == pytest.approx(hard.flops, rel=1e-6)
    assert float(expected.params) == pytest.approx(hard.params, rel=1e-6)
    _close_some(gated)
    det = gated_cost(gated, "deterministic")
    small = shrink(gated)
    assert not is_gated(small)
    cfg = infer_arch_config(small)
    # a closed block loses both branches (their biases folded into the LayerNorm before) and keeps
    # its LayerNorms
    assert cfg.heads == [0, 3, 0] and cfg.ffn == [32, 22, 0] and cfg.block_present == [True] * 3
    names = {layer.name for layer in small.layers}
    assert "block0_attn" not in names and "block2_ffn_in" not in names and "block2_ffn_norm" in names
    assert not any(type(layer).__name__ == "BiasAdd" for layer in small.layers)
    diff = np.abs(small.predict(ids, verbose=0) - gated.predict(ids, verbose=0)).max()
    assert diff <= 1e-5
    rep = count(small)
    assert (rep.flops, rep.params) == (det.flops, det.params) and rep.params == small.count_params()
    assert (rep.flops, rep.params) == (hard.flops, hard.params)
    assert rep.flops < 0.7 * count(scorer).flops
    # a shrunk bert is a plain bert again: gate it, close more (the whole of block 1), shrink again
    again = gated_copy(small)
    from rmcompress.layers.gates import gate_layers

    g2 = gate_layers(again)
    assert "block0_attn_heads" not in g2 and "block0_attn_block" not in g2 and "block2_attn_block" not in g2
    _set(g2["block1_attn_heads"], [30.0, -30.0, -30.0])
    _set(g2["block1_attn_block"], [-30.0])
    smaller = shrink(again)
    assert infer_arch_config(smaller).heads == [0, 0, 0] and infer_arch_config(smaller).ffn == [32, 0, 0]
    assert np.abs(smaller.predict(ids, verbose=0) - again.predict(ids, verbose=0)).max() <= 1e-5
    assert count(smaller).flops == gated_cost(again, "deterministic").flops
    # a gated bert round-trips through a model directory
    save_model_dir(tmp_path / "g", gated, ps.tokenizer, {"task": "pointwise", "arch": ps.arch.to_dict()})
    back = load_model_dir(tmp_path / "g").model
    np.testing.assert_allclose(back.predict(ids, verbose=0), gated.predict(ids, verbose=0), atol=1e-6)


def test_a_closed_block_gate_closes_both_branches(bridged):
    """A block gate multiplies its branches' gates: closed, no head and no FFN unit of the block
    is deterministically open, whatever their own gates say, and the deterministic cost drops by
    both branches."""
    from rmcompress.layers.gates import gate_layers
    from rmcompress.models.structure import gated_cost
    from rmcompress.structured.gating import gated_copy
    from rmcompress.structured.shrink import shrink

    ps, scorer, ids = bridged
    gated = gated_copy(scorer)
    g = gate_layers(gated)
    for gate in g.values():
        _set(gate, np.full(gate.units, 30.0))
    full = gated_cost(gated, "deterministic").flops
    _set(g["block1_attn_block"], [-30.0])
    assert gated_cost(gated, "deterministic").flops < full
    small = shrink(gated)
    names = {layer.name for layer in small.layers}
    assert not {"block1_attn", "block1_ffn_in", "block1_ffn_out"} & names
    assert {"block1_attn_norm", "block1_ffn_norm", "block0_attn", "block2_ffn_in"} <= names
    np.testing.assert_allclose(small.predict(ids, verbose=0), gated.predict(ids, verbose=0), atol=1e-5)


def test_shrunk_bert_exports_to_tflite_with_parity(bridged):
    from rmcompress.structured.gating import gated_copy
    from rmcompress.structured.shrink import shrink
    from rmcompress.runtime.tflite import TFLiteRunner, convert

    ps, scorer, ids = bridged
    gated = gated_copy(scorer)
    _close_some(gated)
    small = shrink(gated)
    runner = TFLiteRunner(convert(small))
    got = np.asarray(runner.score(ids)).reshape(-1)
    ref = gated.predict(ids, verbose=0).reshape(-1)
    assert np.abs(got - ref).max() <= 1e-4


def test_cli_budget_training_lands_on_half_the_flops(train_preset, pointwise_file, tmp_path, cli):
    from rmcompress.models.structure import count
    from rmcompress.cost.registry import is_gated
    from rmcompress.models.modeldir import load_model_dir

    rc, out, err = cli("train", "--verbose", "--data", pointwise_file, "--task", "pointwise", "--out", tmp_path / "m",
                       "--backbone", train_preset, "--seq-len", "16", "--max-steps", "40", "--batch-size", "32",
                       "--patience", "0", "--budget-flops", "0.5", "--learning-rate", "3e-3", "--dropout", "0")
    assert rc == 0, err
    back = load_model_dir(tmp_path / "m")
    report = json.loads((tmp_path / "m" / "report.json").read_text())
    assert not is_gated(back.model) and back.metadata["arch"]["arch"] == "bert"
    c = count(back.model)
    assert c.flops == report["flops"]
    assert 0.48 <= report["flops_fraction"] <= 0.5, report
    assert report["shrink_max_abs_diff"] <= 1e-5
    assert report["accuracy"] >= 0.6


@pytest.fixture(scope="module")
def finetuned_dir(train_preset, pointwise_file, tmp_path_factory):
    from rmcompress.training.trainer import train

    r = train(pointwise_file, pretrained_config(backbone=str(train_preset), learning_rate=1e-2, max_steps=20, dropout=0.0),
              tmp_path_factory.mktemp("ft") / "model", verbose=0)
    return r.out_dir


@pytest.mark.parametrize("gate_init", ["uniform", "taylor"])
def test_budget_training_of_a_copy_distilled_from_the_fine_tuned_model(finetuned_dir, pointwise_file, tmp_path,
                                                                      gate_init, monkeypatch):
    """``train --init FT --teacher FT --budget-flops F`` (the benchmark's budget rows): the gated
    phase and the fine-tuning of the shrunk model both see the teacher's scores. ``--gate-init
    taylor``: the gates start ranked by the copy's Taylor scores, taken on the labeled rows only."""
    from rmcompress.training import complexity_training as cx
    from rmcompress.training.trainer import train

    ranked = []
    real = cx.rank_gates

    def spy(gated, plain, cfg, data, loss):
        real(gated, plain, cfg, data, loss)
        from rmcompress.layers.gates import gate_layers

        ranked.append({g: layer.log_alpha.numpy() for g, layer in gate_layers(gated).items()})

    monkeypatch.setattr(cx, "rank_gates", spy)
    r = train(pointwise_file, pretrained_config(init=str(finetuned_dir), teacher=str(finetuned_dir), budget_flops=0.5,
                                   max_steps=10, learning_rate=1e-3, gate_init=gate_init), tmp_path / "b", verbose=0)
    if gate_init == "uniform":
        assert ranked == []
    else:
        heads = ranked[0]["block0_attn_heads"]
        # a ranked start's default spread is 4: log_alpha in [3 - 4, 3 + 4)
        assert len(set(np.round(heads, 6))) == len(heads) and -1.0 <= heads.min() and heads.max() < 7.0
    assert r.report["flops_fraction"] <= 0.5 and r.report["finetune_steps"] > 0
    assert r.report["arch"] == "bert" and r.report["shrink_max_abs_diff"] <= 1e-5


def test_budget_pass_and_qat_on_a_bridged_bert_model_dir(finetuned_dir, pointwise_file, tmp_path):
    """The ``budget`` pass (first pass of the medium/aggressive recipes), fuse (a gelu_tanh Dense),
    vocabulary pruning (keeps [CLS]/[SEP], dropped words -> [UNK]) and QAT on a bridged encoder."""
    from rmcompress.compression.pipeline import compress

    rep = compress(finetuned_dir, {"name": "t", "passes": [{"budget": {"flops_fraction": 0.3, "steps": 20}}, "fuse",
                                                            {"factorise": {"vocab_prune": True, "steps": 0}},
                                                            {"quantise": {"mode": "qat", "steps": 5}}]},
                   pointwise_file, tmp_path / "c", latency_runs=0)
    notes = {n["pass"]: n for n in rep["passes"]}
    assert notes["budget"]["achieved_flops_fraction"] <= 0.3 + 1e-9
    assert notes["budget"]["learning_rate"] == 1e-4  # the bridged-encoder default
    assert notes["budget"]["flops_after"] < notes["budget"]["flops_before"]
    assert notes["factorise"]["vocab_after"] < notes["factorise"]["vocab_before"]
    from rmcompress.data.tokenizer import Tokenizer

    tok = Tokenizer.load(tmp_path / "c")
    ids = tok.encode(["the film is zzzunseenzzz"])[0]
    specials = tok.special_ids()
    assert ids[0] == specials["cls"] and specials["sep"] in ids and specials["unk"] in ids
    q = notes["quantise"]
    assert q["mode"] == "qat" and any(n.endswith("ffn_in") for n in q["quantized_layers"])
    assert q["qat_vs_float_decision_agreement"] >= 0.8
    assert (tmp_path / "c" / "report.json").is_file()


def test_pretrained_aggressive_recipe_on_a_bridged_bert_model_dir(finetuned_dir, pointwise_file, tmp_path):
    """The shipped ``pretrained-aggressive`` recipe (steps scaled down): Taylor pruning in stages,
    distilled from the source's rewards and block outputs on batches grouped by length, fuse, vocabulary pruning (dropped tokens read their nearest kept row)
    + rank-limited table, dynamic-range TFLite."""
    from rmcompress.compression.recipe import Recipe
    from rmcompress.compression.pipeline import compress

    spec = Recipe.resolve("pretrained-aggressive").to_dict()
    for item in spec["passes"]:
        name, params = next(iter(item.items()))
        if "steps" in params:
            params["steps"] = 6
        if "final_steps" in params:
            params["final_steps"] = 3
        if name == "factorise":
            params["rank"] = 4
    rep = compress(finetuned_dir, spec, pointwise_file, tmp_path / "agg", latency_runs=0)
    notes = {n["pass"]: n for n in rep["passes"]}
    b = notes["budget"]
    assert b["method"] == "taylor" and b["stages"] == 3 and b["final_steps"] == 3
    assert b["achieved_flops_fraction"] <= 0.15 + 1e-9 and b["flops_after"] < b["flops_before"]
    assert b["distill_blocks"] == 1.0 and rep["length_slack"] == 0  # the bert graph reads no padding
    assert notes["factorise"]["vocab_after"] < notes["factorise"]["vocab_before"]
    # the dropped tokens stay in the tokenizer and read their nearest kept row
    f = notes["factorise"]
    assert f["unseen_tokens"] == "nearest" and f["aliased_tokens"] == f["vocab_before"] - f["vocab_after"]
    assert notes["quantise"]["mode"] == "dynamic"
    assert any(p.suffix == ".tflite" for p in (tmp_path / "agg").rglob("*.tflite"))
    assert rep["parity_decision_agreement"] >= 0.9 and rep["size_ratio"] > 4  # exported, checked, measured
