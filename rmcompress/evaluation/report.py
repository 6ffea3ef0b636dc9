"""Gather result rows from many output directories into one table, with Pareto plots.

``gather(dirs)`` reads each ``DIR/report.json`` (written by ``train``, ``export``, ``compress``; a
``{"rows": [...]}`` file such as the demo's contributes every row) into a pandas DataFrame, one row
per artifact, with

- ``run``: the run directory's name (for a file of several rows: the row's ``name``), the label
  of the row's point in the plots;
- ``kind``: the file ``size_bytes`` and ``latency_ms_p50`` measure: ``tflite``, ``savedmodel`` or
  ``keras`` (a model directory: ``model.keras``, which is not what a device runs);
- ``figures_from``: the directory whose report measured a row's figures when it is not the row's own.

Two rows stand for TFLite files whose report holds no quality figure of their own:

- a float TFLite export (``export --quantize none``) takes the quality of the model directory it
  was exported from (``metadata.json``'s ``source_model``): the export reproduces that model's
  rewards within 1e-4 or is not written;
- the source of a ``compress`` run becomes a row of its own, the dense float32 TFLite the run
  measured (``source_*`` figures, on the run's validation split), labelled by the source's run
  directory (``source_model``) -- once per source, and not when a float export of it is gathered.

``write_report(df, out)`` writes ``report.csv`` (raw figures; an empty field where a figure does not
apply), ``report.md`` (human units, empty cells blank) and two PNG plots of the TFLite rows that
have a quality figure:

- ``pareto_size.png``: quality vs TFLite file size (B/kB/MB);
- ``pareto_latency.png``: quality vs p50 latency (µs/ms, batch 1, one thread);

one panel per task with points (a task without points has no panel, a plot without points is not
written), each point labelled by ``run``, the Pareto front (no other point is both smaller/faster
and at least as accurate) drawn as a step line. The x axis is logarithmic when the figures span
more than a factor of 4, linear otherwise; its ticks are chosen so their labels do not overlap.
Quality is ``accuracy`` (pointwise) or ``pairwise_accuracy`` (pairwise).
"""
from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from rmcompress.errors import UsageError
from rmcompress.evaluation.table import format_bytes, format_ms, humanize
from rmcompress.fileio import atomic_write_bytes, atomic_write_text, read_json

HEADLINE = ["run", "name", "kind", "recipe", "task", "accuracy", "pairwise_accuracy", "accuracy_drop_points",
            "flops", "params", "size_bytes", "size_gzip_bytes", "latency_ms_p50", "latency_ms_p50_real_length",
            "size_ratio", "gzip_ratio", "latency_speedup", "vs_source_decision_agreement", "parity_max_abs_diff",
            "quantize", "tflite_precision", "savedmodel_precision", "figures_from", "dir"]
#: task -> the quality figure its plots show
QUALITY = {"pointwise": "accuracy", "pairwise": "pairwise_accuracy"}
#: every quality figure rmcompress.metrics reports, carried over with the quality of a source
QUALITY_KEYS = ("accuracy", "auc", "pairwise_accuracy", "mean_margin", "mae", "rmse", "spearman")
#: file name, column, axis label, tick formatter
PLOTS = (("pareto_size.png", "size_bytes", "TFLite file size", format_bytes),
         ("pareto_latency.png", "latency_ms_p50", "p50 latency (batch 1, 1 thread)", format_ms))
NICE_STEPS = [1, 2, 2.5, 5, 10]
KEEPS_MODEL_KERAS = ("train", "import", "shrink", "budget_compress")


def artifact_kind(report: dict) -> str:
    """What a report's ``size_bytes`` and ``latency_ms_p50`` measure (module docstring)."""
    if report.get("kind") in ("tflite", "savedmodel", "keras"):
        return report["kind"]
    if report.get("stage") in KEEPS_MODEL_KERAS:
        return "keras"
    if report.get("stage") == "export":
        return "tflite" if "tflite" in (report.get("formats") or ["tflite"]) else "savedmodel"
    return "tflite" if "recipe" in report else "unknown"


def _read(path: Path) -> dict:
    try:
        return read_json(path)
    except ValueError as e:
        raise UsageError(f"{path}: invalid JSON ({e})") from None


