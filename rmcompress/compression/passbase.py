"""The one shape of a compression pass: ``name``, a ``Settings`` dataclass, ``run(state, settings) -> PassResult``.

**Settings are the schema.** A pass's settings are a frozen dataclass (a :class:`PassSettings`); each
field declares its recipe key once: the annotation is the type (``float | None``: ``null`` allowed,
``bool | str``: either), the default is the default, and :func:`setting` adds the rest (range,
choices, list items, nested keys, help). :meth:`PassSettings.schema` turns the fields into
:class:`rmcompress.config.validation.Field` objects, so the recipe validator, the pass and the settings
table of ``recipes/README.md`` all read that one declaration. Rules that tie two settings together
are :meth:`PassSettings.problem`.

**Contract of** :meth:`Pass.run`: it takes the state and the validated settings and returns a
:class:`PassResult`: the new state (model, tokenizer, and the typed facts later steps need: the
export plan, which weights were pruned or clustered) and ``notes``, a dict that goes to
``report.json`` only. No pass and no export step reads another pass's notes. A pass verifies itself
numerically against the model it came from (outputs within a bound, or stripped == wrapped) and
raises :class:`rmcompress.errors.ModelError` when the check fails; ``PassResult.max_abs_diff`` is
the number it measured (``None`` for passes that change outputs by design and are judged at export).

No TensorFlow import here: the CLI validates a recipe before TensorFlow loads.
"""
from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from rmcompress.errors import RecipeError
from rmcompress.config.validation import Field, validate

#: keyword arguments of :func:`setting` that go to :class:`Field` unchanged
_FIELD_OPTIONS = ("choices", "min", "max", "min_exclusive", "max_exclusive", "schema", "items",
                  "min_items", "unique", "help", "check")


def setting(default: Any, *, choices: tuple | None = None, min: float | None = None,  # noqa: A002
            max: float | None = None, min_exclusive: bool = False, max_exclusive: bool = False,  # noqa: A002
            schema: dict | None = None, items: Field | None = None, min_items: int = 0,
            unique: bool = False, help: str = "",  # noqa: A002
            check: Callable[[Any], "str | None"] | None = None):
    """A settings field: its default and the :class:`Field` options the annotation cannot say."""
    options = {"choices": choices, "min": min, "max": max, "min_exclusive": min_exclusive,
               "max_exclusive": max_exclusive, "schema": schema, "items": items, "min_items": min_items,
               "unique": unique, "help": help, "check": check}
    meta = {"field": options}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _kind(hint) -> tuple[Any, bool]:
    """``(kind for Field, nullable)`` of a type annotation: ``float | None`` -> ``(float, True)``,
    ``list[str] | str`` -> ``((list, str), False)``."""
    union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    args = typing.get_args(hint) if union else (hint,)
    nullable = type(None) in args
    kinds = tuple(typing.get_origin(a) or a for a in args if a is not type(None))
    return (kinds[0] if len(kinds) == 1 else kinds), nullable


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory()  # type: ignore[misc]


@dataclass(frozen=True)
class PassSettings:
    """Base of every pass's settings dataclass (module docstring)."""

    @classmethod
    def schema(cls) -> dict[str, Field]:
        """``{key: Field}`` in declaration order (fresh defaults on every call)."""
        hints = typing.get_type_hints(cls)
        out = {}
        for f in dataclasses.fields(cls):
            kind, nullable = _kind(hints[f.name])
            opts = f.metadata.get("field", {})
            out[f.name] = Field(kind, _default(f), nullable=nullable,
                                **{k: v for k, v in opts.items() if k in _FIELD_OPTIONS})
        return out

    @classmethod
    def from_mapping(cls, values, where: str, src: str) -> "PassSettings":
        """Validate the recipe's mapping ``values`` (``None``: all defaults) at key path ``where``
        of file ``src``; every error is one :class:`RecipeError` line naming both."""
        checked = validate({} if values is None else values, cls.schema(), src, RecipeError, where)
        settings = cls(**checked)
        found = settings.problem()
        if found:
            key, message = found
            raise RecipeError(f"{src}: {where}{'.' + key if key else ''}: {message}")
        return settings

    def problem(self) -> tuple[str, str] | None:
        """A rule across settings that is broken: ``(key or "", what is wrong)``; ``None``: fine."""
        return None

    def as_dict(self) -> dict:
        """``{key: value}`` in declaration order (what ``recipe.yaml`` and the log show)."""
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(self)}


@dataclass
class PassResult:
    """What a pass hands on: the new state, its report notes, the measured self-check."""

    state: Any
    notes: dict
    #: the pass's numerical self-check against the model it came from (``None``: judged at export)
    max_abs_diff: float | None = None


class Pass:
    """A compression pass (module docstring). Subclasses set ``name`` and ``Settings`` and implement
    :meth:`run`; :data:`rmcompress.compression.passes.PASSES` maps names to them."""

    name: ClassVar[str]
    Settings: ClassVar[type[PassSettings]]

    def run(self, state, settings) -> PassResult:
        raise NotImplementedError

    def __call__(self, state, settings=None) -> PassResult:
        """Run with ``settings`` (default: the defaults); the result's ``notes`` carry
        ``max_abs_diff`` when the pass measured one."""
        settings = self.Settings() if settings is None else settings
        if not isinstance(settings, self.Settings):
            raise TypeError(f"pass {self.name!r} takes {self.Settings.__name__}, got {type(settings).__name__}")
        result = self.run(state, settings)
        if result.max_abs_diff is not None:
            result.notes.setdefault("max_abs_diff", result.max_abs_diff)
        return result
