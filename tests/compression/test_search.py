"""Recipe search: the space, successive halving, the choice within the drop, Pareto set, cache/resume."""
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from rmcompress.compression import search as search_mod
from rmcompress.compression.recipe import Recipe
from rmcompress.compression.search import (Candidate, LevelCandidate, Settings, Space, drop_bound, pareto,
                                           parse_duration, promise_key, promote, rank_key, same_model_at, search)
from rmcompress.errors import UsageError
from rmcompress.fileio import write_json


def test_every_candidate_is_a_valid_recipe_with_scaled_steps():
    cands = Space().candidates()
    assert [c.name for c in cands[:3]] == ["level-light", "level-medium", "level-aggressive"]
    assert len(cands) == 3 + 4 * 2 * 2 * 3 and len({c.name for c in cands}) == len(cands)
    for c in cands:
        Recipe.resolve(c.recipe(1 / 9))
    c = Candidate(0.25, True, 0.5, "qat")
    full, short = c.recipe(), c.recipe(1 / 3)
    names = [next(iter(p)) if isinstance(p, dict) else p for p in full["passes"]]
    assert names == ["budget", "fuse", "factorise", "prune", "cluster", "length", "quantise"]
    steps = [next(iter(p.values())).get("steps") for p in full["passes"] if isinstance(p, dict)]
    short_steps = [next(iter(p.values())).get("steps") for p in short["passes"] if isinstance(p, dict)]
    assert steps == [1000, 200, 300, 200, None, 300]
    assert short_steps == [333, 67, 100, 67, None, 100]
    budget = Candidate(0.1, True, 0.0, "int8").recipe()["passes"][0]["budget"]
    shipped = Recipe.resolve("aggressive").passes[0].params
    assert (budget["width"], budget["gate_init"]) == (False, "uniform") != (shipped["width"], shipped["gate_init"])
    plain = Candidate(1.0, False, 0.0, "int8").recipe()
    assert [next(iter(p)) if isinstance(p, dict) else p for p in plain["passes"]] == ["fuse", "length", "quantise"]
    assert plain["passes"][-1]["quantise"]["keep_float_ops"] == "auto"
    assert plain["passes"][-1]["quantise"]["min_layer_agreement"] == search_mod.MIN_LAYER_AGREEMENT


def test_the_levels_run_as_written_with_scaled_steps_before_the_grid():
    """``aggressive`` as a candidate is the shipped recipe: rank-10 factorisation, 12 token clusters,
    QAT, stripped names; only its steps scale with the rung, and the search's data section replaces its own."""
    level = LevelCandidate("aggressive")
    full, half = level.recipe(), level.recipe(0.5, data={"seed": 4})
    shipped = Recipe.resolve("aggressive").to_dict()
    assert [next(iter(p)) for p in full["passes"]] == [next(iter(p)) for p in shipped["passes"]]
    assert full["passes"] == shipped["passes"] and full["export"]["strip_names"] is True
    assert "data" not in full and half["data"] == {"seed": 4}
    by_name = {next(iter(p)): next(iter(p.values())) for p in half["passes"]}
    assert by_name["budget"]["steps"] == 1000 and by_name["budget"]["flops_fraction"] == 0.1
    assert by_name["factorise"]["rank"] == 10 and by_name["factorise"]["steps"] == 200
    assert by_name["cluster"]["embedding_clusters"] == 12 and by_name["quantise"] == {**by_name["quantise"], "mode": "qat",
                                                                                    "steps": 150}
    assert Recipe.resolve(half).export["strip_names"] is True
    pre = LevelCandidate("pretrained-aggressive").recipe(1 / 3)["passes"][0]["budget"]
    assert (pre["steps"], pre["final_steps"]) == (300, 1000)
    grid = Space(levels=("light",), budgets=(0.1,), factorise=(True,), sparsity=(0.0,), precisions=("int8",))
    assert [c.name for c in grid.candidates()] == ["level-light", "b0.1-f-s0-int8"]
    with pytest.raises(UsageError, match="search: level 'heavy'"):
        Space(levels=("heavy",))
    with pytest.raises(UsageError, match="two candidates would be named 'level-light'"):
        Space(levels=("light", "light"))


