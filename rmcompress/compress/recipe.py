"""Compression recipes: a declarative YAML file = an ordered list of passes + data and export settings.

Schema (every key optional except ``passes``; see ``recipes/README.md`` for what each pass does)::

    name: light                      # defaults to the file name
    description: "..."
    data:                            # the deterministic split used for fine-tuning, calibration, evaluation
      val_fraction: 0.1              #   default: the settings the model was trained with (metadata)
      seed: 0
      split: random | disjoint
      max_train_examples: 20000      #   cap on training rows used (seeded subset); null = all
    passes:                          # ordered; each item is `NAME` or `NAME: {settings}`
      - fuse: {dropout: true, batchnorm: true, layernorm: true, qkv: true, dense_chain: true}
      - quantise: {mode: dynamic}
    export:
      formats: [savedmodel, tflite]
      latency_runs: 200

Pass order must respect: budget < fuse, factorise < prune < cluster < quantise (``length`` anywhere);
each pass at most once. Every error is a :class:`RecipeError` naming the file, the key path
(``passes[1].prune.sparsity``) and the allowed values. No TensorFlow import here (the CLI validates
a recipe before loading TensorFlow).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from rmcompress.choices import EXPORT_FORMATS
from rmcompress.errors import RecipeError

LEVELS = ("lossless", "light", "medium", "aggressive")
RECIPE_DIR = Path(__file__).resolve().parent / "recipes"

#: pass -> rank; a pass may not follow a pass of higher rank (None: anywhere)
PASS_RANK = {"budget": 0, "fuse": 1, "factorise": 1, "prune": 2, "cluster": 3, "quantise": 4, "length": None}
ORDER_TEXT = "budget, then fuse/factorise, then prune, then cluster, then quantise (length anywhere)"
QUANT_MODES = ("float16", "dynamic", "int8", "int16x8", "qat")
SPLITS = ("random", "disjoint")


@dataclass(frozen=True)
class Field:
    """One setting: allowed types, default, and an optional check returning an error text."""

    types: tuple
    default: Any = None
    check: Callable[[Any], str | None] | None = None
    allowed: str = ""


def _range(lo=None, hi=None, lo_open=False, hi_open=False):
    def check(v):
        if v is None:
            return None
        bad = (lo is not None and (v <= lo if lo_open else v < lo)) or \
              (hi is not None and (v >= hi if hi_open else v > hi))
        if bad:
            left = "" if lo is None else f"{lo} {'<' if lo_open else '<='} "
            right = "" if hi is None else f" {'<' if hi_open else '<='} {hi}"
            return f"out of range; allowed: {left}value{right}"
        return None
    return check


def _choice(*options):
    def check(v):
        if v is not None and v not in options:
            return f"unknown value {v!r}; allowed: {', '.join(map(str, options))}"
        return None
    return check


def _str_list(v):
    if v is None:
        return None
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        return "must be a list of strings"
    return None


def _m_by_n(v):
    if v is None:
        return None
    if not (isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in v)
            and 0 < v[0] < v[1]):
        return "must be [m, n] with 0 < m < n, e.g. [2, 4]"
    return None


def _buckets(v):
    if v is None or v == "auto":
        return None
    if not (isinstance(v, list) and v and all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in v)):
        return "must be 'auto' or a list of positive lengths, e.g. [16, 32, 64]"
    return None


def _keep_float_ops(v):
    if v is None or v == "auto":
        return None
    if _str_list(v) is None:
        return None
    return "must be 'auto' or a list of TFLite op names, e.g. [BATCH_MATMUL, SOFTMAX]"


INT, FLOAT, BOOL, STR, LIST = (int,), (int, float), (bool,), (str,), (list,)
_TRAIN = {"steps": Field(INT, 0, _range(0), "steps >= 0"),
          "learning_rate": Field(FLOAT, 1e-4, _range(0, lo_open=True), "learning_rate > 0"),
          "batch_size": Field(INT, 64, _range(1), "batch_size >= 1")}
_LAYERS = {"include": Field(LIST + (type(None),), None, _str_list),
           "exclude": Field(LIST + (type(None),), None, _str_list)}

SCHEMA: dict[str, dict[str, Field]] = {
    "budget": {"flops_fraction": Field(FLOAT + (type(None),), None, _range(0, 1, lo_open=True)),
               "params_fraction": Field(FLOAT + (type(None),), None, _range(0, 1, lo_open=True)),
               "steps": Field(INT, 1000, _range(1)),
               "learning_rate": Field(FLOAT + (type(None),), None, _range(0, lo_open=True)),
               "batch_size": Field(INT, 64, _range(1))},
    "fuse": {"dropout": Field(BOOL, True), "batchnorm": Field(BOOL, True), "layernorm": Field(BOOL, True),
             "qkv": Field(BOOL, True), "dense_chain": Field(BOOL, True), "matmul": Field(BOOL, True),
             "positions": Field(BOOL, True),
             "tolerance": Field(FLOAT, 1e-5, _range(0, lo_open=True))},
    "factorise": {"vocab_prune": Field(BOOL, True), "min_count": Field(INT, 1, _range(1)),
                  "rank": Field(INT + (type(None),), None, _range(1)),
                  "max_error": Field(FLOAT + (type(None),), None, _range(0, 1, lo_open=True, hi_open=True)),
                  "weighting": Field(STR, "frequency", _choice("frequency", "uniform")), **_TRAIN},
    "prune": {"sparsity": Field(FLOAT, 0.5, _range(0, 1, hi_open=True)),
              "schedule": Field(STR, "polynomial", _choice("polynomial", "constant")),
              "initial_sparsity": Field(FLOAT, 0.0, _range(0, 1, hi_open=True)),
              "m_by_n": Field(LIST + (type(None),), None, _m_by_n),
              "frequency": Field(INT, 10, _range(1)),
              "embedding": Field(BOOL, True),
              "layers": Field((dict, type(None)), None),
              "summaries_dir": Field(STR + (type(None),), None),
              **{**_TRAIN, "steps": Field(INT, 300, _range(0))}},
    "cluster": {"clusters": Field(INT, 16, _range(2)),
                "init": Field(STR, "kmeans++", _choice("kmeans++", "linear", "density", "random")),
                "preserve_sparsity": Field((bool, str), "auto", lambda v: None if v in (True, False, "auto")
                                           else f"unknown value {v!r}; allowed: true, false, auto"),
                "embedding": Field(BOOL, True),
                "layers": Field((dict, type(None)), None),
                **{**_TRAIN, "steps": Field(INT, 200, _range(0))}},
    "quantise": {"mode": Field(STR, "dynamic", _choice(*QUANT_MODES)),
                 "calibration_samples": Field(INT, 300, _range(1)),
                 "keep_float_ops": Field((list, str, type(None)), None, _keep_float_ops),
                 "max_layer_error": Field(FLOAT + (type(None),), None, _range(0, lo_open=True)),
                 "debug_samples": Field(INT, 64, _range(1)),
                 **{**_TRAIN, "steps": Field(INT, 300, _range(0))}},
    "length": {"mode": Field(STR, "buckets", _choice("buckets", "dynamic")),
               "buckets": Field((list, str, type(None)), "auto", _buckets),
               "quantiles": Field(LIST, [0.5, 0.9], lambda v: None if all(isinstance(q, (int, float))
                                  and 0 < q < 1 for q in v) else "must be a list of numbers in (0, 1)")},
}
ALIASES = {"quantize": "quantise", "factorize": "factorise"}
TOP_KEYS = {"name", "description", "data", "passes", "export"}
DATA_SCHEMA = {"val_fraction": Field(FLOAT + (type(None),), None, _range(0, 1, hi_open=True)),
               "seed": Field(INT + (type(None),), None),
               "split": Field(STR + (type(None),), None, _choice(*SPLITS, None)),
               "max_train_examples": Field(INT + (type(None),), None, _range(1))}
EXPORT_SCHEMA = {"formats": Field(LIST, list(EXPORT_FORMATS), lambda v: None if v and all(
                     f in EXPORT_FORMATS for f in v) else f"allowed formats: {', '.join(EXPORT_FORMATS)}"),
                 "latency_runs": Field(INT, 200, _range(0))}


def _type_ok(value, types) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False  # YAML true is not an int here
    return isinstance(value, types)


def _type_text(types) -> str:
    names = {int: "integer", float: "number", bool: "true/false", str: "string", list: "list",
             dict: "mapping", type(None): "null"}
    return " or ".join(dict.fromkeys(names[t] for t in types))


def validate_section(values, schema: dict[str, Field], where: str, src: str) -> dict:
    """Check ``values`` against ``schema``; return a dict with defaults filled in."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise RecipeError(f"{src}: {where} must be a mapping of settings; allowed keys: {', '.join(schema)}")
    unknown = [k for k in values if k not in schema]
    if unknown:
        raise RecipeError(f"{src}: {where}.{unknown[0]}: unknown key; allowed: {', '.join(schema)}")
    out = {}
    for key, f in schema.items():
        v = values.get(key, f.default)
        if key in values:
            if not _type_ok(v, f.types):
                raise RecipeError(f"{src}: {where}.{key}: {v!r} has the wrong type; expected {_type_text(f.types)}")
            if f.check is not None:
                msg = f.check(v)
                if msg:
                    raise RecipeError(f"{src}: {where}.{key}: {v!r} {msg}")
            if isinstance(v, int) and not isinstance(v, bool) and float in f.types:
                v = float(v)
        out[key] = v
    return out


