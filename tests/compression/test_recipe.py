"""Recipe schema: built-in levels load, user files work, every mistake names the key and the allowed values."""
from __future__ import annotations

import pytest

from rmcompress.compression.recipe import LEVELS, Recipe
from rmcompress.compression.settings import PASS_RANK, SETTINGS
from rmcompress.errors import RecipeError


@pytest.mark.parametrize("level", LEVELS)
def test_builtin_levels_load_and_follow_the_order(level):
    r = Recipe.level(level)
    assert r.name == level
    assert r.pass_names()[-1] in ("quantise", "length") or "quantise" in r.pass_names()
    assert "fuse" in r.pass_names()
    assert r.export["formats"] == ["savedmodel", "tflite"]


def test_level_contents_match_the_issue():
    assert [p.name for p in Recipe.level("lossless").passes] == ["fuse", "length", "quantise"]
    assert Recipe.level("lossless").get("quantise").params["mode"] == "float16"
    assert Recipe.level("light").get("quantise").params["mode"] == "dynamic"
    med = Recipe.level("medium")
    assert med.get("budget").params["flops_fraction"] == 0.25
    assert med.get("quantise").params["mode"] == "int8" and med.get("factorise") is not None
    agg = Recipe.level("aggressive")
    assert {"budget", "prune", "cluster", "factorise"} <= set(agg.pass_names())
    assert agg.get("quantise").params["mode"] == "qat"
    for level in (agg, Recipe.resolve("extreme")):  # the clustered token table stored as a 4-bit palette
        assert level.get("quantise").params["embedding_bits"] == 4
        assert level.get("cluster").params["embedding_clusters"] <= 16