def test_the_margin_asks_the_drop_plus_z_standard_errors_to_be_within_max_drop():
    row = {"accuracy_drop_points": 0.2, "accuracy_drop_se_points": 0.5, "latency_speedup": 4.0}
    assert drop_bound(row, Settings(margin_z=1.0)) == pytest.approx(0.7)
    assert rank_key(row, Settings(max_drop=0.5, margin_z=0.0))[0] == 0
    assert rank_key(row, Settings(max_drop=0.5, margin_z=1.0))[0] == 1
    assert rank_key(row, Settings(max_drop=0.5, margin_z=0.6))[0] == 0  # 0.2 + 0.3 = 0.5
    # infeasible runs rank by the bound: a noisier run with the smaller drop comes after
    noisy = {"accuracy_drop_points": 0.3, "accuracy_drop_se_points": 1.0, "latency_speedup": 9.0}
    steady = {"accuracy_drop_points": 0.6, "accuracy_drop_se_points": 0.0, "latency_speedup": 1.0}
    s = Settings(max_drop=0.5, margin_z=1.0)
    assert rank_key(steady, s) < rank_key(noisy, s)
    assert rank_key(noisy, Settings(max_drop=0.5, margin_z=0.0)) < rank_key(steady, Settings(max_drop=0.5, margin_z=0.0))
    assert drop_bound({"accuracy_drop_points": math.inf}, s) == math.inf
    with pytest.raises(UsageError, match="margin_z -1"):
        Settings(margin_z=-1)


def test_ranking_puts_feasible_runs_first_by_objective_then_the_rest_by_drop():
    s = Settings(max_drop=0.5, objective="latency")
    rows = [{"accuracy_drop_points": 0.2, "latency_speedup": 3.0}, {"accuracy_drop_points": 0.4, "latency_speedup": 5.0},
            {"accuracy_drop_points": 2.0, "latency_speedup": 9.0}, {"accuracy_drop_points": 0.9, "latency_speedup": 1.0}]
    order = sorted(range(4), key=lambda i: rank_key(rows[i], s))
    assert order == [1, 0, 3, 2]
    flops = Settings(objective="flops")  # equal FLOPs: the smaller drop first
    assert rank_key({"accuracy_drop_points": 0.1, "flops": 5}, flops) < rank_key(
        {"accuracy_drop_points": 0.3, "flops": 5}, flops)
    assert rank_key({"accuracy_drop_points": math.inf}, flops)[0] == 1  # a failed run
    size = Settings(objective="size")
    assert rank_key({"accuracy_drop_points": 0.0, "size_bytes": 10}, size) < rank_key(
        {"accuracy_drop_points": 0.0, "size_bytes": 20}, size)
    reward = Settings(objective="reward", reward_gamma=0.1)
    row = {"accuracy": 0.8, "flops": 25.0, "source_flops": 100.0}
    assert search_mod.objective_value(row, reward) == pytest.approx(0.8 * 1.2)


