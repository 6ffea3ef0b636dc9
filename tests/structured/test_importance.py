"""Importance-based structured pruning (``rmcompress.structured.importance``) and the ``budget``
pass's ``method: taylor`` route: scores that mean what they say, the budget met, stages, recipes."""
from __future__ import annotations

import numpy as np
import pytest

from rmcompress._keras import keras
from rmcompress.models.structure import count
from rmcompress.training.taylor import importance_prune, taylor_scores
from rmcompress.structured.importance import prune_to_budget
from rmcompress.data.pipeline import EncodedData
from rmcompress.errors import UsageError
from rmcompress.models.archconfig import ArchConfig
from rmcompress.models.architectures import build_reward_model

CFG = dict(vocab_size=60, seq_len=16, width=16, depth=1, heads=2, head_dim=8, ffn=24)


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    return build_reward_model(ArchConfig(arch="transformer", **CFG))


def _data(n=64, seed=0):
    rng = np.random.RandomState(seed)
    ids = rng.randint(1, 60, size=(n, 16)).astype(np.int32)
    return EncodedData("pointwise", ids=ids, labels=(ids[:, 0] > 30).astype(np.float32))


def test_taylor_score_is_zero_for_a_unit_that_cannot_change_the_output():
    model = _model()
    out = model.get_layer("block0_ffn_out")
    k = out.kernel.numpy()
    k[[3, 7]] = 0.0  # FFN units 3 and 7 feed nothing
    out.kernel.assign(k)
    scores = taylor_scores(model, _data(), "pointwise", "bce", batches=4, batch_size=16)
    assert set(scores) == {"block0_attn_heads", "block0_ffn_in"}
    ffn = scores["block0_ffn_in"]
    assert ffn.shape == (24,) and np.all(np.isfinite(ffn))
    assert ffn[3] == 0.0 and ffn[7] == 0.0
    assert np.all(np.delete(ffn, [3, 7]) > 0)
    assert np.all(scores["block0_attn_heads"] > 0)


def test_taylor_score_matches_the_loss_change_of_scaling_a_unit():
    """``|dL/dz_i|`` is the first-order loss change: check it against a finite difference in which
    unit i's output row is scaled by (1 - eps), on one fixed batch."""
    from rmcompress.training.model import RewardTrainingModel

    model = _model(1)
    data = _data(16, seed=3)
    scores = taylor_scores(model, data, "pointwise", "bce", batches=1, batch_size=16)
    wrapper = RewardTrainingModel(model, task="pointwise", loss="bce")

    def loss():
        per_example, _ = wrapper.task_losses((data.ids, data.labels), training=False)
        return float(np.mean(per_example.numpy()))

    out = model.get_layer("block0_ffn_out")
    k0 = out.kernel.numpy()
    base, eps = loss(), 1e-2
    for unit in (0, 5, 11):
        k = k0.copy()
        k[unit] *= 1.0 - eps
        out.kernel.assign(k)
        assert abs(base - loss()) / eps == pytest.approx(scores["block0_ffn_in"][unit], rel=0.05, abs=1e-5)
    out.kernel.assign(k0)


def test_prune_to_budget_keeps_the_highest_scored_units_unchanged():
    model = _model()
    dense = count(model).flops
    scores = {"block0_ffn_in": np.arange(24, dtype=float), "block0_attn_heads": np.array([100.0, 200.0])}
    small = prune_to_budget(model, scores, flops_fraction=0.9)
    assert 0.85 * dense < count(small).flops <= 0.9 * dense
    assert small.get_layer("block0_attn").get_config()["num_heads"] == 2
    k_in = model.get_layer("block0_ffn_in").kernel.numpy()
    kept = small.get_layer("block0_ffn_in").kernel.numpy()
    n = kept.shape[1]
    assert 0 < n < 24
    np.testing.assert_array_equal(kept, k_in[:, 24 - n:])  # the top-n scored units, in order


def test_importance_prune_rejects_unknown_methods_and_missing_data():
    with pytest.raises(UsageError, match="unknown"):
        importance_prune(_model(), "random", flops_fraction=0.5)
    with pytest.raises(UsageError, match="training data"):
        importance_prune(_model(), "taylor", flops_fraction=0.5)


