"""Fuzz the recipe parser: no YAML text or mapping may raise anything but the project's errors."""
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rmcompress.compression.recipe import LEVELS, Recipe
from rmcompress.errors import RMCompressError

EXAMPLES = int(os.environ.get("RMC_FUZZ_EXAMPLES", "120"))
PASS_NAMES = ["budget", "fuse", "factorise", "prune", "cluster", "quantise", "length", "nope"]
KEYS = ["sparsity", "flops_fraction", "steps", "mode", "clusters", "rank", "max_error", "m_by_n", "x"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 2000), st.floats(allow_nan=True),
                    st.text(max_size=8), st.sampled_from(["int8", "dynamic", "qat", "buckets"]))
values = st.recursive(scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                      max_leaves=6)
passes = st.lists(st.one_of(st.sampled_from(PASS_NAMES), st.dictionaries(
    st.sampled_from(PASS_NAMES), st.dictionaries(st.sampled_from(KEYS), values, max_size=3), min_size=1, max_size=2),
    values), max_size=6)
docs = st.one_of(values, st.fixed_dictionaries({"passes": passes}, optional={
    "name": values, "description": values, "data": values, "export": values, "extra": values}))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(docs)
def test_any_mapping_is_a_recipe_or_a_recipe_error(doc):
    try:
        r = Recipe.from_dict(doc, "fuzz.yaml")
    except RMCompressError as e:
        assert "\n" not in str(e)
    else:
        assert r.pass_names() and set(r.pass_names()) <= set(PASS_NAMES)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.text(max_size=200))
def test_any_yaml_text_is_a_recipe_or_a_recipe_error(tmp_path_factory, text):
    p = tmp_path_factory.mktemp("r") / "r.yaml"
    p.write_text(text, encoding="utf-8")
    try:
        Recipe.load(p)
    except RMCompressError as e:
        assert "\n" not in str(e)


def test_levels_still_load():
    for level in LEVELS:
        assert Recipe.level(level).pass_names()