def test_promotion_keeps_the_rungs_best_then_the_fastest_that_may_still_meet_the_drop():
    """The incumbent first; then by the optimistic bound drop - promote_z * se (a short rung
    over-states the drop), not by how close each already is."""
    rows = {"safe": {"accuracy_drop_points": 1.9, "accuracy_drop_se_points": 1.1, "latency_speedup": 7.4},
            "near": {"accuracy_drop_points": 2.0, "accuracy_drop_se_points": 1.3, "latency_speedup": 6.1},
            "fast": {"accuracy_drop_points": 2.9, "accuracy_drop_se_points": 1.3, "latency_speedup": 14.8},
            "far": {"accuracy_drop_points": 9.0, "accuracy_drop_se_points": 1.3, "latency_speedup": 30.0},
            "failed": {"accuracy_drop_points": math.inf}}
    results = list(rows.items())
    s = Settings(max_drop=1.5, margin_z=0.0, eta=2)
    assert s.promote_z == 2.0
    assert promote(results, s) == ["safe", "fast"]  # fast: 2.9 - 2.6 = 0.3 may be within; far: 6.4 is not
    assert promise_key(rows["fast"], s)[0] == 0 and promise_key(rows["far"], s)[0] == 1
    assert rank_key(rows["fast"], s)[0] == 1  # ... while the choice itself keeps the plain drop
    by_rank = Settings(max_drop=1.5, margin_z=0.0, eta=2, promote_z=0.0)
    assert promote(results, by_rank) == ["safe", "near"]
    # a feasible incumbent is never traded: with one place it is the one that goes on
    assert promote(results, Settings(max_drop=2.0, margin_z=0.0, eta=5)) == ["safe"]
    assert promote(results, Settings(max_drop=1.5, margin_z=0.0, eta=2, promote_z=9.0))[1] == "far"
    assert promote([], s) == []
    failed = [(f"f{i}", rows["failed"]) for i in range(3)]  # a failed run is never sent on
    assert promote([*failed, ("far", rows["far"])], s) == ["far"] and promote(failed, s) == []
    # with a margin, promote_z 0 is the plain drop, not the bound: 1.4 + 1.2 is past 1.5, 1.4 is not
    margin = Settings(max_drop=1.5, margin_z=1.0, eta=2, promote_z=0.0)
    close = {"accuracy_drop_points": 1.4, "accuracy_drop_se_points": 1.2, "latency_speedup": 12.0}
    steady = {"accuracy_drop_points": 1.0, "accuracy_drop_se_points": 1.0, "latency_speedup": 10.0}
    best = {"accuracy_drop_points": 0.2, "accuracy_drop_se_points": 1.0, "latency_speedup": 5.0}
    assert promote([("best", best), ("steady", steady), ("close", close), *failed[:1]], margin) == ["best", "close"]
    with pytest.raises(UsageError, match="promote_z -1"):
        Settings(promote_z=-1)


def test_pareto_set_keeps_only_undominated_runs():
    df = pd.DataFrame({"candidate": list("abcd"), "accuracy_drop_points": [0.1, 0.3, 0.2, 0.5],
                       "objective": [2.0, 5.0, 1.5, 4.0]})
    assert list(pareto(df, Settings(objective="latency"))["candidate"]) == ["a", "b"]
    assert list(pareto(df, Settings(objective="size"))["candidate"]) == ["a", "c"]


def test_an_int4_candidate_keeps_8_bits_where_4_reorder_rewards():
    """``int4`` is a precision of the space: its recipe is the int4 quantise pass with the per-layer
    agreement check (mixed 4/8-bit weights)."""
    from rmcompress.compression.search import MIN_LAYER_AGREEMENT, Candidate

    recipe = Candidate(1.0, False, 0.0, "int4").recipe(1.0)
    quantise = recipe["passes"][-1]["quantise"]
    assert quantise == {"mode": "int4", "min_layer_agreement": MIN_LAYER_AGREEMENT}
    from rmcompress.compression.recipe import Recipe

    Recipe.from_dict(recipe)  # a valid recipe


def test_settings_and_durations_are_checked():
    assert parse_duration("60m") == 3600 and parse_duration("1.5h") == 5400 and parse_duration("90") == 90
    with pytest.raises(UsageError, match="--time-budget 'soon'"):
        parse_duration("soon")
    with pytest.raises(UsageError, match="objective 'speed' unknown"):
        Settings(objective="speed")
    with pytest.raises(UsageError, match="precision 'int2' unknown"):
        Space(precisions=("int2",))
    with pytest.raises(UsageError, match="budget 0 must be"):
        Space(budgets=(0,))


