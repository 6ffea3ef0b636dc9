"""Short, readable result tables (pandas) for the CLI and the reports.

Columns: ``name``, the quality metric, ``flops``, ``params``, ``size_bytes``, ``size_gzip_bytes``,
``latency_ms_p50``, ``parity_max_abs_diff`` (whichever are present), formatted for a terminal.
"""
from __future__ import annotations

import pandas as pd

COLUMNS = ["name", "task", "accuracy", "pairwise_accuracy", "mae", "flops", "params", "size_bytes",
           "size_gzip_bytes", "latency_ms_p50", "parity_max_abs_diff"]


def rows_to_frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    cols = [c for c in COLUMNS if c in df.columns]
    return df[cols + [c for c in df.columns if c not in cols and c in ("recipe", "quantize")]]


def _human(n, unit=""):
    if n is None or (isinstance(n, float) and pd.isna(n)):
        return ""
    n = float(n)
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{suffix}{unit}"
    return f"{n:.0f}{unit}"


def format_table(rows: list[dict]) -> str:
    """A compact text table of result rows (human units)."""
    df = rows_to_frame(rows).copy()
    for c in ("flops", "params"):
        if c in df:
            df[c] = df[c].map(_human)
    for c in ("size_bytes", "size_gzip_bytes"):
        if c in df:
            df[c] = df[c].map(lambda v: _human(v, "B"))
    for c in ("accuracy", "pairwise_accuracy", "mae"):
        if c in df:
            df[c] = df[c].map(lambda v: "" if pd.isna(v) else f"{v:.4f}")
    if "latency_ms_p50" in df:
        df["latency_ms_p50"] = df["latency_ms_p50"].map(lambda v: "" if pd.isna(v) else f"{v:.3f}")
    if "parity_max_abs_diff" in df:
        df["parity_max_abs_diff"] = df["parity_max_abs_diff"].map(lambda v: "" if pd.isna(v) else f"{v:.1e}")
    df = df.rename(columns={"size_bytes": "size", "size_gzip_bytes": "gzip", "latency_ms_p50": "p50 ms",
                            "parity_max_abs_diff": "parity", "pairwise_accuracy": "pair_acc"})
    return df.astype(object).where(df.notna(), "").to_string(index=False)
