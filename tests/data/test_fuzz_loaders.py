"""Fuzzing: no input file may make the loaders raise anything but the project's own error type.

Arbitrary bytes under every supported extension (and a few unsupported ones), then structured but
messy tables (random column layouts, cells of every JSON type, control characters, huge numbers)
written as CSV, TSV and JSON lines. ``load_data`` must either succeed or raise an
``RMCompressError`` subclass; anything else (``OverflowError``, ``RecursionError``,
``zlib.error``, a pandas exception, ...) is a bug.
"""
from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rmcompress.data.loaders import PairwiseData, PointwiseData, load_data
from rmcompress.errors import RMCompressError

import os

# Modest by default (the whole file runs in seconds); RMC_FUZZ_EXAMPLES=5000 for a long search.
_N = int(os.environ.get("RMC_FUZZ_EXAMPLES", "120"))
FUZZ = settings(max_examples=_N, deadline=None, suppress_health_check=list(HealthCheck),
                derandomize=_N <= 120)
SUFFIXES = [".csv", ".tsv", ".jsonl", ".json", ".parquet", ".csv.gz", ".jsonl.gz", ".tsv.gz", ".txt", ""]
_TMP = Path(tempfile.mkdtemp(prefix="rmc-fuzz-"))


def check_loads_or_raises_project_error(path: Path) -> None:
    for task in ("pointwise", "pairwise"):
        try:
            data = load_data(path, task)
        except RMCompressError as e:
            event(f"{task}: {type(e).__name__}")
            msg = str(e)
            assert msg and "\n" not in msg, f"error message must be one line: {msg!r}"
            continue
        event(f"{task}: loaded")
        _check_loaded(data)


def _check_loaded(data) -> None:
    assert len(data) > 0
    if isinstance(data, PointwiseData):
        assert len(data.texts) == len(data.labels)
        assert np.all(np.isfinite(data.labels))
        assert all(isinstance(t, str) and t.strip() for t in data.texts)
    else:
        assert isinstance(data, PairwiseData)
        assert len(data.chosen) == len(data.rejected) == len(data.margin)
        assert np.all(np.isfinite(data.margin))
        assert all(c != r for c, r in zip(data.chosen, data.rejected))
    for t in data.all_texts:
        t.encode("utf-8")  # every text can go to TensorFlow


def _write(name: str, raw: bytes) -> Path:
    p = _TMP / name
    if name.endswith(".gz") and raw[:2] != b"\x1f\x8b":
        raw = gzip.compress(raw)
    p.write_bytes(raw)
    return p


@FUZZ
@given(raw=st.binary(max_size=400), suffix=st.sampled_from(SUFFIXES), gz_raw=st.booleans())
def test_arbitrary_bytes_raise_only_project_errors(raw, suffix, gz_raw):
    name = "fuzz" + suffix
    p = _TMP / name
    p.write_bytes(gzip.compress(raw) if suffix.endswith(".gz") and not gz_raw else raw)
    check_loads_or_raises_project_error(p)


COLUMN_NAMES = st.sampled_from(["text", "sentence", "label", "score", "chosen", "rejected", "prompt",
                                "margin", "Text", "LABEL", "", " ", "__line__", "a,b", "x\ty", "é"])
CELL = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=10),
    st.integers(min_value=-(10 ** 50), max_value=10 ** 50),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(), st.none(),
    st.sampled_from(["nan", "NaN", "inf", "-inf", "1e400", "0", "1", "true", "  ", "", "\x00", "\ud800",
                     '"', '""', "\r\n", "1,5", "\\u0000"]),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


LAYOUTS = [("text", "label"), ("sentence", "label"), ("prompt", "chosen", "rejected"),
           ("chosen", "rejected", "margin"), ("chosen", "rejected")]
GOOD_TEXT = st.text(alphabet="abc xyz,.\"'", min_size=1, max_size=12)
GOOD_NUMBER = st.sampled_from([0, 1, "0", "1", 0.5, "2.5", True])


@st.composite
def tables(draw):
    """A likely-valid layout (usually) with extra or missing columns and messy cells mixed in."""
    if draw(st.integers(0, 3)):
        cols = list(draw(st.sampled_from(LAYOUTS)))
        cols += draw(st.lists(COLUMN_NAMES, max_size=2))
        if draw(st.integers(0, 4)) == 0:
            cols.pop(draw(st.integers(0, len(cols) - 1)))
    else:
        cols = draw(st.lists(COLUMN_NAMES, min_size=1, max_size=5))
    messy = draw(st.integers(0, 2)) == 0
    cell = CELL if messy else st.one_of(GOOD_TEXT, GOOD_NUMBER, CELL)
    row = st.lists(cell, min_size=len(cols), max_size=len(cols))
    if not messy:  # typed cells: texts where texts go, numbers where labels go
        row = st.tuples(*[(GOOD_NUMBER if c.lower() in ("label", "score", "margin") else GOOD_TEXT)
                          if draw(st.integers(0, 9)) else cell for c in cols]).map(list)
    rows = draw(st.lists(row, min_size=0, max_size=6))
    return cols, rows