@pytest.mark.parametrize("method", ["taylor", "magnitude"])
def test_budget_compress_by_importance_in_stages(trained_models, method):
    from rmcompress.training.budget import budget_compress

    src = trained_models["transformer"]
    out = budget_compress(src.bundle, src.train_data, src.val_data, flops_fraction=0.3, steps=8,
                          batch_size=32, method=method, stages=2, distill_weight=0.5, final_steps=3)
    rep = out.report
    assert rep["method"] == method and rep["gated_steps"] == 0
    assert rep["finetune_steps"] == 11 and rep["final_steps"] == 3
    stages = rep["per_stage"]
    assert [s["steps"] for s in stages] == [4, 4]
    assert stages[0]["flops_fraction"] > stages[1]["flops_fraction"]
    assert stages[0]["flops_fraction"] <= 0.3 ** 0.5 + 1e-9
    assert 0.2 <= rep["flops_fraction"] <= 0.3  # the tiny model's units are coarse
    assert count(out.model).as_dict() == {"flops": rep["flops"], "params": rep["params"]}
    assert "accuracy" in rep and np.isfinite(out.model.predict(src.val_data.ids[:4], verbose=0)).all()


def test_ranked_log_alpha_follows_the_scores_across_groups():
    from rmcompress.layers.gates import gate_layers
    from rmcompress.structured.gating import gated_copy
    from rmcompress.structured.importance import global_ranks, set_ranked_log_alpha

    gated = gated_copy(_model())
    scores = {"block0_attn_heads": np.array([5.0, 1.0]), "block0_ffn_in": np.arange(24, dtype=float)}
    ranks = global_ranks(gate_layers(gated), scores)
    assert ranks["block0_attn_heads"][1] == 1 / 26 and ranks["block0_attn_heads"][0] == 6 / 26  # 1 < 0,1,2,3,4 < 5
    set_ranked_log_alpha(gated, scores, low=1.0, high=5.0)
    gates = gate_layers(gated)
    heads, ffn = gates["block0_attn_heads"].log_alpha.numpy(), gates["block0_ffn_in"].log_alpha.numpy()
    assert np.all(np.diff(ffn) > 0) and heads[0] > heads[1]
    flat = np.concatenate([heads, ffn])
    assert flat.min() == pytest.approx(1.0) and flat.max() < 5.0
    assert np.allclose(gates["block0_attn_block"].log_alpha.numpy(), 3.0)  # unscored (the block) untouched


@pytest.mark.parametrize("width", [False, True])
def test_budget_compress_gates_started_in_magnitude_order(trained_models, monkeypatch, width):
    """``gate_init="magnitude"``: the gated model's starting log_alpha follow the trained model's
    magnitude ranks (checked on the model handed to the trainer), and the budget is still met;
    with ``width`` the residual-width channels are ranked with the heads and FFN units (what
    ``aggressive`` and ``extreme`` run)."""
    from rmcompress.training import budget as api
    from rmcompress.layers.gates import gate_layers
    from rmcompress.structured.magnitude import normalised_scores

    src = trained_models["transformer"]
    seen = {}

    class Spy(api.ComplexityAwareModel):
        def __init__(self, scorer, *a, **kw):
            seen.update({g: layer.log_alpha.numpy().copy() for g, layer in gate_layers(scorer).items()})
            super().__init__(scorer, *a, **kw)

    monkeypatch.setattr(api, "ComplexityAwareModel", Spy)
    out = api.budget_compress(src.bundle, src.train_data, src.val_data, flops_fraction=0.4, steps=6,
                              batch_size=32, gate_init="magnitude", gate_init_spread=1.5, width=width)
    scores = {g: s for g, s in normalised_scores(src.bundle.model).items() if g in seen}  # no vocab gates
    assert {"block0_attn_heads", "block0_ffn_in"} <= set(scores)
    assert ("token_embedding" in scores) == width  # the stream's group is gated only with width
    for group, s in scores.items():
        order_scores, order_alpha = np.argsort(s, kind="stable"), np.argsort(seen[group], kind="stable")
        assert np.array_equal(order_scores, order_alpha), group
        assert seen[group].min() >= 3.0 - 1.5 - 1e-6 and seen[group].max() < 3.0 + 1.5
    assert out.report["flops_fraction"] <= 0.4 + 1e-9
    # a ranked start's default schedule: 80% of the steps fine-tune the shrunk model
    assert (out.report["gated_steps"], out.report["finetune_steps"]) == (1, 5)
    assert out.report["finetune_fraction"] == 0.8 and out.report["gate_init_spread"] == 1.5
    if not width:  # 80% of 2 steps rounds to 2: one step stays gated (a gated phase of 0 steps cannot fit)
        two = api.budget_compress(src.bundle, src.train_data, src.val_data, flops_fraction=0.4, steps=2,
                                  batch_size=32, gate_init="magnitude")
        assert (two.report["gated_steps"], two.report["finetune_steps"]) == (1, 1)
    with pytest.raises(UsageError, match="gate_init"):
        api.budget_compress(src.bundle, src.train_data, src.val_data, flops_fraction=0.4, steps=6,
                            gate_init="random")


