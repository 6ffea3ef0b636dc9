"""Check user-written settings (recipe files, config mappings) against a small declarative schema.

A schema is a mapping ``key -> Field``. :func:`validate` walks a value against it and returns a new
dict with defaults filled in, or raises :class:`~rmcompress.errors.RecipeError` (or the error class
given) with ONE line that names the source, the key path (``passes[1].sparsity``), the bad value and
what is allowed::

    recipe.yaml: unknown key 'prune.sparsty'; allowed keys in prune: schedule, sparsity (did you mean 'sparsity'?)
    recipe.yaml: 'prune.sparsity' = 1.2 is out of range; allowed: 0 <= sparsity < 1
    recipe.yaml: 'quantize' = 'int4' is not allowed; allowed values: none, float16, dynamic, int8
    recipe.yaml: 'epochs' must be an integer, got str '3'

:func:`load_yaml` reads YAML with PyYAML's *safe* loader only (plain data: no Python objects, no
code), refuses duplicate keys and alias bombs (documents that expand to more than
:data:`MAX_YAML_NODES` values), and names the line of a syntax error.
:func:`check_order` checks that named steps follow a required order (``fuse -> prune -> quantize``).

Example::

    PRUNE = {"sparsity": Field(float, min=0, max=1, max_exclusive=True),
             "schedule": Field(str, default="constant", choices=("constant", "polynomial"))}
    RECIPE = {"name": Field(str), "prune": Field(dict, schema=PRUNE, default=None, nullable=True)}
    recipe = validate(load_yaml(path), RECIPE, where=str(path))
"""
from __future__ import annotations

import difflib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from rmcompress.errors import RecipeError

REQUIRED = object()
MAX_YAML_NODES = 100_000  # values after expanding aliases (*name): a recipe has dozens
_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
               list: "a list", dict: "a mapping"}


@dataclass(frozen=True)
class Field:
    """One key of a schema.

    ``kind``: ``int``, ``float`` (ints accepted, converted), ``str``, ``bool``, ``list``, ``dict`` or a
    tuple of these; ``bool`` is never accepted as a number. ``default``: used when the key is absent
    (``REQUIRED``: the key must be given). ``choices``: allowed values. ``min``/``max``: inclusive
    bounds unless ``min_exclusive``/``max_exclusive``; numbers must be finite. ``schema``: nested
    schema of a ``dict``; ``items``: the Field of each element of a ``list``; ``nullable``: ``None``
    (YAML ``null``/``~``) allowed. ``min_items``/``unique`` constrain lists. ``check``: a last rule
    for what the other settings cannot say (``[m, n]`` with ``m < n``): a function of the checked value
    returning ``None`` when it is fine, else what it must be (``"must be [m, n] with 0 < m < n"``).
    ``help``: what the key is, added to "missing" and "too few items" errors.
    """

    kind: type | tuple = object
    default: Any = REQUIRED
    choices: tuple | None = None
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    max_exclusive: bool = False
    schema: Mapping[str, "Field"] | None = None
    items: "Field | None" = None
    nullable: bool = False
    min_items: int = 0
    unique: bool = False
    help: str = ""
    check: Callable[[Any], "str | None"] | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


