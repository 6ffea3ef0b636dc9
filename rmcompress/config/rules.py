"""The rule table of every numeric command-line value: what each must be, checked before TensorFlow loads.

A :class:`Rule` is a predicate and the text of what it demands. Values are checked by
:func:`check_value`: a number must be of the flag's kind (an integer flag refuses ``1.5`` and
``true``), finite (``nan``, ``inf`` and ``-inf`` are refused everywhere) and meet its rule; a
failure is one :class:`~rmcompress.errors.UsageError` line, ``--flag VALUE must be ...``.

``rmcompress train``'s settings declare their rules beside their defaults
(:mod:`rmcompress.config.training`, built from the helpers here); the other commands' numeric
flags are in :data:`COMMAND_RULES`, which :func:`check_args` applies to parsed arguments. The
argparse converters :func:`number` and :func:`integer` refuse a non-finite or malformed value
at parse time with one line naming it, so ``nan`` never becomes a float silently.
"""
from __future__ import annotations

import argparse
import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable

from rmcompress.errors import UsageError

#: the largest seed: NumPy, TensorFlow and Python's ``random`` all take seeds in [0, 2**31 - 1]
MAX_SEED = 2**31 - 1


@dataclass(frozen=True)
class Rule:
    """What a value must be: ``ok(value)`` else ``"{flag} {value} {text}"`` (a :class:`UsageError`)."""

    text: str
    ok: Callable[[Any], bool]


def at_least(lo) -> Rule:
    return Rule(f"must be >= {lo}", lambda v: v >= lo)


def above(lo) -> Rule:
    return Rule(f"must be > {lo}", lambda v: v > lo)


def closed(lo, hi) -> Rule:
    return Rule(f"must be in [{lo}, {hi}]", lambda v: lo <= v <= hi)


def half_open(lo, hi) -> Rule:
    return Rule(f"must be in [{lo}, {hi})", lambda v: lo <= v < hi)


FRACTION = Rule("must be a fraction in (0, 1]", lambda v: 0.0 < float(v) <= 1.0)
SEED = Rule(f"must be in [0, {MAX_SEED}] (2**31 - 1)", lambda v: 0 <= v <= MAX_SEED)
PATIENCE = Rule("must be >= 0 (0 turns early stopping off)", lambda v: v >= 0)


def is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_value(flag: str, value, rule: Rule | None = None, kind: type | None = None) -> None:
    """Raise a one-line :class:`UsageError` unless ``value`` (``None``: not given, always fine) is of
    ``kind`` (``int``: an integer; ``float``: any real number), finite and meets ``rule``."""
    if value is None:
        return
    if kind is int and not is_int(value):
        raise UsageError(f"{flag} {value!r} must be an integer")
    if kind is float and not is_number(value):
        raise UsageError(f"{flag} {value!r} must be a number")
    if is_number(value) and not math.isfinite(value):
        raise UsageError(f"{flag} {value} must be a finite number")
    if rule is not None and not rule.ok(value):
        raise UsageError(f"{flag} {value} {rule.text}")


# -- argparse converters ----------------------------------------------------------------------------
def number(text: str) -> float:
    """argparse type of a real-valued flag: a finite float (``nan``/``inf`` refused by name)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def integer(text: str) -> int:
    """argparse type of an integer flag (``1.5``, ``nan``, ``1e3`` refused by name)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


# -- the other commands' numeric flags ---------------------------------------------------------------
#: ``{command: {argparse dest: (rule, kind)}}`` (``train``'s rules are on its settings)
COMMAND_RULES: dict[str, dict[str, tuple[Rule | None, type]]] = {
    "shrink": {"budget_flops": (FRACTION, float), "budget_params": (FRACTION, float)},
    "compress": {"latency_runs": (at_least(0), int), "seed": (SEED, int)},
    "export": {"latency_runs": (at_least(0), int)},
    "evaluate": {"latency_runs": (at_least(0), int), "max_examples": (at_least(1), int)},
    "import": {"seq_len": (at_least(1), int)},
    "demo": {"seed": (SEED, int)},
    "search": {"max_drop": (at_least(0), float), "reward_gamma": (at_least(0), float), "eta": (at_least(2), int),
               "rungs": (at_least(1), int), "latency_runs": (at_least(1), int)},
    "sensitivity": {"max_examples": (at_least(1), int), "calibration_samples": (at_least(1), int)},
}


def flag_name(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def check_args(command: str, args: dict) -> None:
    """Check the parsed arguments ``args`` (``vars(namespace)``) of ``command`` against
    :data:`COMMAND_RULES` (one :class:`UsageError` line for the first bad value)."""
    for dest, (rule, kind) in COMMAND_RULES.get(command, {}).items():
        check_value(flag_name(dest), args.get(dest), rule, kind)