def test_budget_pass_method_in_a_recipe(tmp_path):
    from rmcompress.compression.recipe import Recipe
    from rmcompress.errors import RecipeError

    good = tmp_path / "r.yaml"
    good.write_text("name: r\npasses:\n  - budget: {flops_fraction: 0.25, method: taylor, stages: 2}\n")
    spec = Recipe.load(good).passes[0]
    assert spec.params["method"] == "taylor" and spec.params["stages"] == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: r\npasses:\n  - budget: {flops_fraction: 0.25, method: fisher}\n")
    with pytest.raises(RecipeError, match="method"):
        Recipe.load(bad)
    ranked = tmp_path / "g.yaml"
    ranked.write_text("name: r\npasses:\n  - budget: {flops_fraction: 0.25, gate_init: magnitude}\n")
    assert Recipe.load(ranked).passes[0].params["gate_init"] == "magnitude"
    ranked.write_text("name: r\npasses:\n  - budget: {flops_fraction: 0.25, gate_init: random}\n")
    with pytest.raises(RecipeError, match="gate_init"):
        Recipe.load(ranked)
    ranked.write_text("name: r\npasses:\n  - budget: {flops_fraction: 0.25, finetune_fraction: 0.5}\n")
    assert Recipe.load(ranked).passes[0].params["finetune_fraction"] == 0.5
    ranked.write_text("name: r\npasses:\n  - budget: {flops_fraction: 0.25, finetune_fraction: 1.0}\n")
    with pytest.raises(RecipeError, match="finetune_fraction"):
        Recipe.load(ranked)


def test_teacher_targets_with_unlabeled_rows(trained_models):
    from rmcompress.training.budget import with_teacher_targets

    src = trained_models["transformer"]
    extra = EncodedData("pointwise", ids=src.val_data.ids[:5], labels=np.zeros(5, np.float32))
    data = with_teacher_targets(src.bundle.model, src.train_data, extra)
    n = len(src.train_data)
    assert len(data) == n + 5 and data.labeled[:n].min() == 1.0 and data.labeled[n:].max() == 0.0
    want = src.bundle.model.predict(extra.ids, verbose=0).ravel()
    np.testing.assert_allclose(data.teacher[n:], want, rtol=1e-5, atol=1e-5)


def test_compress_distills_on_unlabeled_texts(trained_models, pointwise_file, tmp_path):
    from rmcompress.compression.pipeline import compress

    src = trained_models["transformer"]
    texts = tmp_path / "extra.tsv"
    texts.write_text("text\n" + "".join(f"an unlabeled review number {i} of the film\n" for i in range(40)))
    recipe = {"name": "u", "passes": [{"budget": {"flops_fraction": 0.5, "method": "taylor", "steps": 4,
                                                  "batch_size": 16, "distill": 0.8}}]}
    rep = compress(src.out_dir, recipe, pointwise_file, tmp_path / "c", latency_runs=0, unlabeled=texts)
    note = rep["passes"][0]
    assert note["n_unlabeled"] == 40 and note["achieved_flops_fraction"] <= 0.5
    plain = {"name": "p", "passes": ["fuse"]}
    with pytest.raises(UsageError, match="extra.tsv.*distills"):
        compress(src.out_dir, plain, pointwise_file, tmp_path / "d", latency_runs=0, unlabeled=texts)


def test_budget_pass_caps_steps_and_final_steps_together(monkeypatch):
    """``max_epochs`` caps ``steps + final_steps`` (unlabeled rows count when distilling), both cut
    in proportion; the note says what was asked and what ran."""
    from types import SimpleNamespace

    from rmcompress.compression import budget as budget_mod
    from rmcompress.compression.settings import BudgetSettings
    from rmcompress.config.progress import Progress

    seen = {}

    def fake_budget_compress(bundle, train, val, **kw):
        seen.update(kw)
        return SimpleNamespace(model=bundle.model, tokenizer=bundle.tokenizer, metadata={})

    monkeypatch.setattr(budget_mod, "budget_compress", fake_budget_compress)
    model = _model()
    state = SimpleNamespace(model=model, tokenizer=SimpleNamespace(vocabulary=["a"]), metadata={},
                            train=_data(64), val=_data(8), unlabeled=_data(64, seed=1), seed=0, progress=Progress())
    # 64 + 64 rows / batch 32 = 4 steps per epoch; max_epochs 10 -> 40 of the 100 asked
    note = budget_mod.BudgetPass()(state, BudgetSettings(flops_fraction=0.5, steps=60, final_steps=40, batch_size=32,
                                                         distill=0.5, max_epochs=10.0, method="taylor")).notes
    assert (seen["steps"], seen["final_steps"]) == (24, 16) and seen["unlabeled"] is state.unlabeled
    assert note["steps_requested"] == 60 and note["final_steps_requested"] == 40
    assert note["steps"] == 24 and note["final_steps"] == 16 and note["n_unlabeled"] == 64
    note = budget_mod.BudgetPass()(state, BudgetSettings(flops_fraction=0.5, steps=60, final_steps=40, batch_size=32,
                                                         distill=0.0, max_epochs=None, method="taylor")).notes
    assert (seen["steps"], seen["final_steps"], seen["unlabeled"]) == (60, 40, None)