def test_search_runs_the_rungs_chooses_writes_and_resumes(tmp_path, trained_models, pointwise_file, monkeypatch):
    model = trained_models["cnn"].out_dir
    s = Settings(max_drop=100.0, objective="size", eta=2, rungs=2, latency_runs=5,
                 space=Space(levels=(), budgets=(1.0,), factorise=(False,), sparsity=(0.0,), precisions=("float16", "dynamic")))
    out = tmp_path / "s"
    report = search(model, pointwise_file, out, s, test_data=pointwise_file)
    runs = pd.read_csv(out / "search.csv")
    assert list(runs["rung"]) == [0, 0, 1] and report["runs"] == 3 and report["final_rung_runs"] == 1
    assert (runs["accuracy_drop_se_points"] >= 0).all() and report["margin_z"] == s.margin_z == 1.0
    assert runs["drop_bound"].to_numpy() == pytest.approx(
        (runs["accuracy_drop_points"] + runs["accuracy_drop_se_points"]).to_numpy())
    # the smaller file of rung 0 goes on, and is chosen
    first = runs[runs["rung"] == 0].sort_values("size_bytes")
    assert first["size_bytes"].iloc[0] < first["size_bytes"].iloc[1]
    smallest = first["candidate"].iloc[0]
    assert runs.loc[runs["rung"] == 1, "candidate"].item() == smallest
    best = report["best"]
    assert best["candidate"] == smallest and report["feasible"] and not math.isnan(best["test_drop"])
    assert (out / "best" / "model.tflite").is_file() and (out / "pareto.png").stat().st_size > 5000
    precision = smallest.rsplit("-", 1)[1]
    assert yaml.safe_load((out / "best.yaml").read_text()) == Candidate(1.0, False, 0.0, precision).recipe()
    Recipe.resolve(out / "best.yaml")

    def no_compress(*a, **k):
        raise AssertionError("a cached run was run again")

    monkeypatch.setattr(search_mod, "compress", no_compress)
    again = search(model, pointwise_file, out, s)
    assert again["best"]["candidate"] == best["candidate"] and again["runs"] == 3
    with pytest.raises(UsageError, match=r"holds a search with another max_drop;"):
        search(model, pointwise_file, out, Settings(max_drop=1.0, objective="size", eta=2, rungs=2, latency_runs=5,
                                                    space=s.space))
    with pytest.raises(UsageError, match=r"holds a search with another model, model_signature;"):
        search(trained_models["bow"].out_dir, pointwise_file, out, s)
    (tmp_path / "mine").mkdir()
    with pytest.raises(UsageError, match="exists and holds no rmcompress search"):
        search(model, pointwise_file, tmp_path / "mine", s)


def test_time_budget_stops_new_runs(tmp_path, trained_models, pointwise_file):
    s = Settings(max_drop=100.0, objective="size", eta=2, rungs=1, latency_runs=5, time_budget=0.0,
                 space=Space(levels=(), budgets=(1.0,), factorise=(False,), sparsity=(0.0,), precisions=("float16", "dynamic")))
    with pytest.raises(UsageError, match="no candidate finished within the time budget"):
        search(trained_models["cnn"].out_dir, pointwise_file, tmp_path / "s", s)


def test_command_prints_the_choice(cli, tmp_path, trained_models, pointwise_file):
    rc, out, err = cli("search", "--model", trained_models["bow"].out_dir, "--data", pointwise_file,
                       "--out", tmp_path / "s", "--objective", "size", "--max-drop", "100", "--budgets", "1",
                       "--levels", "none", "--margin-z", "1.645", "--promote-z", "1",
                       "--factorise", "off", "--sparsity", "0", "--precisions", "dynamic", "--rungs", "1",
                       "--latency-runs", "5")
    assert rc == 0, err
    assert out.splitlines()[0].startswith("best: b1-nof-s0-dynamic (within 100 points)")
    rc, _, err = cli("search", "--model", trained_models["bow"].out_dir, "--data", pointwise_file,
                     "--out", tmp_path / "t", "--precisions", "int2")
    assert rc == 2 and "precision 'int2' unknown" in err
    written = yaml.safe_load(open(tmp_path / "s" / "search.json"))
    assert written["margin_z"] == 1.645 and written["promote_z"] == 1
    rc, _, err = cli("search", "--model", trained_models["bow"].out_dir, "--data", pointwise_file,
                     "--out", tmp_path / "u", "--levels", "light,heavy")
    assert rc == 2 and "level 'heavy'" in err


