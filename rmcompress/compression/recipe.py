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
      strip_names: false             #   true: drop the TFLite file's tensor names (signatures stay)

Pass order must respect: budget < fuse, factorise < prune < cluster < quantise (``length`` anywhere);
each pass at most once. Every error is a :class:`RecipeError` naming the file, the key path
(``passes[1].prune.sparsity``) and the allowed values. No TensorFlow import here (the CLI validates
a recipe before loading TensorFlow).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rmcompress.config.choices import BUDGET_METHODS, EXPORT_FORMATS, GATE_INITS
from rmcompress.config.validation import Field, check_choice, check_order, load_yaml, validate
from rmcompress.errors import RecipeError

LEVELS = ("lossless", "light", "medium", "aggressive")
RECIPE_DIR = Path(__file__).resolve().parent / "recipes"
#: shipped recipes that are not levels, also resolvable by name (``--recipe pretrained-aggressive``)
SHIPPED = ("pretrained-aggressive",)

#: pass -> rank; a pass may not follow a pass of higher rank (None: anywhere)
PASS_RANK = {"budget": 0, "fuse": 1, "factorise": 1, "prune": 2, "cluster": 3, "quantise": 4, "length": None}
#: the same as :func:`rmcompress.config.validation.check_order` takes it: groups of equal rank, in order
PASS_ORDER = tuple(tuple(n for n, r in PASS_RANK.items() if r == rank)
                   for rank in sorted({r for r in PASS_RANK.values() if r is not None}))
ANYWHERE = tuple(n for n, r in PASS_RANK.items() if r is None)
QUANT_MODES = ("float16", "dynamic", "int8", "int16x8", "qat")
SPLITS = ("random", "disjoint")


def _m_by_n(v) -> str | None:
    return None if len(v) == 2 and v[0] < v[1] else "must be [m, n] with 0 < m < n, e.g. [2, 4]"


def _layer_clusters(v) -> str | None:
    """``{layer-name regex: clusters}`` with valid regexes and integer counts >= 2."""
    import re

    for pat, n in v.items():
        try:
            re.compile(str(pat))
        except re.error as e:
            return f"has an invalid regular expression {pat!r} ({e})"
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            return f"must map layer-name regexes to integers >= 2 (got {pat!r}: {n!r})"
    return None


def _auto_or_list(example: str):
    def check(v) -> str | None:
        return None if v == "auto" or isinstance(v, list) else f"must be 'auto' or {example}"
    return check


def _train(steps: int, learning_rate: float = 1e-4, min_steps: int = 0) -> dict[str, Field]:
    """The fine-tuning settings every training pass has (defaults per pass)."""
    return {"steps": Field(int, steps, min=min_steps),
            "learning_rate": Field(float, learning_rate, min=0, min_exclusive=True),
            "batch_size": Field(int, 64, min=1)}


_FRACTION = dict(kind=float, default=None, nullable=True, min=0, max=1, min_exclusive=True)
_LAYERS = {"include": Field(list, None, nullable=True, items=Field(str)),
           "exclude": Field(list, None, nullable=True, items=Field(str))}
_LAYERS_FIELD = Field(dict, None, nullable=True, schema=_LAYERS)

