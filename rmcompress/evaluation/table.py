"""Short, readable result tables (pandas) for the CLI and the reports, in human units.

Units (decimal, as file managers and the benchmark tables show them): sizes in B / kB / MB / GB
(:func:`format_bytes`), latencies in µs / ms / s (:func:`format_ms`), FLOPs and parameters with
k / M / G. A figure that does not apply to a row (NaN, None) is an empty cell, never ``nan``.

:func:`format_table`: ``name``, the quality metric, ``flops``, ``params``, ``size_bytes``,
``size_gzip_bytes``, ``latency_ms_p50``, ``parity_max_abs_diff`` (whichever are present) for a
terminal; :func:`humanize` formats any result frame the same way (the markdown report uses it).
"""
from __future__ import annotations

import math

import pandas as pd

COLUMNS = ["name", "task", "accuracy", "pairwise_accuracy", "mae", "flops", "params", "size_bytes",
           "size_gzip_bytes", "latency_ms_p50", "parity_max_abs_diff"]
#: raw column -> short header shown in tables
HEADERS = {"size_bytes": "size", "size_gzip_bytes": "gzip", "latency_ms_p50": "p50",
           "latency_ms_p50_real_length": "p50 real length", "parity_max_abs_diff": "parity",
           "pairwise_accuracy": "pair_acc"}

_BYTE_UNITS = (("B", 1.0), ("kB", 1e3), ("MB", 1e6), ("GB", 1e9))
_TIME_UNITS = (("µs", 1e-3), ("ms", 1.0), ("s", 1e3))  # scale in milliseconds


def missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _with_unit(v: float, units, digits: int) -> str:
    """``v`` in the largest unit it reaches, ``digits`` significant digits, no exponent."""
    if v == 0:
        return f"0 {units[0][0]}"
    i = max([0] + [k for k, (_, scale) in enumerate(units) if abs(v) >= scale])
    text = f"{v / units[i][1]:.{digits}g}"
    if abs(float(text)) >= 1000 and i + 1 < len(units):  # 999.7 rounds up into the next unit
        i += 1
        text = f"{v / units[i][1]:.{digits}g}"
    if "e" in text:  # beyond the largest unit
        text = f"{v / units[i][1]:.0f}"
    return f"{text} {units[i][0]}"


def format_bytes(n, digits: int = 3) -> str:
    """``36568`` -> ``36.6 kB``; empty for a missing figure."""
    return "" if missing(n) else _with_unit(float(n), _BYTE_UNITS, digits)


def format_ms(ms, digits: int = 3) -> str:
    """A latency given in milliseconds: ``0.0271`` -> ``27.1 µs``, ``1.834`` -> ``1.83 ms``."""
    return "" if missing(ms) else _with_unit(float(ms), _TIME_UNITS, digits)


def _human(n, unit=""):
    if missing(n):
        return ""
    n = float(n)
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{suffix}{unit}"
    return f"{n:.0f}{unit}"


def _formatter(column: str, values: pd.Series):
    if column.endswith("bytes"):
        return format_bytes
    if "latency_ms" in column:
        return format_ms
    if column in ("flops", "params") or column.endswith(("_flops", "_params")):
        return _human
    if column.endswith("max_abs_diff") or column.endswith("mean_abs_diff"):
        return lambda v: "" if missing(v) else f"{v:.1e}"
    if column in ("accuracy", "pairwise_accuracy", "mae", "auc") or column.endswith(("_accuracy", "_auc")):
        return lambda v: "" if missing(v) else f"{v:.4f}"
    if pd.api.types.is_float_dtype(values):
        whole = values.dropna().map(float.is_integer).all()  # counts that NaN turned into floats
        return lambda v: "" if missing(v) else (f"{v:.0f}" if whole else f"{v:.4g}")
    return lambda v: "" if missing(v) else v


def humanize(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` as strings in human units (module docstring), missing figures blank, short headers."""
    out = pd.DataFrame({c: df[c].astype(object).map(_formatter(c, df[c])) for c in df.columns}, index=df.index)
    return out.rename(columns=HEADERS)


def rows_to_frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    cols = [c for c in COLUMNS if c in df.columns]
    return df[cols + [c for c in df.columns if c not in cols and c in ("recipe", "quantize")]]


def format_table(rows: list[dict]) -> str:
    """A compact text table of result rows (human units)."""
    return humanize(rows_to_frame(rows)).to_string(index=False)