@dataclass
class PassSpec:
    name: str
    params: dict


@dataclass
class Recipe:
    """A validated recipe (build with :meth:`load`, :meth:`from_dict` or :meth:`level`)."""

    name: str
    passes: list[PassSpec]
    description: str = ""
    data: dict = field(default_factory=dict)
    export: dict = field(default_factory=dict)
    source: str = "<dict>"

    @classmethod
    def from_dict(cls, d: Any, source: str = "<dict>", default_name: str = "custom") -> "Recipe":
        if not isinstance(d, dict):
            raise RecipeError(f"{source}: a recipe must be a mapping with a 'passes' list; "
                              f"allowed keys: {', '.join(sorted(TOP_KEYS))}")
        unknown = [k for k in d if k not in TOP_KEYS]
        if unknown:
            raise RecipeError(f"{source}: {unknown[0]}: unknown key; allowed: {', '.join(sorted(TOP_KEYS))}")
        for key in ("name", "description"):
            if key in d and not isinstance(d[key], str):
                raise RecipeError(f"{source}: {key}: must be a string")
        raw = d.get("passes")
        if not isinstance(raw, list) or not raw:
            raise RecipeError(f"{source}: passes: must be a non-empty list; allowed passes: {', '.join(SCHEMA)}")
        passes = [_parse_pass(item, i, source) for i, item in enumerate(raw)]
        _check_order(passes, source)
        data = validate_section(d.get("data"), DATA_SCHEMA, "data", source)
        export = validate_section(d.get("export"), EXPORT_SCHEMA, "export", source)
        return cls(d.get("name") or default_name, passes, d.get("description", ""), data, export, source)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Recipe":
        """Read a YAML recipe file with the safe loader of :mod:`rmcompress.validation` (plain data
        only; duplicate keys and alias bombs refused; errors name the file and line)."""
        from rmcompress.validation import load_yaml

        p = Path(path)
        if not p.is_file() and not p.is_dir():
            raise RecipeError(f"{p}: no such recipe file; built-in levels: {', '.join(LEVELS)}")
        return cls.from_dict(load_yaml(p, error=RecipeError), str(p), default_name=p.stem)

    @classmethod
    def level(cls, name: str) -> "Recipe":
        if name not in LEVELS:
            raise RecipeError(f"recipe level {name!r} unknown; allowed: {', '.join(LEVELS)} or a YAML file")
        return cls.load(RECIPE_DIR / f"{name}.yaml")

    @classmethod
    def resolve(cls, spec: "str | os.PathLike | dict | Recipe") -> "Recipe":
        """A level name, a YAML path, a dict or a Recipe -> Recipe."""
        if isinstance(spec, Recipe):
            return spec
        if isinstance(spec, dict):
            return cls.from_dict(spec)
        s = str(spec)
        if s in LEVELS:
            return cls.level(s)
        if s.endswith((".yaml", ".yml")) or os.sep in s or Path(s).is_file():
            return cls.load(s)
        raise RecipeError(f"recipe {s!r}: neither a level ({', '.join(LEVELS)}) nor a YAML file")

    def pass_names(self) -> list[str]:
        return [p.name for p in self.passes]

    def get(self, name: str) -> PassSpec | None:
        return next((p for p in self.passes if p.name == name), None)

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "data": self.data,
                "passes": [{p.name: p.params} for p in self.passes], "export": self.export}