#: pass -> its settings (a :mod:`rmcompress.config.validation` schema)
SCHEMA: dict[str, dict[str, Field]] = {
    "budget": {"flops_fraction": Field(**_FRACTION), "params_fraction": Field(**_FRACTION),
               "distill": Field(float, 0.0, min=0, max=1, max_exclusive=True,
                                help="weight of self-distillation from the source model (0: labels only)"),
               "distill_features": Field(float, 0.0, min=0,
                                         help="weight of matching the source model's pooled features "
                                              "(representation distillation; pointwise)"),
               "max_epochs": Field(float, 10.0, nullable=True, min=0, min_exclusive=True,
                                   help="cap on passes over the training split (null: no cap)"),
               "method": Field(str, "gates", choices=BUDGET_METHODS,
                               help="gates: budget training; taylor/magnitude: prune by unit importance, then fine-tune"),
               "stages": Field(int, 1, min=1, help="taylor/magnitude: prune-and-fine-tune rounds to reach the budget"),
               "final_steps": Field(int, 0, min=0, help="more fine-tuning of the final, smaller model "
                                                        "(distilled like the rest) after the steps"),
               "augment": Field(int, 0, min=0,
                                help="distill on this many word-replacement variants of every training "
                                     "and unlabeled text of >= augment_min_words words, scored by the "
                                     "source model (rmcompress.data.augment; pointwise; needs distill)"),
               "augment_replace": Field(float, 0.3, min=0, max=1, min_exclusive=True,
                                        help="probability that a word is replaced by an embedding neighbour"),
               "augment_min_words": Field(int, 10, min=1, help="only texts this long are varied"),
               "gate_init": Field(str, "uniform", choices=GATE_INITS,
                                  help="gates: start every gate alike, or ranked by the source model's "
                                       "unit importance (the least important close first)"),
               "finetune_fraction": Field(float, None, nullable=True, min=0, max=1, max_exclusive=True,
                                          help="gates: share of the steps fine-tuning the shrunk model "
                                               "(null: 0.3 for uniform gates, 0.8 for ranked ones)"),
               **_train(1000, learning_rate=1e-3, min_steps=1),
               # None: 1e-3, or 1e-4 for a bridged pretrained encoder (rmcompress.compression.budget)
               "learning_rate": Field(float, None, nullable=True, min=0, min_exclusive=True)},
    "fuse": {"dropout": Field(bool, True), "batchnorm": Field(bool, True), "layernorm": Field(bool, True),
             "qkv": Field(bool, True), "dense_chain": Field(bool, True), "matmul": Field(bool, True),
             "positions": Field(bool, True),
             "tolerance": Field(float, 1e-5, min=0, min_exclusive=True)},
    "factorise": {"vocab_prune": Field(bool, True), "min_count": Field(int, 1, min=1),
                  "rank": Field(int, None, nullable=True, min=1),
                  "max_error": Field(float, None, nullable=True, min=0, max=1, min_exclusive=True,
                                     max_exclusive=True),
                  "weighting": Field(str, "frequency", choices=("frequency", "uniform")), **_train(0),
                  "full_rows": Field(int, 0, min=0,
                                     help="the most used tokens keep this many exact rows; only the others "
                                          "are factorised (two tiers; needs rank or max_error)"),
                  "distill": Field(float, 0.0, min=0, max=1,
                                   help="fine-tuning steps distill from the model before factorisation "
                                        "with this weight (on the training, unlabeled and augmented "
                                        "texts; 0: labels only)")},
    "prune": {"sparsity": Field(float, 0.5, min=0, max=1, max_exclusive=True),
              "schedule": Field(str, "polynomial", choices=("polynomial", "constant")),
              "initial_sparsity": Field(float, 0.0, min=0, max=1, max_exclusive=True),
              "m_by_n": Field(list, None, nullable=True, items=Field(int, min=1), check=_m_by_n),
              "frequency": Field(int, 10, min=1),
              "embedding": Field(bool, True),
              "layers": _LAYERS_FIELD,
              "summaries_dir": Field(str, None, nullable=True),
              **_train(300)},
    "cluster": {"clusters": Field(int, 16, min=2),
                "layer_clusters": Field(dict, None, nullable=True, check=_layer_clusters,
                                        help="per-layer counts: {layer-name regex: clusters}, first match wins"),
                "init": Field(str, "kmeans++", choices=("kmeans++", "linear", "density", "random")),
                "preserve_sparsity": Field((bool, str), "auto", choices=(True, False, "auto")),
                "embedding": Field(bool, True),
                "layers": _LAYERS_FIELD,
                **_train(200)},
    "quantise": {"mode": Field(str, "dynamic", choices=QUANT_MODES),
                 "calibration_samples": Field(int, 300, min=1),
                 "keep_float_ops": Field((list, str), None, nullable=True, items=Field(str),
                                         check=_auto_or_list("a list of TFLite op names, "
                                                             "e.g. [BATCH_MATMUL, SOFTMAX]")),
                 "max_layer_error": Field(float, None, nullable=True, min=0, min_exclusive=True),
                 "debug_samples": Field(int, 64, min=1),
                 **_train(300)},
    "length": {"mode": Field(str, "buckets", choices=("buckets", "dynamic")),
               "buckets": Field((list, str), "auto", nullable=True, items=Field(int, min=1), min_items=1,
                                check=_auto_or_list("a list of positive lengths, e.g. [16, 32, 64]")),
               "quantiles": Field(list, [0.5, 0.9], items=Field(float, min=0, max=1, min_exclusive=True,
                                                                max_exclusive=True))},
}
ALIASES = {"quantize": "quantise", "factorize": "factorise"}
DATA_SCHEMA = {"val_fraction": Field(float, None, nullable=True, min=0, max=1, max_exclusive=True),
               "seed": Field(int, None, nullable=True),
               "split": Field(str, None, nullable=True, choices=SPLITS),
               "max_train_examples": Field(int, None, nullable=True, min=1)}