def test_a_failing_candidate_is_recorded_and_skipped_on_resume(tmp_path, trained_models, pointwise_file, monkeypatch):
    real = search_mod.compress
    calls = []

    def flaky(model, recipe, data, out, **kw):
        calls.append(recipe["name"])
        if "float16" in recipe["name"]:
            raise UsageError("parity: float16 file disagrees")
        return real(model, recipe, data, out, **kw)

    monkeypatch.setattr(search_mod, "compress", flaky)
    s = Settings(max_drop=100.0, objective="size", eta=2, rungs=1, latency_runs=5,
                 space=Space(levels=(), budgets=(1.0,), factorise=(False,), sparsity=(0.0,), precisions=("float16", "dynamic")))
    report = search(trained_models["cnn"].out_dir, pointwise_file, tmp_path / "s", s)
    runs = pd.read_csv(tmp_path / "s" / "search.csv")
    failed = runs[runs["candidate"] == "b1-nof-s0-float16"].iloc[0]
    assert failed["error"] == "parity: float16 file disagrees" and failed["accuracy_drop_points"] == math.inf
    assert report["best"]["candidate"] == "b1-nof-s0-dynamic"
    n = len(calls)
    search(trained_models["cnn"].out_dir, pointwise_file, tmp_path / "s", s)
    assert len(calls) == n  # neither the failure nor the success runs again


def test_a_data_section_sets_every_candidates_split(tmp_path, trained_models, pointwise_file):
    from rmcompress.data.loaders import load_data
    from rmcompress.data.split import split_data
    from rmcompress.errors import RecipeError

    assert Candidate(1.0, False, 0.0, "dynamic").recipe(data={"seed": 3})["data"] == {"seed": 3}
    assert "data" not in Candidate(1.0, False, 0.0, "dynamic").recipe()
    with pytest.raises(RecipeError, match="split"):
        Settings(data={"split": "halves"})
    split = {"val_fraction": 0.3, "seed": 5, "split": "random"}
    s = Settings(max_drop=100.0, objective="size", eta=2, rungs=1, latency_runs=5, data=split,
                 space=Space(levels=(), budgets=(1.0,), factorise=(False,), sparsity=(0.0,), precisions=("float16",)))
    report = search(trained_models["cnn"].out_dir, pointwise_file, tmp_path / "s", s)
    val = split_data(load_data(pointwise_file, "pointwise"), 0.3, 5, "random")[1]
    assert report["best"]["n_examples"] == len(val)
    assert yaml.safe_load((tmp_path / "s" / "best.yaml").read_text())["data"] == split
    with pytest.raises(UsageError, match=r"holds a search with another recipe_data;"):
        search(trained_models["cnn"].out_dir, pointwise_file, tmp_path / "s",
               Settings(max_drop=100.0, objective="size", eta=2, rungs=1, latency_runs=5, space=s.space))


def test_a_regression_model_is_refused_before_any_run(tmp_path):
    from rmcompress.data.synthetic import pointwise_frame
    from rmcompress.training.trainer import train
    from tests.helpers import tiny_config

    df = pointwise_frame(80, seed=3)
    df["label"] = df["label"] * 0.5 + 0.1
    df.to_csv(tmp_path / "r.tsv", sep="\t", index=False)
    train(tmp_path / "r.tsv", tiny_config(arch="bow", loss="mse", max_steps=2), tmp_path / "m", verbose=0)
    with pytest.raises(UsageError, match="mse regression model; the accuracy drop"):
        search(tmp_path / "m", tmp_path / "r.tsv", tmp_path / "s", Settings())
    assert not (tmp_path / "s").exists()


