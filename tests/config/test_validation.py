"""The schema checker and safe YAML reader that recipe files (and any other user-written settings)
go through: every problem is one ``RecipeError`` line naming the key and what is allowed."""
from __future__ import annotations

import pytest

from rmcompress.errors import RecipeError, UsageError
from rmcompress.config.validation import (MAX_YAML_NODES, Field, check_choice, check_order, load_yaml, parse_yaml,
                                          validate, validate_file)

PRUNE = {"sparsity": Field(float, min=0, max=1, max_exclusive=True),
         "schedule": Field(str, default="constant", choices=("constant", "polynomial"))}
SCHEMA = {
    "name": Field(str),
    "epochs": Field(int, default=1, min=1),
    "budget": Field(float, default=None, nullable=True, min=0, min_exclusive=True),
    "prune": Field(dict, schema=PRUNE, default=None, nullable=True),
    "passes": Field(list, items=Field(str, choices=("fuse", "prune", "cluster", "quantize")), default=[],
                    unique=True),
    "quantize": Field(str, default="none", choices=("none", "float16", "dynamic", "int8")),
}
ORDER = ("fuse", "prune", "cluster", "quantize")


def _check(text: str) -> dict:
    return validate(parse_yaml(text, "r.yaml"), SCHEMA, "r.yaml")


def test_valid_recipe_gets_defaults():
    r = _check("name: small\nprune: {sparsity: 0.5}\npasses: [fuse, prune]\nepochs: 2\nbudget: 3")
    assert r == {"name": "small", "epochs": 2, "budget": 3.0, "prune": {"sparsity": 0.5, "schedule": "constant"},
                 "passes": ["fuse", "prune"], "quantize": "none"}
    assert isinstance(r["budget"], float)


@pytest.mark.parametrize("text, message", [
    ("name: a\nprune: {sparsty: 0.5}",
     "r.yaml: unknown key 'prune.sparsty'; allowed keys in prune: sparsity, schedule (did you mean 'sparsity'?)"),
    ("name: a\nepoch: 3", "r.yaml: unknown key 'epoch'; allowed keys: name, epochs, budget, prune, passes, quantize"
                          " (did you mean 'epochs'?)"),
    ("epochs: 2", "r.yaml: missing required key 'name'"),
    ("name: a\nprune: {sparsity: 1.0}", "r.yaml: 'prune.sparsity' = 1 is out of range; allowed: 0 <= sparsity < 1"),
    ("name: a\nprune: {sparsity: -0.1}", "'prune.sparsity' = -0.1 is out of range; allowed: 0 <= sparsity < 1"),
    ("name: a\nbudget: 0", "r.yaml: 'budget' = 0 is out of range; allowed: 0 < budget"),
    ("name: a\nbudget: -2", "'budget' = -2 is out of range"),
    ("name: a\nepochs: 0", "'epochs' = 0 is out of range; allowed: 1 <= epochs"),
    ("name: a\nepochs: '3'", "r.yaml: 'epochs' must be an integer, got str '3'"),
    ("name: a\nepochs: 2.5", "'epochs' must be an integer, got float 2.5"),
    ("name: a\nepochs: true", "'epochs' must be an integer, got bool True"),
    ("name: a\nbudget: 1e3", "'budget' must be a number, got str '1e3' (YAML reads numbers like 1e3 as text"),
    ("name: a\nbudget: .nan", "'budget' = nan is not a finite number"),
    ("name: a\nquantize: int4", "r.yaml: 'quantize' = 'int4' is not allowed; allowed values: none, float16, dynamic, int8"),
    ("name: a\nquantize: off", "'quantize' must be a string, got bool False (YAML reads yes/no/on/off as true/false"),
    ("name: a\npasses: [fuse, prun]", "'passes[1]' = 'prun' is not allowed; allowed values: fuse, prune, cluster, "
                                      "quantize (did you mean 'prune'?)"),
    ("name: a\npasses: [fuse, fuse]", "passes[1] = 'fuse' is repeated"),
    ("name: a\npasses: fuse", "'passes' must be a list, got str 'fuse'"),
    ("name: a\nprune: 0.5", "'prune' must be a mapping, got float 0.5"),
    ("name: ~", "'name' must not be empty (null)"),
    ("- name: a", "r.yaml: the top level must be a mapping of keys to values, got list"),
    ("1: a", "r.yaml: key 1 in the top level is not a string"),
])
def test_each_problem_is_one_line_naming_the_key(text, message):
    with pytest.raises(RecipeError) as e:
        _check(text)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_order_of_passes():
    check_order(["fuse", "prune", "quantize"], ORDER)
    check_order([], ORDER)
    with pytest.raises(RecipeError, match=r"'prune' cannot come after 'quantize'; passes must follow the order "
                                          r"fuse -> prune -> cluster -> quantize"):
        check_order(["fuse", "quantize", "prune"], ORDER, "r.yaml")
    with pytest.raises(RecipeError, match=r"'prune' appears twice in passes \(positions 1 and 3\)"):
        check_order(["prune", "cluster", "prune"], ORDER)
    with pytest.raises(RecipeError, match=r"unknown pass 'distil'; allowed: fuse, prune, cluster, quantize"):
        check_order(["distil"], ORDER)