EXPORT_SCHEMA = {"formats": Field(list, list(EXPORT_FORMATS), min_items=1, items=Field(str, choices=EXPORT_FORMATS),
                                  help=f"export formats: {', '.join(EXPORT_FORMATS)}"),
                 "latency_runs": Field(int, 200, min=0),
                 "strip_names": Field(bool, False, help="true: drop tensor names from the .tflite file "
                                                        "(smaller; signatures kept)")}
#: the top level of a recipe; ``data``/``export`` null or absent: all their defaults
TOP_SCHEMA = {"name": Field(str, None), "description": Field(str, ""),
              "data": Field(dict, None, nullable=True), "passes": Field(list, min_items=1, help=(
                  f"a non-empty list of passes; allowed passes: {', '.join(SCHEMA)}")),
              "export": Field(dict, None, nullable=True)}


def validate_section(values, schema: dict[str, Field], where: str, src: str) -> dict:
    """Check the settings ``values`` at key path ``where`` (``null``: all defaults) against
    ``schema`` with :func:`rmcompress.config.validation.validate`; return them with defaults filled in."""
    return validate({} if values is None else values, schema, src, RecipeError, where)


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
        top = validate(d, TOP_SCHEMA, source, RecipeError)
        passes = [_parse_pass(item, i, source) for i, item in enumerate(top["passes"])]
        check_order([p.name for p in passes], PASS_ORDER, source, anywhere=ANYWHERE, path="passes")
        data = validate_section(top["data"], DATA_SCHEMA, "data", source)
        export = validate_section(top["export"], EXPORT_SCHEMA, "export", source)
        return cls(top["name"] or default_name, passes, top["description"], data, export, source)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Recipe":
        """Read a YAML recipe file with the safe loader of :mod:`rmcompress.config.validation` (plain data
        only; duplicate keys and alias bombs refused; errors name the file and line)."""
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
        if s in SHIPPED:
            return cls.load(RECIPE_DIR / f"{s}.yaml")
        if s.endswith((".yaml", ".yml")) or os.sep in s or Path(s).is_file():
            return cls.load(s)
        raise RecipeError(f"recipe {s!r}: neither a level ({', '.join(LEVELS)}), a shipped recipe "
                          f"({', '.join(SHIPPED)}) nor a YAML file")

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
    name = check_choice(ALIASES.get(name, name), tuple(SCHEMA), "pass", f"{src}: {where}", RecipeError)
    params = validate_section(params, SCHEMA[name], f"{where}.{name}", src)
    _check_pass(name, params, f"{where}.{name}", src)
    return PassSpec(name, params)


def _check_pass(name: str, p: dict, where: str, src: str) -> None:
    """Cross-field rules of one pass."""
    if name == "budget" and p["flops_fraction"] is None and p["params_fraction"] is None:
        raise RecipeError(f"{src}: {where}: needs flops_fraction or params_fraction (a fraction 0 < f <= 1)")
    if name == "budget" and p["augment"] and not (p["distill"] or p["distill_features"]):
        raise RecipeError(f"{src}: {where}.augment: augmented texts carry no labels, only the source "
                          "model's scores; set distill > 0 too")
    if name == "factorise" and p["rank"] is not None and p["max_error"] is not None:
        raise RecipeError(f"{src}: {where}: give rank or max_error, not both")
    if name == "factorise" and p["full_rows"] and p["rank"] is None and p["max_error"] is None:
        raise RecipeError(f"{src}: {where}.full_rows: only the other rows are factorised; give rank or max_error")
    if name == "factorise" and p["distill"] and not p["steps"]:
        raise RecipeError(f"{src}: {where}.distill: distillation happens in the fine-tuning steps; set steps >= 1")
    if name == "prune":
        if p["schedule"] == "polynomial" and p["initial_sparsity"] >= p["sparsity"] and p["sparsity"] > 0:
            raise RecipeError(f"{src}: {where}.initial_sparsity: {p['initial_sparsity']} must be below "
                              f"sparsity {p['sparsity']}")
        if p["schedule"] == "polynomial" and p["steps"] == 0 and p["sparsity"] > 0:
            raise RecipeError(f"{src}: {where}.steps: a polynomial schedule needs steps >= 1 "
                              "(or use schedule: constant)")
    if name == "quantise" and p["mode"] not in ("int8", "int16x8") and (
            p["keep_float_ops"] is not None or p["max_layer_error"] is not None):
        raise RecipeError(f"{src}: {where}: keep_float_ops/max_layer_error apply to mode int8 or int16x8 only")
