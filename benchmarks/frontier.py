"""The accuracy/speed frontier of compression recipes from ``compress_levels.py`` runs: test drop
(points, mean +- sd over seeds) against the interleaved latency ratio to the float32 TFLite file,
one curve per method (its recipes in order, e.g. one recipe per budget).

    python benchmarks/frontier.py --rows RUN1/rows.csv RUN2/rows.csv --task sst2 \
        --curve "heads, FFN, blocks:aggressive,extreme-nowidth" --curve "+ residual width:aggressive-width,extreme" \
        --out docs/compress/frontier_sst2.png

Rows of one (task, seed) may come from several runs (each run times its own files against its own
float32 file; the ratios, not the milliseconds, are compared). Prints the table it plots.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compress_levels import per_seed  # noqa: E402


def frontier_table(rows: pd.DataFrame, task: str) -> pd.DataFrame:
    """Per recipe: seeds, test drop, validation drop, speed-up and size ratio (mean and sd)."""
    parts = []
    for _, run in rows.groupby("run"):  # each run's ratios against its own float32 file
        parts.append(per_seed(run))
    df = pd.concat(parts, ignore_index=True)
    df = df[(df["task_name"] == task) & (df["name"] != "float32 TFLite") & df["faster"].notna()]
    agg = df.groupby("name").agg(seeds=("seed", "nunique"), drop=("drop", "mean"), drop_sd=("drop", "std"),
                                 val_drop=("val_drop", "mean"), faster=("faster", "mean"),
                                 faster_sd=("faster", "std"), smaller=("smaller", "mean"),
                                 gzip_smaller=("gzip_smaller", "mean"))
    return agg.sort_values("faster")


def plot(table: pd.DataFrame, curves: list[tuple[str, list[str]]], path: Path, title: str) -> None:
    points = [(label, table.reindex([n for n in names if n in table.index])) for label, names in curves]
    plot_curves(points, "faster", "drop", path, title, xlabel="lower p50 latency (x, interleaved, 64 tokens)",
                ylabel="test accuracy drop (points)", hline=0.5)


def plot_curves(curves: list, x: str, y: str, path: Path, title: str, xlabel: str, ylabel: str,
                hline: float | None = None, vline: float | None = None) -> None:
    """One line per ``(label, frame)`` of ``curves``: the frame's ``x`` against ``y`` (with ``X_sd``
    and ``Y_sd`` as error bars where present), each point annotated with its index."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, t in curves:
        err = {k: t[f"{c}_sd"].fillna(0) if f"{c}_sd" in t else None for k, c in (("xerr", x), ("yerr", y))}
        ax.errorbar(t[x], t[y], marker="o", capsize=3, label=label, **err)
        for name, r in t.iterrows():
            ax.annotate(name, (r[x], r[y]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    if hline is not None:
        ax.axhline(hline, color="grey", linestyle=":", linewidth=1)
    if vline is not None:
        ax.axvline(vline, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", nargs="+", required=True, help="rows.csv files of compress_levels.py runs")
    p.add_argument("--task", default="sst2")
    p.add_argument("--curve", action="append", default=[], metavar="LABEL:RECIPE,RECIPE",
                   help="one method's recipes in order (repeatable)")
    p.add_argument("--out", required=True, help="the plot (.png)")
    args = p.parse_args(argv)
    rows = pd.concat([pd.read_csv(f).assign(run=i) for i, f in enumerate(args.rows)], ignore_index=True)
    table = frontier_table(rows, args.task)
    curves = []
    for spec in args.curve:
        label, _, names = spec.rpartition(":")
        curves.append((label or names, [n for n in names.split(",") if n]))
    seeds = ", ".join(str(s) for s in sorted(rows["seed"].unique()))
    plot(table, curves, Path(args.out), f"{args.task}: test drop vs speed-up (seeds {seeds})")
    print(table.round(3).to_markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