def source_of(run_dir: Path, record: dict) -> str | None:
    """The model directory a run was made from: ``source_model_relative`` (to the run directory)
    when it exists there, else ``source_model``."""
    rel = record.get("source_model_relative")
    if rel and (Path(run_dir) / rel).is_dir():
        return str((Path(run_dir) / rel).resolve())
    return record.get("source_model")


def _source_quality(run_dir: Path) -> dict:
    """Quality of the model directory a float export was made from, or ``{}``."""
    meta = run_dir / "metadata.json"
    src = source_of(run_dir, _read(meta)) if meta.is_file() else None
    if not src or not (Path(src) / "report.json").is_file():
        return {}
    rep = _read(Path(src) / "report.json")
    found = {k: rep[k] for k in QUALITY_KEYS if isinstance(rep.get(k), (int, float))}
    if not found:
        return {}
    return {**found, "n_examples": rep.get("n_examples"), "figures_from": str(src)}


def _same_dir(a, b) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except (OSError, TypeError):
        return False


def _source_rows(rows: list[dict]) -> list[dict]:
    """The dense float32 TFLite of each compress run's source model (module docstring)."""
    out = []
    for r in rows:
        quality = {k: r[f"source_{k}"] for k in QUALITY_KEYS if isinstance(r.get(f"source_{k}"), (int, float))}
        if r["kind"] != "tflite" or not r.get("source_size_bytes") or not quality:
            continue
        src = r.get("source_dir")
        same = (r.get("task"), r["source_size_bytes"], r.get("source_flops"), r.get("source_params"),
                tuple(sorted(quality.items())))  # the figures of one float model, when its path is not known
        if not src and any(o.get("_figures") == same for o in out):
            continue
        covered = [o for o in rows + out if o["kind"] == "tflite" and o.get("quantize") in ("none", None)
                   and any(k in o for k in quality) and src
                   and (_same_dir(o.get("figures_from"), src) or _same_dir(o.get("source_dir"), src))]
        if covered:
            continue
        out.append({"run": Path(src).name if src else f"source of {r['run']}", "name": "float32", "kind": "tflite",
                    "task": r.get("task"), **quality, "n_examples": r.get("n_examples"),
                    "flops": r.get("source_flops"), "params": r.get("source_params"),
                    "size_bytes": r["source_size_bytes"], "size_gzip_bytes": r.get("source_size_gzip_bytes"),
                    "latency_ms_p50": r.get("source_latency_ms_p50"), "quantize": "none",
                    "tflite_precision": "float32", "figures_from": r["dir"], "dir": src or "",
                    "source_dir": src, "_figures": same})
    return out


def gather(dirs) -> pd.DataFrame:
    rows = []
    for d in dirs:
        p = Path(d)
        f = p / "report.json" if p.is_dir() else p
        if not f.is_file():
            raise UsageError(f"{p}: no report.json (give directories written by train/export/compress)")
        run_dir = p if p.is_dir() else p.parent
        data = _read(f)
        stage = data.get("stage") if isinstance(data, dict) else None
        if stage == "sensitivity":
            raise UsageError(f"{f}: a sensitivity table (a row per layer), not a model's result; read "
                             f"{run_dir / 'sensitivity.md'}")
        if stage == "search" and (run_dir / "best" / "report.json").is_file():  # a search: its chosen run
            data = _read(run_dir / "best" / "report.json")
        items = data.get("rows") if isinstance(data, dict) and isinstance(data.get("rows"), list) else [data]
        for r in items:
            if not isinstance(r, dict):
                raise UsageError(f"{f}: a row is not a JSON object")
            flat = {k: v for k, v in r.items() if not isinstance(v, (dict, list))}
            flat.setdefault("name", r.get("recipe") or run_dir.name)
            flat["run"] = run_dir.name if len(items) == 1 else str(flat["name"])
            flat["kind"] = artifact_kind(r)
            flat["dir"] = str(p)
            if (r.get("stage") == "export" and flat["kind"] == "tflite" and r.get("quantize") == "none"
                    and not any(k in r for k in QUALITY_KEYS)):
                flat.update(_source_quality(run_dir))
            if r.get("stage") == "export":
                meta = run_dir / "metadata.json"
                flat["source_dir"] = source_of(run_dir, _read(meta)) if meta.is_file() else None
            elif r.get("source_model") or r.get("source_model_relative"):
                flat["source_dir"] = source_of(run_dir, r)
            rows.append(flat)
    if not rows:
        raise UsageError("no rows to report")
    rows += _source_rows(rows)
    df = pd.DataFrame(rows).drop(columns=["source_dir", "_figures", "source_model_relative"], errors="ignore")
    cols = [c for c in HEADLINE if c in df.columns]
    return df[cols + [c for c in df.columns if c not in cols]]