def test_gate_init_needs_a_trained_start():
    from rmcompress.training.trainer import TrainConfig

    with pytest.raises(UsageError, match="--init"):
        TrainConfig.from_flat(budget_flops=0.5, gate_init="magnitude")
    with pytest.raises(UsageError, match="unknown"):
        TrainConfig.from_flat(init="somewhere", gate_init="random")


def test_gate_schedule_defaults_follow_the_gate_start():
    """Uniform gates keep the long gated phase (30% fine-tuning); gates started in importance
    order default to spread 4 and 80% fine-tuning; explicit values win; a bad fraction is refused."""
    from rmcompress.config.choices import GATE_SCHEDULES, gate_schedule
    from rmcompress.training.trainer import TrainConfig

    assert gate_schedule("uniform") == (2.0, 0.3) == GATE_SCHEDULES["uniform"]
    assert gate_schedule("magnitude") == (4.0, 0.8) == gate_schedule("taylor")
    assert gate_schedule("magnitude", spread=1.0, finetune_fraction=0.5) == (1.0, 0.5)
    cfg = TrainConfig.from_flat(budget_flops=0.5)
    assert (cfg.gates.init_spread, cfg.gates.finetune_fraction) == (2.0, 0.3)
    cfg = TrainConfig.from_flat(init="somewhere", budget_flops=0.5, gate_init="magnitude")
    assert (cfg.gates.init_spread, cfg.gates.finetune_fraction) == (4.0, 0.8)
    cfg = TrainConfig.from_flat(init="somewhere", budget_flops=0.5, gate_init="taylor", finetune_fraction=0.6)
    assert cfg.gates.finetune_fraction == 0.6
    with pytest.raises(UsageError, match="--finetune-fraction"):
        TrainConfig.from_flat(budget_flops=0.5, finetune_fraction=1.0)
    with pytest.raises(UsageError, match="--gate-init-spread"):
        TrainConfig.from_flat(init="somewhere", gate_init="magnitude", gate_init_spread=-1.0)


def test_budget_compress_with_representation_distillation(trained_models):
    """``distill_features``: the teacher's pooled features ride with the rows (unlabeled too), the
    scale is the teacher's spread, and both routes (taylor, ranked gates) train with the term."""
    from rmcompress.training.budget import budget_compress, with_teacher_targets
    from rmcompress.training.distill import feature_model

    src = trained_models["transformer"]
    extra = EncodedData("pointwise", ids=src.val_data.ids[:5], labels=np.zeros(5, np.float32))
    data = with_teacher_targets(src.bundle.model, src.train_data, extra, features=True)
    n = len(src.train_data)
    reward, pooled = feature_model(src.bundle.model).predict(extra.ids, verbose=0)
    assert data.teacher_features.shape == (n + 5, pooled.shape[1])
    np.testing.assert_allclose(data.teacher_features[n:], pooled, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(data.teacher[n:], reward.ravel(), rtol=1e-5, atol=1e-5)
    for kw in ({"method": "taylor", "stages": 2, "final_steps": 2}, {"gate_init": "magnitude"}):
        out = budget_compress(src.bundle, src.train_data, src.val_data, flops_fraction=0.5, steps=6,
                              batch_size=16, distill_weight=0.5, distill_features=1.0, unlabeled=extra, **kw)
        assert out.report["distill_features"] == 1.0 and out.report["flops_fraction"] <= 0.5 + 0.02
        assert np.isfinite(out.report["accuracy"])


def test_budget_pass_key_distill_features(tmp_path):
    from rmcompress.compression.recipe import Recipe
    from rmcompress.errors import RecipeError

    path = tmp_path / "f.yaml"
    path.write_text("name: f\npasses:\n  - budget: {flops_fraction: 0.25, method: taylor, distill: 0.9, "
                    "distill_features: 2.0}\n")
    assert Recipe.load(path).passes[0].params["distill_features"] == 2.0
    path.write_text("name: f\npasses:\n  - budget: {flops_fraction: 0.25, distill_features: -1}\n")
    with pytest.raises(RecipeError, match="distill_features"):
        Recipe.load(path)