def test_a_run_of_a_short_rung_within_the_drop_is_chosen_over_full_runs_past_it(tmp_path, trained_models,
                                                                                 pointwise_file, monkeypatch):
    """A candidate within ``max_drop`` at the short rung that drifts past it at full steps is
    returned as the short run, and ``best.yaml`` reproduces that run's steps."""
    import rmcompress.compression.search as S

    real = S.compress

    def drifting(model, recipe, data, out, **kw):  # full-step runs lose 50 points more
        report = real(model, recipe, data, out, **kw)
        if str(out).endswith("-r1"):
            report["accuracy_drop_points"] = report.get("accuracy_drop_points", 0.0) + 50.0
            write_json(Path(out) / "report.json", report)
        return report

    monkeypatch.setattr(S, "compress", drifting)
    # 4 steps: below one epoch of the training split (5 batches), so the full-step run trains more;
    # int8 weights: smaller than the grid's float16 candidate, so it goes on
    (tmp_path / "f.yaml").write_text(yaml.safe_dump(
        {"name": "f", "passes": ["fuse", {"factorise": {"vocab_prune": True, "steps": 4}}, {"quantise": {"mode": "dynamic"}}]}))
    s = Settings(max_drop=10.0, objective="size", eta=2, rungs=2, latency_runs=5, margin_z=0.0,
                 space=Space(levels=(str(tmp_path / "f.yaml"),), budgets=(1.0,), factorise=(False,), sparsity=(0.0,),
                             precisions=("float16",)))
    report = search(trained_models["cnn"].out_dir, pointwise_file, tmp_path / "s", s)
    best = report["best"]
    assert best["rung"] == 0 and best["step_scale"] == 0.5 and report["feasible"], best
    recipe = yaml.safe_load((tmp_path / "s" / "best.yaml").read_text())
    assert recipe == LevelCandidate(str(tmp_path / "f.yaml")).recipe(0.5)
    assert recipe["passes"][1]["factorise"]["steps"] == 2


def test_candidates_that_share_a_budget_pass_train_it_once(tmp_path, trained_models, pointwise_file):
    """Two recipes that start with the same budget pass: the second starts from the first's state
    (:mod:`rmcompress.compression.prefixcache`), and says so in its report and the search's log."""
    budget = {"budget": {"flops_fraction": 0.5, "steps": 6, "batch_size": 16}}
    for name, mode in (("one", "dynamic"), ("two", "float16")):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(
            {"name": name, "passes": [budget, "fuse", {"quantise": {"mode": mode}}]}))
    s = Settings(max_drop=100.0, objective="size", rungs=1, latency_runs=5,
                 space=Space(levels=(str(tmp_path / "one.yaml"), str(tmp_path / "two.yaml")), budgets=(1.0,),
                             factorise=(False,), sparsity=(0.0,), precisions=("dynamic",)))
    lines = []
    search(trained_models["transformer"].out_dir, pointwise_file, tmp_path / "s", s, log=lines.append)
    runs = pd.read_csv(tmp_path / "s" / "search.csv").set_index("candidate")
    from rmcompress.fileio import read_json

    first, second = (read_json(tmp_path / "s" / "candidates" / f"level-{n}-r0" / "report.json") for n in ("one", "two"))
    assert not any(p.get("reused") for p in first["passes"])
    assert [p["pass"] for p in second["passes"] if p.get("reused")] == ["budget", "fuse"]
    assert second["passes"][0]["flops_after"] == first["passes"][0]["flops_after"]
    assert "level-two: started from the state after budget, fuse of an earlier run" in lines
    assert runs.loc["level-two", "flops"] == runs.loc["level-one", "flops"]
    assert runs.loc["level-two", "reused_passes"] == "budget,fuse" and pd.isna(runs.loc["level-one", "reused_passes"])