def _parse_pass(item, i: int, src: str) -> PassSpec:
    where = f"passes[{i}]"
    if isinstance(item, str):
        name, params = item, {}
    elif isinstance(item, dict) and len(item) == 1:
        name, params = next(iter(item.items()))
    else:
        raise RecipeError(f"{src}: {where}: must be a pass name or a one-key mapping "
                          f"'NAME: {{settings}}'; allowed passes: {', '.join(SCHEMA)}")
    name = ALIASES.get(name, name)
    if name not in SCHEMA:
        raise RecipeError(f"{src}: {where}: unknown pass {name!r}; allowed: {', '.join(SCHEMA)}")
    params = validate_section(params, SCHEMA[name], f"{where}.{name}", src)
    _check_pass(name, params, f"{where}.{name}", src)
    return PassSpec(name, params)


def _check_pass(name: str, p: dict, where: str, src: str) -> None:
    """Cross-field rules of one pass."""
    if name == "budget" and p["flops_fraction"] is None and p["params_fraction"] is None:
        raise RecipeError(f"{src}: {where}: needs flops_fraction or params_fraction (a fraction 0 < f <= 1)")
    if name == "factorise" and p["rank"] is not None and p["max_error"] is not None:
        raise RecipeError(f"{src}: {where}: give rank or max_error, not both")
    if name == "prune":
        if p["schedule"] == "polynomial" and p["initial_sparsity"] >= p["sparsity"] and p["sparsity"] > 0:
            raise RecipeError(f"{src}: {where}.initial_sparsity: {p['initial_sparsity']} must be below "
                              f"sparsity {p['sparsity']}")
        if p["schedule"] == "polynomial" and p["steps"] == 0 and p["sparsity"] > 0:
            raise RecipeError(f"{src}: {where}.steps: a polynomial schedule needs steps >= 1 "
                              "(or use schedule: constant)")
    for key in ("layers",):
        if key in p and p[key] is not None:
            validate_section(p[key], _LAYERS, f"{where}.{key}", src)
    if name == "quantise" and p["mode"] not in ("int8", "int16x8") and (
            p["keep_float_ops"] is not None or p["max_layer_error"] is not None):
        raise RecipeError(f"{src}: {where}: keep_float_ops/max_layer_error apply to mode int8 or int16x8 only")


def _check_order(passes: list[PassSpec], src: str) -> None:
    seen: dict[str, int] = {}
    highest, highest_name = -1, None
    for i, p in enumerate(passes):
        if p.name in seen:
            raise RecipeError(f"{src}: passes[{i}]: pass {p.name!r} appears twice (first at passes[{seen[p.name]}])")
        seen[p.name] = i
        rank = PASS_RANK[p.name]
        if rank is None:
            continue
        if rank < highest:
            raise RecipeError(f"{src}: passes[{i}]: {p.name!r} cannot come after {highest_name!r}; "
                              f"allowed order: {ORDER_TEXT}")
        if rank > highest:
            highest, highest_name = rank, p.name