def test_order_with_groups_of_equal_rank_and_names_allowed_anywhere():
    order = ("budget", ("fuse", "factorise"), "prune")
    check_order(["factorise", "fuse", "length", "prune"], order, anywhere=("length",))
    with pytest.raises(RecipeError, match=r"^r.yaml: passes\[2\]: 'fuse' cannot come after 'prune'; passes must "
                                          r"follow the order budget -> fuse/factorise -> prune \(length anywhere\)$"):
        check_order(["prune", "length", "fuse"], order, "r.yaml", anywhere=("length",), path="passes")
    with pytest.raises(RecipeError, match=r"passes\[2\]: 'length' appears twice in passes \(first at passes\[0\]\)"):
        check_order(["length", "fuse", "length"], order, anywhere=("length",), path="passes")


def test_field_check_and_yaml_spelling_of_choices():
    schema = {"m_by_n": Field(list, None, nullable=True, items=Field(int, min=1),
                              check=lambda v: None if len(v) == 2 and v[0] < v[1] else "must be [m, n] with m < n"),
              "keep": Field((bool, str), "auto", choices=(True, False, "auto")),
              "passes": Field(list, min_items=1, help="a non-empty list of passes")}
    assert validate({"m_by_n": [2, 4], "passes": ["x"]}, schema, "r.yaml")["m_by_n"] == [2, 4]
    with pytest.raises(RecipeError, match=r"^r.yaml: 'm_by_n' must be \[m, n\] with m < n, got \[4, 2\]$"):
        validate({"m_by_n": [4, 2], "passes": ["x"]}, schema, "r.yaml")
    with pytest.raises(RecipeError, match=r"'m_by_n\[0\]' = 0 is out of range"):
        validate({"m_by_n": [0, 2], "passes": ["x"]}, schema, "r.yaml")
    with pytest.raises(RecipeError, match=r"'keep' = 'yes' is not allowed; allowed values: true, false, auto"):
        validate({"keep": "yes", "passes": ["x"]}, schema, "r.yaml")
    with pytest.raises(RecipeError, match=r"'passes' needs at least 1 item\(s\), got 0 \(a non-empty list of passes\)"):
        validate({"passes": []}, schema, "r.yaml")
    with pytest.raises(RecipeError, match=r"'prune' must be a mapping of keys to values, got int 3; "
                                          r"allowed keys: m_by_n"):
        validate(3, schema, "r.yaml", path="prune")


def test_unknown_level():
    levels = ("light", "medium", "aggressive")
    assert check_choice("medium", levels, "recipe level") == "medium"
    with pytest.raises(RecipeError, match=r"^unknown recipe level 'agressive'; allowed: light, medium, aggressive "
                                          r"or a \.yaml file \(did you mean 'aggressive'\?\)$"):
        check_choice("agressive", levels, "recipe level", extra=" or a .yaml file")


def test_custom_error_class():
    with pytest.raises(UsageError, match="cfg: unknown key 'x'"):
        validate({"x": 1}, {"y": Field(int, default=0)}, "cfg", error=UsageError)


# -- YAML -----------------------------------------------------------------------------------------
def test_yaml_is_loaded_safely(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("name: !!python/object/apply:os.system ['touch %s']\n" % (tmp_path / "pwned"))
    with pytest.raises(RecipeError, match=r"evil.yaml:1: invalid YAML \(could not determine a constructor"):
        load_yaml(evil)
    assert not (tmp_path / "pwned").exists()


def test_yaml_errors_name_the_line(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("name: a\nprune:\n  sparsity: [0.5\n")
    with pytest.raises(RecipeError, match=r"r.yaml:4: invalid YAML"):
        load_yaml(p)
    p.write_text("name: a\nepochs: 1\nname: b\n")
    with pytest.raises(RecipeError, match=r"r.yaml:3: duplicate key 'name' \(first on line 1\)"):
        load_yaml(p)
    p.write_bytes(b"name: a\nnote: caf\xe9\n")
    with pytest.raises(RecipeError, match=r"r.yaml:2: not valid UTF-8"):
        load_yaml(p)


def test_yaml_files_that_are_not_there(tmp_path):
    with pytest.raises(RecipeError, match="nope.yaml: no such file"):
        load_yaml(tmp_path / "nope.yaml")
    with pytest.raises(RecipeError, match="is a directory"):
        load_yaml(tmp_path)
    (tmp_path / "e.yaml").write_text("  \n")
    with pytest.raises(RecipeError, match="e.yaml: file is empty"):
        load_yaml(tmp_path / "e.yaml")


def test_yaml_alias_bomb_and_cycles_are_refused():
    levels = ["a: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        levels.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]")
    with pytest.raises(RecipeError, match=rf"expands to \d+ values .*limit {MAX_YAML_NODES}"):
        parse_yaml("\n".join(levels), "bomb.yaml")
    with pytest.raises(RecipeError, match="contains itself"):
        parse_yaml("a: &s [*s]", "cycle.yaml")


def test_yaml_merge_keys_still_work():
    data = parse_yaml("base: &b {sparsity: 0.5}\nprune:\n  <<: *b\n  schedule: polynomial\n")
    assert data["prune"] == {"sparsity": 0.5, "schedule": "polynomial"}


def test_validate_file(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("name: x\nprune: {sparsity: 2}\n")
    with pytest.raises(RecipeError, match=rf"{p}: 'prune.sparsity' = 2 is out of range"):
        validate_file(p, SCHEMA)