def pareto_front(x, y) -> list[int]:
    """Indices on the front: minimise ``x`` and maximise ``y``."""
    order = sorted(range(len(x)), key=lambda i: (x[i], -y[i]))
    best, front = float("-inf"), []
    for i in order:
        if y[i] > best:
            front.append(i)
            best = y[i]
    return front


def plotted_points(df: pd.DataFrame, xcol: str) -> dict[str, pd.DataFrame]:
    """task -> the rows a plot of quality vs ``xcol`` shows: TFLite files with both figures."""
    out = {}
    if xcol not in df or "kind" not in df or "task" not in df:
        return out
    for task, q in QUALITY.items():
        if q not in df:
            continue
        x = pd.to_numeric(df[xcol], errors="coerce")
        y = pd.to_numeric(df[q], errors="coerce")
        sub = df[(df["task"] == task) & (df["kind"] == "tflite") & y.notna() & (x > 0)]
        if len(sub):
            out[task] = sub.reset_index(drop=True)
    return out


def _log_ticks(lo: float, hi: float, max_ticks: int) -> list[float]:
    decades = range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
    for mantissas in ((1,), (1, 2, 5), (1, 1.5, 2, 3, 5, 7)):
        ticks = [m * 10.0 ** e for e in decades for m in mantissas if lo <= m * 10.0 ** e <= hi]
        if len(ticks) > max_ticks:
            ticks = ticks[::math.ceil(len(ticks) / max_ticks)]
        if len(ticks) >= 3:
            return ticks
    return []


def axis_ticks(values, max_ticks: int = 6) -> tuple[str, tuple[float, float], list[float]]:
    """(scale, limits, ticks) for an x axis over positive ``values``: ``log`` when they span more
    than a factor of 4 (ticks at 1-2-5 or finer steps of the decades), else ``linear``."""
    from matplotlib.ticker import MaxNLocator

    lo, hi = float(np.min(values)), float(np.max(values))
    if hi / lo > 4:
        pad = (hi / lo) ** 0.08
        limits = (lo / pad, hi * pad)
        ticks = _log_ticks(*limits, max_ticks)
        if ticks:
            return "log", limits, ticks
    span = hi - lo or 0.2 * hi
    limits = (max(lo - 0.12 * span, 0.0), hi + 0.12 * span)
    for nbins in range(max_ticks - 1, 2 * max_ticks):  # at least 3 ticks inside the limits
        ticks = [t for t in MaxNLocator(nbins=nbins, steps=NICE_STEPS).tick_values(*limits)
                 if limits[0] <= t <= limits[1]]
        if len(ticks) >= 3:
            break
    return "linear", limits, ticks


def _tick_labels(ticks, fmt) -> list[str]:
    """Labels with as many significant digits as it takes to tell the ticks apart."""
    for digits in range(3, 8):
        labels = [fmt(t, digits) for t in ticks]
        if len(set(labels)) == len(labels):
            return labels
    return labels