def test_a_run_capped_in_every_training_pass_is_the_same_model_at_more_steps():
    """:func:`same_model_at` on the notes a run reports: it holds only where every pass whose steps
    grow stopped below its request, a budget pass keeps its final-steps share, nothing else changes."""
    def recipe(k):
        return {"passes": [{"budget": {"flops_fraction": 0.1, "steps": 500 * k, "final_steps": 100 * k}}, "fuse",
                           {"factorise": {"vocab_prune": True, "steps": 100 * k}}, {"quantise": {"mode": "int8"}}]}

    capped = {"passes": [{"pass": "budget", "steps": 170, "final_steps": 34, "steps_requested": 500},
                         {"pass": "fuse"}, {"pass": "factorise", "steps": 20, "steps_requested": 100},
                         {"pass": "length"}, {"pass": "quantise"}]}
    assert same_model_at(recipe(1), recipe(2), capped)
    assert same_model_at({"passes": ["fuse", {"quantise": {"mode": "int8"}}]},
                         {"passes": ["fuse", {"quantise": {"mode": "int8"}}]}, {"passes": []})  # nothing trains
    light = LevelCandidate("light")  # its quantise pass carries steps, which only qat trains
    assert same_model_at(light.recipe(0.5), light.recipe(1.0), {"passes": [
        {"pass": "fuse"}, {"pass": "length"}, {"pass": "quantise", "mode": "dynamic", "steps": 0, "steps_requested": 150}]})
    ran_all = {"passes": [capped["passes"][0], {"pass": "fuse"},
                          {"pass": "factorise", "steps": 100, "steps_requested": 100}]}
    assert not same_model_at(recipe(1), recipe(2), ran_all)  # factorise trained every step it asked for
    silent = {"passes": [capped["passes"][0], {"pass": "fuse"}, {"pass": "factorise"}]}
    assert not same_model_at(recipe(1), recipe(2), silent)  # a pass that does not say is taken to train more
    share = recipe(2)
    share["passes"][0]["budget"]["final_steps"] = 300
    assert not same_model_at(recipe(1), share, capped)  # the cap splits steps and final_steps in the new ratio
    other = recipe(2)
    other["passes"][2]["factorise"]["max_error"] = 0.2
    assert not same_model_at(recipe(1), other, capped)
    assert not same_model_at(recipe(1), {"passes": recipe(2)["passes"][:2]}, capped)


def test_a_capped_short_run_is_not_repeated_and_its_full_steps_build_the_same_model(tmp_path, trained_models,
                                                                                     pointwise_file, monkeypatch):
    """A candidate whose half-step run stopped at one epoch in its only training pass gets the same
    run as its full-step row (no second build), and the full-step recipe, built on its own, scores the
    validation rows as that run did."""
    import rmcompress.compression.search as S
    from rmcompress.compression.pipeline import compress
    from rmcompress.fileio import read_json

    real, built = S.compress, []

    def counting(model, recipe, data, out, **kw):
        built.append(Path(out).name)
        return real(model, recipe, data, out, **kw)

    monkeypatch.setattr(S, "compress", counting)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(  # 40 steps asked, 5 batches an epoch: capped at both rungs
        {"name": "c", "passes": ["fuse", {"factorise": {"vocab_prune": True, "steps": 40}}, {"quantise": {"mode": "float16"}}]}))
    s = Settings(max_drop=100.0, objective="size", eta=2, rungs=2, latency_runs=5,
                 space=Space(levels=(str(tmp_path / "c.yaml"),), budgets=(1.0,), factorise=(False,), sparsity=(0.0,),
                             precisions=("float16",)))
    lines = []
    report = search(trained_models["cnn"].out_dir, pointwise_file, tmp_path / "s", s, test_data=pointwise_file,
                    log=lines.append)
    assert built == ["level-c-r0", "b1-nof-s0-float16-r0"]
    runs = pd.read_csv(tmp_path / "s" / "search.csv", keep_default_na=False)
    later = runs[runs["rung"] == 1].iloc[0]
    assert later["same_model_as"] == "level-c-r0" and later["dir"].endswith("level-c-r0") and later["seconds"] == 0
    assert report["runs_not_repeated"] == 1 and any("not run again" in line for line in lines)
    # the model counts once, as its full-step row: best.yaml asks for the full steps
    best = report["best"]
    assert (best["candidate"], best["rung"], best["step_scale"]) == ("level-c", 1, 1.0)
    assert yaml.safe_load((tmp_path / "s" / "best.yaml").read_text()) == LevelCandidate(str(tmp_path / "c.yaml")).recipe()
    front = pd.read_csv(tmp_path / "s" / "pareto.csv")
    assert front["dir"].is_unique
    short = read_json(tmp_path / "s" / "candidates" / "level-c-r0" / "report.json")
    note = next(p for p in short["passes"] if p["pass"] == "factorise")
    assert note["steps"] < note["steps_requested"] == 20
    full = compress(trained_models["cnn"].out_dir, LevelCandidate(str(tmp_path / "c.yaml")).recipe(1.0), pointwise_file,
                    tmp_path / "full", latency_runs=0)
    assert next(p for p in full["passes"] if p["pass"] == "factorise")["steps"] == note["steps"]
    assert full["accuracy"] == short["accuracy"] and full["accuracy_drop_points"] == short["accuracy_drop_points"]
    assert (tmp_path / "full" / "model.tflite").read_bytes() == (tmp_path / "s" / "candidates" / "level-c-r0" /
                                                                 "model.tflite").read_bytes()