def suggest(name: str, options) -> str:
    """`` (did you mean 'x'?)`` for a close match among ``options``, else ``""``."""
    close = difflib.get_close_matches(str(name), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _kinds(field: Field) -> tuple:
    return field.kind if isinstance(field.kind, tuple) else (field.kind,)


def _type_name(kinds: tuple) -> str:
    return " or ".join(_TYPE_NAMES.get(k, getattr(k, "__name__", str(k))) for k in kinds)


def _show(value) -> str:
    """A value as a recipe writes it: YAML spelling for true/false/null, else ``str``."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return str(value)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _yaml_hint(value, kinds: tuple) -> str:
    """Explain YAML 1.1 surprises: ``1e3`` is text, ``yes``/``off`` are booleans."""
    if isinstance(value, str) and (int in kinds or float in kinds):
        try:
            float(value)
        except ValueError:
            return ""
        return " (YAML reads numbers like 1e3 as text; write 1000 or 1.0e+3)"
    if isinstance(value, bool) and str in kinds:
        return " (YAML reads yes/no/on/off as true/false; quote the word)"
    return ""


def range_text(field: Field, name: str) -> str:
    """``0 <= sparsity < 1`` for a Field with bounds."""
    lo = "" if field.min is None else f"{field.min:g} {'<' if field.min_exclusive else '<='} "
    hi = "" if field.max is None else f" {'<' if field.max_exclusive else '<='} {field.max:g}"
    return f"{lo}{name}{hi}"


def check_value(value, field: Field, path: str, where: str, error=RecipeError):
    """Check one value against ``field``; return it (ints converted for ``float``, nested defaults)."""
    name = path.rsplit(".", 1)[-1] or path
    if value is None:
        if field.nullable:
            return None
        raise error(f"{where}: {path!r} must not be empty (null); it must be {_type_name(_kinds(field))}")
    kinds = _kinds(field)
    if object not in kinds:
        ok = False
        for k in kinds:
            if k is bool:
                ok = ok or isinstance(value, bool)
            elif k in (int, float):
                ok = ok or (isinstance(value, (int, float) if k is float else int) and not isinstance(value, bool))
            else:
                ok = ok or isinstance(value, k)
        if not ok:
            raise error(f"{where}: {path!r} must be {_type_name(kinds)}, got {type(value).__name__} "
                        f"{_short(value)}{_yaml_hint(value, kinds)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise error(f"{where}: {path!r} = {value} is not a finite number")
    if float in kinds and isinstance(value, int) and not isinstance(value, bool) and int not in kinds:
        value = float(value)
    if field.choices is not None and value not in field.choices:
        allowed = ", ".join(_show(c) for c in field.choices)
        raise error(f"{where}: {path!r} = {_short(value)} is not allowed; allowed values: {allowed}"
                    f"{suggest(value, field.choices) if isinstance(value, str) else ''}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        too_low = field.min is not None and (value <= field.min if field.min_exclusive else value < field.min)
        too_high = field.max is not None and (value >= field.max if field.max_exclusive else value > field.max)
        if too_low or too_high:
            raise error(f"{where}: {path!r} = {value:g} is out of range; allowed: {range_text(field, name)}")
    if isinstance(value, dict) and field.schema is not None:
        value = validate(value, field.schema, where, error, path)
    if isinstance(value, list):
        if len(value) < field.min_items:
            raise error(f"{where}: {path!r} needs at least {field.min_items} item(s), got {len(value)}"
                        + (f" ({field.help})" if field.help else ""))
        if field.items is not None:
            value = [check_value(v, field.items, f"{path}[{i}]", where, error) for i, v in enumerate(value)]
        if field.unique:
            seen = set()
            for i, v in enumerate(value):
                key = repr(v)
                if key in seen:
                    raise error(f"{where}: {path}[{i}] = {_short(v)} is repeated; each may appear once")
                seen.add(key)
    if field.check is not None:
        problem = field.check(value)
        if problem:
            raise error(f"{where}: {path!r} {problem}, got {_short(value)}")
    return value


def validate(mapping, schema: Mapping[str, Field], where: str = "recipe", error=RecipeError,
             path: str = "") -> dict:
    """Check ``mapping`` against ``schema`` (unknown keys, missing keys, types, choices, ranges,
    nested schemas); return a new dict with every schema key, defaults filled in."""
    label = repr(path) if path else "the top level"
    allowed = ", ".join(schema) or "(none)"
    if not isinstance(mapping, Mapping):
        raise error(f"{where}: {label} must be a mapping of keys to values, got {type(mapping).__name__} "
                    f"{_short(mapping)}; allowed keys: {allowed}")
    for key in mapping:
        if not isinstance(key, str):
            raise error(f"{where}: key {_short(key)} in {label} is not a string; allowed keys: {allowed}")
        if key not in schema:
            full = f"{path}.{key}" if path else key
            raise error(f"{where}: unknown key {full!r}; allowed keys{f' in {path}' if path else ''}: "
                        f"{allowed}{suggest(key, schema)}")
    out = {}
    for key, field in schema.items():
        full = f"{path}.{key}" if path else key
        if key in mapping:
            out[key] = check_value(mapping[key], field, full, where, error)
        elif field.required:
            raise error(f"{where}: missing required key {full!r}" + (f" ({field.help})" if field.help else ""))
        else:
            out[key] = field.default
    return out


def check_choice(value, choices: Sequence, what: str, where: str = "", error=RecipeError, extra: str = ""):
    """``value`` if it is one of ``choices``, else ``unknown {what} 'x'; allowed: a, b, c{extra}``
    (e.g. a recipe level: ``check_choice(level, LEVELS, "recipe level", extra=" or a .yaml file")``)."""
    if value not in choices:
        prefix = f"{where}: " if where else ""
        raise error(f"{prefix}unknown {what} {_short(value)}; allowed: {', '.join(str(c) for c in choices)}"
                    f"{extra}{suggest(value, choices) if isinstance(value, str) else ''}")
    return value


def check_order(names: Sequence[str], order: Sequence, where: str = "recipe", what: str = "passes",
                error=RecipeError, item: str = "pass", anywhere: Sequence[str] = (), path: str = "") -> None:
    """Raise unless every name is in ``order`` (or ``anywhere``) and the names follow it (repeats not
    allowed). An entry of ``order`` may be a tuple of names of equal rank, allowed in either order
    (``("budget", ("fuse", "factorise"), "prune")``); names in ``anywhere`` may stand anywhere. With
    ``path`` (e.g. ``"passes"``) each message names the place as ``passes[i]`` (from 0) instead of
    ``positions i and j`` (from 1)."""
    groups = [g if isinstance(g, tuple) else (g,) for g in order]
    rank = {n: i for i, g in enumerate(groups) for n in g}
    known = [n for g in groups for n in g] + [n for n in anywhere if n not in rank]
    chain = " -> ".join("/".join(g) for g in groups) + (f" ({', '.join(anywhere)} anywhere)" if anywhere else "")
    def at(i: int) -> str:
        return f"{where}: {path}[{i}]" if path else where

    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        if n not in rank and n not in anywhere:
            raise error(f"{at(i)}: unknown {item} {n!r}; allowed: "
                        f"{', '.join(known)}{suggest(n, known)}")
        if n in seen:
            first = f"first at {path}[{seen[n]}]" if path else f"positions {seen[n] + 1} and {i + 1}"
            raise error(f"{at(i)}: {n!r} appears twice in {what} ({first})")
        seen[n] = i
    highest = None  # the ranked name of highest rank so far
    for i, n in enumerate(names):
        if n not in rank:
            continue
        if highest is not None and rank[n] < rank[highest]:
            raise error(f"{at(i)}: {n!r} cannot come after {highest!r}; {what} must follow the order {chain}")
        if highest is None or rank[n] > rank[highest]:
            highest = n


# -- YAML -----------------------------------------------------------------------------------------
def _expanded_size(node, memo: dict) -> int:
    """Number of values ``node`` stands for once every alias is expanded (linear time: each
    distinct node is counted once and its size reused); ``ValueError`` for a cycle."""
    key = id(node)
    if memo.get(key, 0) is None:
        raise ValueError("a value that contains itself through an alias")
    if key not in memo:
        memo[key] = None  # in progress: meeting it again below means a cycle
        children = node.value if isinstance(node.value, list) else []
        total = 1
        for child in children:
            for c in (child if isinstance(child, tuple) else (child,)):
                total += _expanded_size(c, memo)
        memo[key] = total
    return memo[key]


def _loader(error):
    import yaml

    class SafeUniqueLoader(yaml.SafeLoader):
        """PyYAML's safe loader (plain data only) that refuses duplicate keys and alias bombs."""

        def construct_document(self, node):
            try:
                size = _expanded_size(node, {})
            except ValueError as e:
                raise error(f"{self.name}: YAML holds {e}; refused") from None
            if size > MAX_YAML_NODES:
                raise error(f"{self.name}: YAML expands to {size} values through its aliases (*name); "
                            f"refused (limit {MAX_YAML_NODES})")
            return super().construct_document(node)

        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                self.flatten_mapping(node)  # resolve "<<: *defaults" merges first
            seen = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    hash(key)
                except TypeError:
                    raise error(f"{self.name}:{key_node.start_mark.line + 1}: a mapping key must be a plain "
                                "value") from None
                if key in seen:
                    raise error(f"{self.name}:{key_node.start_mark.line + 1}: duplicate key {key!r} "
                                f"(first on line {seen[key]})")
                seen[key] = key_node.start_mark.line + 1
            return super().construct_mapping(node, deep=deep)

    return SafeUniqueLoader


def parse_yaml(text: str, where: str = "<string>", error=RecipeError):
    """Parse YAML ``text`` safely (see :func:`load_yaml`); errors name ``where`` and the line."""
    import yaml

    loader = None
    try:
        loader = _loader(error)(text)
        loader.name = where
        return loader.get_single_data()
    except yaml.reader.ReaderError as e:  # a control character (PyYAML reads printable text only)
        line = text[: max(0, e.position)].count("\n") + 1
        raise error(f"{where}:{line}: invalid YAML (character {e.character!r} is not allowed)") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = (e.problem or e.context or "syntax error").strip()
        raise error(f"{where}{line}: invalid YAML ({problem})") from None
    except yaml.YAMLError as e:
        raise error(f"{where}: invalid YAML ({str(e).splitlines()[0][:200] if str(e) else 'syntax error'})") from None
    except RecursionError:
        raise error(f"{where}: YAML nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


def load_yaml(path: str | os.PathLike, error=RecipeError):
    """Read a YAML file with the *safe* loader: plain data only (mappings, lists, strings, numbers,
    booleans, null; no Python objects, nothing executed); duplicate keys and more than
    :data:`MAX_YAML_NODES` values after alias expansion are errors; every error names the file (and line)."""
    p = Path(path)
    if not p.exists():
        raise error(f"{p}: no such file")
    if p.is_dir():
        raise error(f"{p}: is a directory, expected a YAML file")
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise error(f"{p}: cannot read ({e})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise error(f"{p}:{line}: not valid UTF-8") from None
    if not text.strip():
        raise error(f"{p}: file is empty")
    return parse_yaml(text, str(p), error)


def validate_file(path: str | os.PathLike, schema: Mapping[str, Field], error=RecipeError) -> dict:
    """:func:`load_yaml` + :func:`validate` (errors name the file)."""
    return validate(load_yaml(path, error), schema, str(path), error)