def pareto_figure(df: pd.DataFrame, xcol: str, xlabel: str, fmt):
    """The matplotlib Figure of quality vs ``xcol`` (one panel per task with points), or None."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FixedFormatter, MaxNLocator, NullLocator

    panels = plotted_points(df, xcol)
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 4.6), squeeze=False)
    for ax, (task, sub) in zip(axes[0], panels.items()):
        q = QUALITY[task]
        x, y = sub[xcol].astype(float).tolist(), sub[q].astype(float).tolist()
        ax.scatter(x, y, s=30, zorder=3)
        front = pareto_front(x, y)
        if len(front) > 1:
            ax.step([x[i] for i in front], [y[i] for i in front], where="post", color="tab:red", lw=1,
                    label="Pareto front")
        scale, limits, ticks = axis_ticks(x)
        ax.set_xscale(scale)
        ax.set_xlim(*limits)
        ylo, yhi = min(y), max(y)
        pad = max(0.08 * (yhi - ylo), 0.01)
        ax.set_ylim(ylo - pad, yhi + pad)  # before the labels: their placement reads the limits
        pos = [(ax.transScale + ax.transLimits).transform((x[i], y[i])) for i in range(len(x))]  # in [0, 1]
        for i in range(len(x)):  # the label of the lower of two close points goes below it, others above
            right = pos[i][0] > 0.75  # near the right edge: label on the left
            near = [j for j in range(len(x)) if j != i and abs(pos[j][0] - pos[i][0]) < 0.15
                    and abs(pos[j][1] - pos[i][1]) < 0.15]
            below = any(pos[j][1] > pos[i][1] for j in near)
            ax.annotate(str(sub.loc[i, "run"]), (x[i], y[i]), fontsize=7, textcoords="offset points",
                        xytext=(-4 if right else 4, -11 if below else 5),
                        ha="right" if right else "left",  # a leader line: a moved label still shows its point
                        arrowprops={"arrowstyle": "-", "color": "0.55", "lw": 0.5, "shrinkA": 1, "shrinkB": 3})
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(FixedFormatter(_tick_labels(ticks, fmt)))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6, steps=NICE_STEPS))
        if len(front) > 1:
            ax.legend(fontsize=7, loc="best")
        ax.tick_params(labelsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(q.replace("_", " "))
        ax.set_title(f"{task}: {q.replace('_', ' ')} vs {xlabel}", fontsize=9)
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    for ax in fig.axes:
        _part_labels(fig, ax)
    return fig


def _part_labels(fig, ax, step: float = 9.0, tries: int = 12) -> None:
    """Move each point label that overlaps an earlier label, a point or the legend away from it,
    alternately down and up in steps of ``step`` points, until it overlaps none (or ``tries`` ran out)."""
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    renderer = fig.canvas.get_renderer()
    legend = ax.get_legend()
    placed = [legend.get_window_extent(renderer)] if legend else []
    r = 3.0 * fig.dpi / 72  # a marker's radius in pixels
    placed += [Bbox.from_extents(u - r, v - r, u + r, v + r)
               for u, v in ax.transData.transform(ax.collections[0].get_offsets())]
    for text in ax.texts:
        x0, y0 = text.xyann
        for k in range(tries + 1):
            box = Text.get_window_extent(text, renderer)  # the words, not the leader line
            if not any(box.overlaps(b) for b in placed):
                break
            shift = step * (k // 2 + 1) * (-1 if k % 2 == 0 else 1)
            text.xyann = (x0, y0 + shift)
        placed.append(Text.get_window_extent(text, renderer))


def plot_pareto(df: pd.DataFrame, xcol: str, xlabel: str, fmt) -> bytes | None:
    """A PNG (bytes) of :func:`pareto_figure`, or None when nothing is plotted."""
    fig = pareto_figure(df, xcol, xlabel, fmt)
    if fig is None:
        return None
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()


def to_markdown(df: pd.DataFrame) -> str:
    """The headline columns in human units; a figure that does not apply is an empty cell."""
    shown = humanize(df[[c for c in HEADLINE if c in df.columns and c != "dir"]])
    try:
        return shown.to_markdown(index=False, disable_numparse=True)
    except ImportError:  # tabulate missing
        return shown.to_string(index=False)


def write_report(df: pd.DataFrame, out: str | os.PathLike) -> list[Path]:
    """Write ``report.csv``, ``report.md`` and the plots that have points into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "report.csv", df.to_csv(index=False))
    atomic_write_text(out / "report.md", to_markdown(df) + "\n")
    written = [out / "report.csv", out / "report.md"]
    for fname, col, label, fmt in PLOTS:
        png = plot_pareto(df, col, label, fmt)
        if png:
            atomic_write_bytes(out / fname, png)
            written.append(out / fname)
    return written