def _cell_text(v) -> str:
    return v if isinstance(v, str) else json.dumps(v)


@FUZZ
@given(table=tables(), fmt=st.sampled_from(["csv", "tsv", "jsonl", "json"]), ragged=st.booleans())
def test_messy_tables_raise_only_project_errors(table, fmt, ragged):
    cols, rows = table
    if fmt in ("csv", "tsv"):
        sep = "," if fmt == "csv" else "\t"
        lines = [sep.join(cols)] + [sep.join(_cell_text(v) for v in (r[:-1] if ragged and r else r)) for r in rows]
        raw = "\n".join(lines).encode("utf-8", "surrogatepass")
    elif fmt == "jsonl":
        raw = "\n".join(json.dumps(dict(zip(cols, r))) for r in rows).encode()
    else:
        raw = json.dumps([dict(zip(cols, r)) for r in rows]).encode()
    check_loads_or_raises_project_error(_write(f"table.{fmt}", raw))


def test_fuzz_found_cases_are_data_errors():
    """Regressions the fuzzer found: each used to escape as a non-project exception."""
    cases = {
        "deep.json": b"[" * 100_000,                                     # RecursionError
        "bigint.jsonl": b'{"text": "a", "label": 1' + b"0" * 400 + b"}",  # OverflowError
        "digits.jsonl": b'{"text": "a", "label": 1' + b"0" * 5000 + b"}",  # int > 4300 digits
        "zlib.csv.gz": b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03garbage",   # zlib.error
        "f32.tsv": b"text\tlabel\na\t1e300\nb\t0\n",                     # float32 overflow -> inf
        "surrogate.jsonl": b'{"text": "a \\ud800 b", "label": 1}',        # unencodable text
    }
    for name, raw in cases.items():
        p = _TMP / name
        p.write_bytes(raw)
        with pytest.raises(RMCompressError):
            load_data(p, "pointwise")


# -- recipes: the YAML reader and the schema checker ----------------------------------------------
from rmcompress.errors import RecipeError  # noqa: E402
from rmcompress.config.validation import Field, check_order, parse_yaml, validate  # noqa: E402

RECIPE_SCHEMA = {
    "name": Field(str),
    "epochs": Field(int, default=1, min=1),
    "budget": Field(float, default=None, nullable=True, min=0, min_exclusive=True),
    "prune": Field(dict, default=None, nullable=True, schema={
        "sparsity": Field(float, min=0, max=1, max_exclusive=True),
        "schedule": Field(str, default="constant", choices=("constant", "polynomial"))}),
    "passes": Field(list, default=[], unique=True, items=Field(str, choices=("fuse", "prune", "quantize"))),
    "extra": Field((int, str, list), default=None, nullable=True, items=Field(object)),
}
YAML_TOKENS = st.sampled_from(["name", "epochs", "budget", "prune", "sparsity", "schedule", "passes", ":", ": ",
                               "\n", "  ", "- ", "[", "]", "{", "}", ",", "&a ", "*a", "<<: ", "!!python/name:os.system",
                               "~", ".nan", "1e3", "0.5", "-1", "yes", "'", '"', "#", "---", "%TAG", "\t", "?"])


@FUZZ
@given(text=st.one_of(st.text(max_size=200), st.lists(YAML_TOKENS, max_size=40).map("".join)))
def test_recipe_text_raises_only_recipe_errors(text):
    try:
        data = parse_yaml(text, "fuzz.yaml")
    except RecipeError as e:
        assert "\n" not in str(e)
        return
    try:
        validate(data, RECIPE_SCHEMA, "fuzz.yaml")
    except RecipeError as e:
        assert "\n" not in str(e)


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                       lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
                           st.one_of(st.sampled_from(list(RECIPE_SCHEMA) + ["sparsity", "schedule"]),
                                     st.text(max_size=5), st.integers()), kids, max_size=4), max_leaves=20)


@FUZZ
@given(value=st.one_of(JSONISH, st.fixed_dictionaries({"name": st.text(max_size=5)},
                                                       optional={k: JSONISH for k in RECIPE_SCHEMA if k != "name"})))
def test_recipe_values_raise_only_recipe_errors(value):
    try:
        out = validate(value, RECIPE_SCHEMA, "fuzz")
    except RecipeError as e:
        assert "\n" not in str(e)
        return
    assert set(out) == set(RECIPE_SCHEMA)
    if out["prune"] is not None:
        assert 0 <= out["prune"]["sparsity"] < 1


@FUZZ
@given(names=st.lists(st.sampled_from(["fuse", "prune", "cluster", "quantize", "distil", ""]), max_size=6))
def test_check_order_raises_only_recipe_errors(names):
    try:
        check_order(names, ("fuse", "prune", "cluster", "quantize"))
    except RecipeError:
        return
    assert names == sorted(names, key=["fuse", "prune", "cluster", "quantize"].index)