def test_user_file_with_defaults_filled_in(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("passes:\n  - fuse\n  - prune: {sparsity: 0.8, steps: 10}\n  - quantize: {mode: int8}\n")
    r = Recipe.resolve(str(f))
    assert r.name == "mine"
    assert r.pass_names() == ["fuse", "prune", "quantise"]  # 'quantize' spelling accepted
    p = r.get("prune").params
    assert p["sparsity"] == 0.8 and p["schedule"] == "polynomial" and p["embedding"] is True
    assert r.get("quantise").params["calibration_samples"] == 300
    assert Recipe.from_dict(r.to_dict()).to_dict() == r.to_dict()  # round trip


@pytest.mark.parametrize("doc, expected", [
    ({"passes": ["fuse"], "colour": 1}, "unknown key 'colour'; allowed keys: name, description, data, passes, export"),
    ({"passes": [{"fuse": {"drop": True}}]}, "unknown key 'passes[0].fuse.drop'; allowed keys in passes[0].fuse: dropout"),
    ({"passes": [{"prune": {"sparsity": 1.0}}]}, "'passes[0].prune.sparsity' = 1 is out of range; allowed: 0 <= sparsity < 1"),
    ({"passes": [{"prune": {"sparsity": "high"}}]}, "'passes[0].prune.sparsity' must be a number, got str 'high'"),
    ({"passes": [{"budget": {"flops_fraction": 0}}]}, "'passes[0].budget.flops_fraction' = 0 is out of range; allowed: 0 < flops_fraction <= 1"),
    ({"passes": [{"budget": {"flops_fraction": -0.5}}]}, "flops_fraction' = -0.5 is out of range"),
    ({"passes": [{"budget": {}}]}, "passes[0].budget: needs flops_fraction or params_fraction"),
    ({"passes": [{"quantise": {"mode": "int3"}}]}, "'passes[0].quantise.mode' = 'int3' is not allowed; allowed values: float16, dynamic, int4, int8, int16x8, qat"),
    ({"passes": [{"cluster": {}}, {"prune": {}}]}, "passes[1]: 'prune' cannot come after 'cluster'; passes must follow the order budget -> attention/fuse/factorise -> prune"),
    ({"passes": [{"quantise": {}}, "fuse"]}, "passes[1]: 'fuse' cannot come after 'quantise'"),
    ({"passes": ["fuse", "fuse"]}, "passes[1]: 'fuse' appears twice in passes (first at passes[0])"),
    ({"passes": ["shrink"]}, "passes[0]: unknown pass 'shrink'; allowed: budget, attention, fuse, factorise, prune, cluster, quantise, length"),
    ({"passes": []}, "'passes' needs at least 1 item(s), got 0 (a non-empty list of passes; allowed passes: budget"),
    ({"passes": [{"fuse": {}, "prune": {}}]}, "passes[0]: must be a pass name or a one-key mapping"),
    ({"passes": [{"factorise": {"rank": 8, "max_error": 0.1}}]}, "passes[0].factorise: give rank or max_error, not both"),
    ({"passes": [{"prune": {"m_by_n": [4, 2]}}]}, "'passes[0].prune.m_by_n' must be [m, n] with 0 < m < n, e.g. [2, 4], got [4, 2]"),
    ({"passes": [{"prune": {"sparsity": 0.5, "initial_sparsity": 0.6}}]}, "initial_sparsity: 0.6 must be below sparsity 0.5"),
    ({"passes": [{"quantise": {"mode": "dynamic", "keep_float_ops": ["SOFTMAX"]}}]}, "apply to mode int8 or int16x8 only"),
    ({"passes": [{"quantise": {"mode": "int4", "max_layer_error": 1.5}}]}, "apply to mode int8 or int16x8 only"),
    ({"passes": [{"quantise": {"mode": "dynamic", "min_layer_agreement": 0.9}}]},
     "passes[0].quantise.min_layer_agreement: applies to mode int8, int16x8 or int4 only"),
    ({"passes": [{"quantise": {"mode": "dynamic", "embedding_bits": 4}}]},
     "passes[0].quantise.embedding_bits: applies to mode int8 or qat only"),
    ({"passes": [{"quantise": {"mode": "qat", "embedding_bits": 2}}]},
     "'passes[0].quantise.embedding_bits' = 2 is not allowed; allowed values: 8, 4"),
    ({"passes": [{"prune": {"steps": True}}]}, "'passes[0].prune.steps' must be an integer, got bool True"),
    ({"passes": ["fuse"], "export": {"formats": ["onnx"]}}, "'export.formats[0]' = 'onnx' is not allowed; allowed values: savedmodel, tflite"),
    ({"passes": ["fuse"], "data": {"split": "odd"}}, "'data.split' = 'odd' is not allowed; allowed values: auto, random, disjoint, sentences"),
    ({"passes": [{"length": {"buckets": [0, 16]}}]}, "'passes[0].length.buckets[0]' = 0 is out of range; allowed: 1 <= buckets[0]"),
    ({"passes": [{"length": {"buckets": "fast"}}]}, "'passes[0].length.buckets' must be 'auto' or a list of positive lengths"),
    ({"passes": [{"cluster": {"preserve_sparsity": "yes"}}]}, "'passes[0].cluster.preserve_sparsity' = 'yes' is not allowed; allowed values: true, false, auto"),
    ({"passes": [{"prune": {"sparsity": float("nan")}}]}, "'passes[0].prune.sparsity' = nan is not a finite number"),
    ({"passes": [{"fuse": 3}]}, "'passes[0].fuse' must be a mapping of keys to values, got int 3; allowed keys: dropout"),
    ({"passes": ["fuse"], "data": []}, "'data' must be a mapping, got list []"),
    ({"name": "x"}, "missing required key 'passes' (a non-empty list of passes; allowed passes: budget"),
    ({"passes": [{"prune": {"layers": {"only": ["x"]}}}]}, "unknown key 'passes[0].prune.layers.only'; allowed keys in passes[0].prune.layers: include, exclude"),
])
def test_schema_errors_name_the_key_and_allowed_values(doc, expected):
    with pytest.raises(RecipeError) as e:
        Recipe.from_dict(doc, source="r.yaml")
    assert str(e.value).startswith("r.yaml: ")
    assert expected in str(e.value)


def test_yaml_syntax_error_names_the_line(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("passes:\n  - fuse\n  - prune: {sparsity: 0.5\n")
    with pytest.raises(RecipeError, match=r"bad.yaml:\d+: invalid YAML"):
        Recipe.load(f)


def test_yaml_is_loaded_safely(tmp_path):
    f = tmp_path / "evil.yaml"
    f.write_text("passes: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(RecipeError, match="invalid YAML"):
        Recipe.load(f)


def test_shipped_pretrained_recipe_resolves_by_name():
    r = Recipe.resolve("pretrained-aggressive")
    assert r.name == "pretrained-aggressive"
    budget = r.get("budget").params
    assert budget["method"] == "taylor" and budget["stages"] >= 2 and budget["distill"] > 0
    assert budget["final_steps"] > budget["steps"]  # most steps at the final, cheapest size
    assert budget["distill_blocks"] > 0 and r.data["group_by_length"] is True  # grouping pays for the block term
    assert r.get("quantise").params["mode"] == "dynamic" and r.get("factorise").params["rank"]


def test_the_extreme_recipe_is_aggressive_at_half_the_budget():
    extreme, aggressive = Recipe.resolve("extreme"), Recipe.level("aggressive")
    assert extreme.name == "extreme"
    assert extreme.get("budget").settings.flops_fraction == aggressive.get("budget").settings.flops_fraction / 2
    assert [p.name for p in extreme.passes] == [p.name for p in aggressive.passes]
    for level in (extreme, aggressive):  # chosen on SST-2 validation (docs/benchmarks.md, gates started in magnitude order)
        budget = level.get("budget").settings
        assert budget.width and budget.gate_init == "magnitude" and budget.method == "gates"


def test_unknown_level_and_missing_file():
    with pytest.raises(RecipeError, match="neither a level"):
        Recipe.resolve("ultra")
    with pytest.raises(RecipeError, match="no such recipe file"):
        Recipe.resolve("nope/missing.yaml")


def test_every_pass_has_a_schema_and_a_runner():
    assert set(SETTINGS) == set(PASS_RANK)
    from rmcompress.compression.passes import PASSES

    assert set(PASSES) == set(SETTINGS)
    for name, cls in PASSES.items():  # one settings class per pass: the registry and the schema agree
        assert cls.name == name and cls.Settings is SETTINGS[name]


def test_cli_rejects_a_bad_recipe_with_exit_2(tmp_path, capfd):
    from rmcompress.cli import main

    f = tmp_path / "bad.yaml"
    f.write_text("passes:\n  - prune: {sparsity: 1.5}\n")
    rc = main(["compress", "--verbose", "--model", str(tmp_path / "model"), "--recipe", str(f), "--data", "x.tsv",
               "--out", str(tmp_path / "o")])
    assert rc == 2
    err = capfd.readouterr().err
    assert "'passes[0].prune.sparsity' = 1.5 is out of range" in err and "Traceback" not in err


def test_data_group_by_length_is_a_boolean_named_in_its_error():
    assert Recipe.from_dict({"passes": ["fuse"], "data": {"group_by_length": True}}).data["group_by_length"] is True
    with pytest.raises(RecipeError, match=r"r.yaml: 'data.group_by_length' must be true or false, got str 'yes'"):
        Recipe.from_dict({"passes": ["fuse"], "data": {"group_by_length": "yes"}}, "r.yaml")