def test_latency_runs_are_compared_as_timed_together(tmp_path, trained_models, pointwise_file, monkeypatch):
    """With the latency objective, promotion and the choice follow one joint timing of the rung's files
    and the source's float32 file, not each run's own ratio: the joint timing (faked) reverses the
    runs' own order, and the file it makes fast goes on and is chosen; the run's own ratio stays as
    ``latency_speedup_run``, and a resumed search reuses the recorded timing."""
    import rmcompress.compression.search as S
    from rmcompress.fileio import read_json

    calls = []

    def own(f):
        return read_json(Path(f).parent / "report.json")["latency_speedup"]

    def joint(files, ids, runs, rounds):
        calls.append([Path(f).parent.name for f in files])
        assert rounds == S.TOGETHER_ROUNDS and len(ids) == len(files) and all(i.ndim == 2 for i in ids)
        slowest = min(files[1:], key=own)  # by its own run: it becomes the fast one
        return [{"latency_ms_p50": p, "latency_ms_p90": 2 * p} for p in
                (1.0 if i == 0 else (0.1 if f == slowest else 0.5) for i, f in enumerate(files))]

    monkeypatch.setattr(S, "interleaved_latency", joint)
    s = Settings(max_drop=100.0, objective="latency", eta=2, rungs=2, latency_runs=5,
                 space=Space(levels=(), budgets=(1.0,), factorise=(False,), sparsity=(0.0,),
                             precisions=("float16", "dynamic")))
    report = search(trained_models["cnn"].out_dir, pointwise_file, tmp_path / "s", s)
    runs = pd.read_csv(tmp_path / "s" / "search.csv")
    first = runs[runs["rung"] == 0]
    fast = first.loc[first["latency_speedup_run"].idxmin(), "candidate"]  # the slower by its own run
    assert runs.loc[runs["rung"] == 1, "candidate"].item() == report["best"]["candidate"] == fast
    assert calls[0] == ["source-float32", "b1-nof-s0-float16-r0", "b1-nof-s0-dynamic-r0"]  # the rung, then all
    assert runs["latency_speedup"].tolist() == [pytest.approx(10.0 if c == fast else 2.0) for c in runs["candidate"]]
    assert report["best"]["latency_speedup"] == pytest.approx(10.0) and report["best"]["latency_ms_p90"] == 0.2
    # resumed: the recorded joint timings decide again, nothing is timed
    monkeypatch.setattr(S, "interleaved_latency", lambda *a, **k: pytest.fail("timed again on resume"))
    assert search(trained_models["cnn"].out_dir, pointwise_file, tmp_path / "s", s)["best"]["candidate"] == fast
