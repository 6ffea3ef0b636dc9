"""Compression recipes: a declarative YAML file = an ordered list of passes + data and export settings.

Schema (every key optional except ``passes``; see ``recipes/README.md`` for what each pass does;
each pass's settings are its dataclass in :mod:`rmcompress.compression.settings`)::

    name: light                      # defaults to the file name
    description: "..."
    data:                            # the deterministic split used for fine-tuning, calibration, evaluation
      val_fraction: 0.1              #   default: the settings the model was trained with (metadata)
      seed: 0
      split: random | disjoint
      max_train_examples: 20000      #   cap on training rows used (seeded subset); null = all
      group_by_length: false         #   true: the passes' training batches hold texts of one length
                                     #   bucket, padding cut (rmcompress.data.pipeline; checked first)
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

import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rmcompress.config.choices import EXPORT_FORMATS, SPLIT_MODES
from rmcompress.compression.passbase import PassSettings
from rmcompress.compression.settings import PASS_RANK, SETTINGS
from rmcompress.errors import RecipeError
from rmcompress.config.validation import Field, check_choice, check_order, load_yaml, validate

LEVELS = ("lossless", "light", "medium", "aggressive")
RECIPE_DIR = Path(__file__).resolve().parent / "recipes"
#: shipped recipes that are not levels, also resolvable by name (``--recipe pretrained-aggressive``)
SHIPPED = ("extreme", "pretrained-aggressive")

#: the same as :func:`rmcompress.config.validation.check_order` takes it: groups of equal rank, in order
PASS_ORDER = tuple(tuple(n for n, r in PASS_RANK.items() if r == rank)
                   for rank in sorted({r for r in PASS_RANK.values() if r is not None}))
ANYWHERE = tuple(n for n, r in PASS_RANK.items() if r is None)

ALIASES = {"quantize": "quantise", "factorize": "factorise"}
DATA_SCHEMA = {"val_fraction": Field(float, None, nullable=True, min=0, max=1, max_exclusive=True),
               "seed": Field(int, None, nullable=True),
               "split": Field(str, None, nullable=True, choices=SPLIT_MODES),
               "max_train_examples": Field(int, None, nullable=True, min=1),
               "group_by_length": Field(bool, None, nullable=True,
                                        help="true: the passes' training batches hold texts of one length "
                                             "bucket, their padding cut (the model is checked first)")}
EXPORT_SCHEMA = {"formats": Field(list, list(EXPORT_FORMATS), min_items=1, items=Field(str, choices=EXPORT_FORMATS),
                                  help=f"export formats: {', '.join(EXPORT_FORMATS)}"),
                 "latency_runs": Field(int, 200, min=0),
                 "strip_names": Field(bool, False, help="true: drop tensor names from the .tflite file "
                                                        "(smaller; signatures kept)")}
#: the top level of a recipe; ``data``/``export`` null or absent: all their defaults
TOP_SCHEMA = {"name": Field(str, None), "description": Field(str, ""),
              "data": Field(dict, None, nullable=True), "passes": Field(list, min_items=1, help=(
                  f"a non-empty list of passes; allowed passes: {', '.join(SETTINGS)}")),
              "export": Field(dict, None, nullable=True)}


def validate_section(values, schema: dict[str, Field], where: str, src: str) -> dict:
    """Check the settings ``values`` at key path ``where`` (``null``: all defaults) against
    ``schema`` with :func:`rmcompress.config.validation.validate`; return them with defaults filled in."""
    return validate({} if values is None else values, schema, src, RecipeError, where)


@dataclass
class PassSpec:
    """One recipe item: the pass name and its validated settings."""

    name: str
    settings: PassSettings

    @property
    def params(self) -> dict:
        """The settings as ``{key: value}`` (defaults filled in)."""
        return self.settings.as_dict()


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
        for i, spec in enumerate(passes):
            for key, pattern, _ in _patterns(spec):
                try:
                    re.compile(pattern)
                except re.error as e:
                    raise RecipeError(f"{source}: passes[{i}].{key}: {pattern!r} is not a valid regular "
                                      f"expression ({e})") from None
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

    def check_model(self, layer_names: list[str], model: str) -> None:
        """Every layer-name regex that selects layers (``layers.include``, ``layer_clusters``) must
        match a layer of the model ``model`` whose top-level layers are ``layer_names``; else a
        :class:`RecipeError` naming the recipe file, the pass and the key, before any pass runs."""
        for i, spec in enumerate(self.passes):
            for key, pattern, selects in _patterns(spec):
                if selects and not any(re.search(pattern, n) for n in layer_names):
                    shown = ", ".join(layer_names[:30]) + (", ..." if len(layer_names) > 30 else "")
                    raise RecipeError(f"{self.source}: passes[{i}].{key}: {pattern!r} matches no layer of {model} "
                                      f"(its layers: {shown})")

    def check_model_file(self, model_dir: str | os.PathLike) -> None:
        """:meth:`check_model` against the layers ``model_dir/model.keras`` declares (read from the
        archive's ``config.json``, no TensorFlow; nothing is checked when that cannot be read: the
        model loader reports it)."""
        names = keras_layer_names(Path(model_dir) / "model.keras")
        if names is not None:
            self.check_model(names, str(model_dir))

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
                          f"'NAME: {{settings}}'; allowed passes: {', '.join(SETTINGS)}")
    name = check_choice(ALIASES.get(name, name), tuple(SETTINGS), "pass", f"{src}: {where}", RecipeError)
    return PassSpec(name, SETTINGS[name].from_mapping(params, f"{where}.{name}", src))


def _patterns(spec: PassSpec) -> list[tuple[str, str, bool]]:
    """``(key path, regex, selects)`` of every layer-name regex of a pass; ``selects``: the regex
    chooses layers (an ``exclude`` that matches nothing is harmless)."""
    params = spec.params
    out = []
    layers = params.get("layers") or {}
    for key in ("include", "exclude"):
        for j, pattern in enumerate(layers.get(key) or []):
            out.append((f"{spec.name}.layers.{key}[{j}]", str(pattern), key == "include"))
    for pattern in params.get("layer_clusters") or {}:
        out.append((f"{spec.name}.layer_clusters", str(pattern), True))
    return out


def keras_layer_names(model_file: str | os.PathLike) -> list[str] | None:
    """Names of the top-level layers a ``.keras`` archive declares, or ``None`` when unreadable."""
    try:
        with zipfile.ZipFile(model_file) as z:
            config = json.loads(z.read("config.json"))
        return [str(layer["config"]["name"]) for layer in config["config"]["layers"]]
    except (OSError, KeyError, TypeError, ValueError, zipfile.BadZipFile):
        return None
