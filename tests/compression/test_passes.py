"""The pass interface: a registry of Pass classes, settings dataclasses that are the recipe schema,
a typed export plan, and notes that only the report reads."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from rmcompress.compression.recipe import Recipe
from rmcompress.compression.exportplan import ExportPlan, LengthPlan
from rmcompress.compression.passbase import PassSettings
from rmcompress.compression.settings import (SETTINGS, BudgetSettings, FuseSettings, LengthSettings, PruneSettings,
                                          QuantiseSettings)
from rmcompress.errors import RecipeError
from rmcompress.config.validation import REQUIRED

COMPRESS_DIR = Path(__file__).resolve().parents[2] / "rmcompress" / "compression"


def test_the_registry_maps_every_recipe_name_to_its_pass():
    from rmcompress.compression.passbase import Pass
    from rmcompress.compression.passes import PASSES

    assert list(PASSES) == list(SETTINGS)
    for name, cls in PASSES.items():
        assert issubclass(cls, Pass) and cls.name == name and cls.Settings is SETTINGS[name]
        assert issubclass(cls.Settings, PassSettings)
    assert Recipe.from_dict({"passes": ["fuse", {"quantize": {"mode": "int8"}}]}).passes[1].name == "quantise"


def test_a_pass_refuses_settings_of_another_pass():
    from rmcompress.compression.passes import PASSES

    with pytest.raises(TypeError, match="pass 'fuse' takes FuseSettings, got PruneSettings"):
        PASSES["fuse"]()(None, PruneSettings())


@pytest.mark.parametrize("name", list(SETTINGS))
def test_the_schema_is_the_settings_dataclass(name):
    cls = SETTINGS[name]
    schema = cls.schema()
    fields = dataclasses.fields(cls)
    assert list(schema) == [f.name for f in fields]  # same keys, same order
    defaults = cls.__new__(cls)  # the dataclass defaults, without the cross-field rules
    for f in fields:
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        assert schema[f.name].default == default and schema[f.name].default is not REQUIRED
        object.__setattr__(defaults, f.name, default)
    if name != "budget":  # budget needs a fraction; every other pass runs on its defaults
        spec = Recipe.from_dict({"passes": [name]}).passes[0]
        assert spec.settings == cls() and spec.params == defaults.as_dict()


def test_annotations_give_types_and_nullability():
    s = PruneSettings.schema()
    assert s["sparsity"].kind is float and not s["sparsity"].nullable
    assert s["m_by_n"].kind is list and s["m_by_n"].nullable
    assert s["layers"].schema is not None and set(s["layers"].schema) == {"include", "exclude"}
    q = QuantiseSettings.schema()
    assert q["keep_float_ops"].kind == (list, str) and q["keep_float_ops"].nullable
    assert BudgetSettings.schema()["learning_rate"].nullable and BudgetSettings().learning_rate is None
    assert LengthSettings.schema()["quantiles"].default == [0.5, 0.9]
    # list defaults are fresh per instance and per schema
    a, b = LengthSettings(), LengthSettings()
    assert a.quantiles == b.quantiles and a.quantiles is not b.quantiles
    assert LengthSettings.schema()["quantiles"].default is not LengthSettings.schema()["quantiles"].default


@pytest.mark.parametrize("item, expected", [
    ({"fuse": {"tolerance": 0}}, "r.yaml: 'passes[0].fuse.tolerance' = 0 is out of range; allowed: 0 < tolerance"),
    ({"prune": {"sparsty": 0.5}}, "r.yaml: unknown key 'passes[0].prune.sparsty'; allowed keys in passes[0].prune: "
                                  "sparsity, schedule"),
    ({"prune": {"sparsty": 0.5}}, "(did you mean 'sparsity'?)"),
    ({"cluster": {"clusters": 1}}, "'passes[0].cluster.clusters' = 1 is out of range; allowed: 2 <= clusters"),
    ({"quantise": {"mode": "int8", "calibration_samples": 0}}, "'passes[0].quantise.calibration_samples' = 0"),
    ({"length": {"mode": "fixed"}}, "'passes[0].length.mode' = 'fixed' is not allowed; allowed values: buckets, dynamic"),
    ({"budget": {"flops_fraction": 0.5, "augment": 2}}, "r.yaml: passes[0].budget.augment: augmented texts carry no labels"),
    ({"budget": {"flops_fraction": 0.5, "width": True, "distill_features": 1.0}},
     "r.yaml: passes[0].budget.width: narrows the pooled features that distill_features compares"),
    ({"budget": {"flops_fraction": 0.5, "distill_block_layers": ["block{i}_ffn_norm"]}},
     "r.yaml: passes[0].budget.distill_block_layers: names the layers of the block term; set distill_blocks"),
    ({"factorise": {"full_rows": 10}}, "r.yaml: passes[0].factorise.full_rows: only the other rows are factorised"),
    ({"prune": {"steps": 0}}, "r.yaml: passes[0].prune.steps: a polynomial schedule needs steps >= 1"),
])
def test_settings_errors_name_the_pass_and_the_key(item, expected):
    with pytest.raises(RecipeError) as e:
        Recipe.from_dict({"passes": [item]}, source="r.yaml")
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_unknown_pass_names_the_file_index_and_the_known_passes():
    with pytest.raises(RecipeError) as e:
        Recipe.from_dict({"passes": ["fuse", "distil"]}, source="r.yaml")
    assert str(e.value).startswith("r.yaml: passes[1]: unknown pass 'distil'; allowed: " + ", ".join(SETTINGS))


def test_settings_are_typed_values_and_round_trip():
    r = Recipe.from_dict({"passes": [{"budget": {"flops_fraction": 0.5, "steps": 7}}, "fuse",
                                     {"quantise": {"mode": "int8", "keep_float_ops": "auto"}}]})
    b = r.get("budget").settings
    assert isinstance(b, BudgetSettings) and (b.flops_fraction, b.steps, b.batch_size) == (0.5, 7, 64)
    assert isinstance(r.get("fuse").settings, FuseSettings) and r.get("fuse").settings.tolerance == 1e-5
    with pytest.raises(dataclasses.FrozenInstanceError):
        b.steps = 8  # type: ignore[misc]
    assert Recipe.from_dict(r.to_dict()).passes == r.passes


def test_export_plan_is_typed():
    plan = ExportPlan()
    assert (plan.quantize, plan.length, plan.needs_calibration) == ("none", None, False)
    assert plan.calibration_samples == QuantiseSettings().calibration_samples  # one default
    assert plan.debug_samples == QuantiseSettings().debug_samples
    assert dataclasses.replace(plan, quantize="int8").needs_calibration
    assert not dataclasses.replace(plan, quantize="dynamic").needs_calibration
    length = LengthPlan("buckets", [16, 32], margin=2)
    assert length.min_length == 3
    assert length.as_dict() == {"mode": "buckets", "buckets": [16, 32], "margin": 2, "min_length": 3}
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.quantize = "int8"  # type: ignore[misc]


def test_weight_structure_decides_what_qat_preserves():
    from rmcompress.compression.state import WeightStructure

    assert WeightStructure().preserve() == "none"
    assert WeightStructure(pruned=("a",)).preserve() == "prune"
    assert WeightStructure(clustered=("a",)).preserve() == "cluster"
    assert WeightStructure(clustered=("a",), clusters_keep_zeros=True).preserve() == "prune_cluster"
    both = WeightStructure(pruned=("a", "b"), clustered=("b", "c"))
    assert both.preserve() == "prune_cluster" and both.layers == ("a", "b", "c")


def test_no_pass_reads_another_passes_notes():
    """Decisions come from typed state (export plan, weight structure), never from the notes: in the
    package, ``state.notes`` is only appended to, and handed to the report once."""
    reads = {}
    for path in sorted(COMPRESS_DIR.glob("*.py")):
        text = path.read_text()
        for line in text.splitlines():
            if re.search(r"(?<!`)\bstate\.notes\b(?!\.append\()", line):
                reads.setdefault(path.name, []).append(line.strip())
        assert 'n["pass"]' not in text and "in state.notes" not in text, path.name
    # the prefix cache copies them with the state it keeps (and marks the copies of restored passes)
    assert reads == {"pipeline.py": ['report["passes"] = state.notes'],
                     "prefixcache.py": ["notes = copy.deepcopy(state.notes)"]}, reads


def test_the_recipes_readme_names_every_setting_of_every_pass():
    """The settings table of ``docs/recipes.md`` (one row per pass) names each key of the pass's
    settings dataclass, and no pass is missing from it."""
    readme = (Path(__file__).resolve().parents[2] / "docs" / "recipes.md").read_text()
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(\w+)` \| (.*?) \|", readme, re.M)}
    for name, cls in SETTINGS.items():
        assert name in rows, f"docs/recipes.md: no row for pass {name!r}"
        missing = [f.name for f in dataclasses.fields(cls) if f"`{f.name}" not in rows[name]]
        assert not missing, f"docs/recipes.md: the {name} row does not name {missing}"
