"""Gather result rows from many output directories into one table, with Pareto plots.

``gather(dirs)`` reads each ``DIR/report.json`` (written by ``train``, ``export``, ``compress``; a
``{"rows": [...]}`` file such as the demo's contributes every row) into a pandas DataFrame, one row
per artifact, named by its ``name``/``recipe`` or its directory. ``write_report(df, out)`` writes
``report.csv``, ``report.md`` and two PNG plots:

- ``pareto_size.png``: quality vs raw TFLite bytes (log x);
- ``pareto_latency.png``: quality vs p50 latency (log x);

each point labelled, the Pareto front (no other point is both smaller/faster and at least as
accurate) drawn as a step line. Quality is ``accuracy`` or ``pairwise_accuracy`` (one plot panel
per task present).
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from rmcompress.errors import UsageError
from rmcompress.fileio import atomic_write_bytes, atomic_write_text, read_json

HEADLINE = ["name", "recipe", "task", "accuracy", "pairwise_accuracy", "accuracy_drop_points", "flops", "params",
            "size_bytes", "size_gzip_bytes", "latency_ms_p50", "latency_ms_p50_real_length", "size_ratio",
            "gzip_ratio", "latency_speedup", "vs_source_decision_agreement", "parity_max_abs_diff", "quantize",
            "dir"]


def gather(dirs) -> pd.DataFrame:
    rows = []
    for d in dirs:
        p = Path(d)
        f = p / "report.json" if p.is_dir() else p
        if not f.is_file():
            raise UsageError(f"{p}: no report.json (give directories written by train/export/compress)")
        try:
            data = read_json(f)
        except ValueError as e:
            raise UsageError(f"{f}: invalid JSON ({e})") from None
        items = data.get("rows") if isinstance(data, dict) and isinstance(data.get("rows"), list) else [data]
        for r in items:
            if not isinstance(r, dict):
                raise UsageError(f"{f}: a row is not a JSON object")
            flat = {k: v for k, v in r.items() if not isinstance(v, (dict, list))}
            flat.setdefault("name", r.get("recipe") or p.name)
            flat["dir"] = str(p)
            rows.append(flat)
    if not rows:
        raise UsageError("no rows to report")
    df = pd.DataFrame(rows)
    cols = [c for c in HEADLINE if c in df.columns]
    return df[cols + [c for c in df.columns if c not in cols]]


def _quality_col(df: pd.DataFrame, task: str) -> str | None:
    col = "pairwise_accuracy" if task == "pairwise" else "accuracy"
    return col if col in df.columns and df.loc[df["task"] == task, col].notna().any() else None


def pareto_front(x, y) -> list[int]:
    """Indices on the front: minimise ``x`` and maximise ``y``."""
    order = sorted(range(len(x)), key=lambda i: (x[i], -y[i]))
    best, front = float("-inf"), []
    for i in order:
        if y[i] > best:
            front.append(i)
            best = y[i]
    return front


def plot_pareto(df: pd.DataFrame, xcol: str, xlabel: str) -> bytes | None:
    """A PNG (bytes) of quality vs ``xcol`` per task, or None when nothing to plot."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t for t in ("pointwise", "pairwise") if "task" in df and (df["task"] == t).any()]
    panels = [(t, _quality_col(df, t)) for t in tasks]
    panels = [(t, q) for t, q in panels if q and xcol in df]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False)
    for ax, (task, q) in zip(axes[0], panels):
        sub = df[(df["task"] == task) & df[q].notna() & df[xcol].notna()].reset_index(drop=True)
        x, y = sub[xcol].astype(float).tolist(), sub[q].astype(float).tolist()
        ax.scatter(x, y, s=30)
        for i, name in enumerate(sub["name"].astype(str)):
            ax.annotate(name, (x[i], y[i]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        front = pareto_front(x, y)
        if len(front) > 1:
            ax.step([x[i] for i in front], [y[i] for i in front], where="post", color="tab:red", lw=1,
                    label="Pareto front")
            ax.legend(fontsize=7, loc="lower right")
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(q.replace("_", " "))
        ax.set_title(f"{task}: {q.replace('_', ' ')} vs {xlabel}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()


def to_markdown(df: pd.DataFrame) -> str:
    try:
        return df.to_markdown(index=False, floatfmt=".4g")
    except ImportError:  # tabulate missing
        return df.to_string(index=False)


def write_report(df: pd.DataFrame, out: str | os.PathLike) -> list[Path]:
    """Write ``report.csv``, ``report.md``, ``pareto_size.png``, ``pareto_latency.png`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    atomic_write_text(out / "report.csv", df.to_csv(index=False))
    atomic_write_text(out / "report.md", to_markdown(df[[c for c in HEADLINE if c in df.columns]]) + "\n")
    written += [out / "report.csv", out / "report.md"]
    for fname, col, label in (("pareto_size.png", "size_bytes", "TFLite size (bytes)"),
                              ("pareto_latency.png", "latency_ms_p50", "p50 latency (ms, batch 1, 1 thread)")):
        png = plot_pareto(df, col, label)
        if png:
            atomic_write_bytes(out / fname, png)
            written.append(out / fname)
    return written
