"""`rmcompress report`'s table and plots: only TFLite files with a quality figure are plotted, each
point where the table puts it and labelled by its run directory, axes in human units with ticks
that do not overlap, no panel without points, and blank cells where a figure does not apply."""
from __future__ import annotations

import json
from itertools import combinations

import matplotlib
import pandas as pd
import pytest

from rmcompress.evaluation.report import PLOTS, gather, pareto_figure, plotted_points, write_report

matplotlib.use("Agg")


def _write(d, report, metadata=None):
    d.mkdir()
    (d / "report.json").write_text(json.dumps(report))
    if metadata is not None:
        (d / "metadata.json").write_text(json.dumps(metadata))
    return d


def _compress(d, src, recipe, quantize, acc, size, latency, task="pointwise", source=None):
    q = "accuracy" if task == "pointwise" else "pairwise_accuracy"
    report = {"name": recipe, "recipe": recipe, "task": task, "kind": "tflite", "quantize": quantize,
              "tflite_precision": quantize, "savedmodel_precision": "float32", q: acc, "size_bytes": size,
              "size_gzip_bytes": size // 2, "n_examples": 300, "source_model": str(src),
              f"source_{q}": source[0], "source_size_bytes": source[1], "source_size_gzip_bytes": source[1] // 2}
    if latency is not None:
        report.update(latency_ms_p50=latency, source_latency_ms_p50=source[2])
    return _write(d, report, {"task": task, "quantize": quantize, "tflite_precision": quantize,
                              "savedmodel_precision": "float32", "source_model": None})


@pytest.fixture
def runs(tmp_path):
    """Two model directories, their float and int8 exports and four compress runs (two with the
    same recipe); the pairwise runs have no latency."""
    rm = _write(tmp_path / "rm", {"stage": "train", "task": "pointwise", "accuracy": 0.8433, "auc": 0.91,
                                  "n_examples": 300, "size_bytes": 104894, "flops": 1421537, "params": 22625})
    source = (0.8433, 133408, 0.0732)
    _compress(tmp_path / "rm-light", rm, "light", "dynamic", 0.85, 40210, 0.051, source=source)
    _compress(tmp_path / "rm-medium", rm, "medium", "int8", 0.91, 36568, 0.0271, source=source)
    _compress(tmp_path / "rm-medium-2", rm, "medium", "int8", 0.88, 30150, 0.0302, source=source)
    pairs = _write(tmp_path / "pairs", {"stage": "train", "task": "pairwise", "pairwise_accuracy": 0.62,
                                        "n_examples": 200, "size_bytes": 255000})
    export = {"stage": "export", "task": "pairwise", "kind": "tflite", "formats": ["savedmodel", "tflite"],
              "parity_max_abs_diff": 3e-7, "size_bytes": 151000, "savedmodel_size_bytes": 800000}
    _write(tmp_path / "pairs-export", {**export, "quantize": "none", "tflite_precision": "float32"},
           {"task": "pairwise", "source_model": str(pairs), "quantize": "none"})
    _write(tmp_path / "pairs-int8", {**export, "quantize": "int8", "tflite_precision": "int8", "size_bytes": 52000},
           {"task": "pairwise", "source_model": str(pairs), "quantize": "int8"})
    _compress(tmp_path / "pairs-light", pairs, "light", "dynamic", 0.60, 122000, None, task="pairwise",
              source=(0.62, 151500, None))
    names = ["rm", "rm-light", "rm-medium", "rm-medium-2", "pairs", "pairs-export", "pairs-int8", "pairs-light"]
    return [tmp_path / n for n in names]


def test_gather_kinds_sources_and_labels(runs):
    df = gather(runs).set_index(["run", "kind"])
    assert df.loc[("rm", "keras"), "size_bytes"] == 104894  # model.keras, kept in the table ...
    float_rm = df.loc[("rm", "tflite")]  # ... and the float32 TFLite the compress runs measured, once
    assert float_rm["size_bytes"] == 133408 and float_rm["accuracy"] == 0.8433
    assert float_rm["figures_from"].endswith("rm-light") and float_rm["quantize"] == "none"
    # the float export takes its model directory's quality; the int8 export has none of its own
    assert df.loc[("pairs-export", "tflite"), "pairwise_accuracy"] == 0.62
    assert df.loc[("pairs-export", "tflite"), "figures_from"].endswith("pairs")
    assert pd.isna(df.loc[("pairs-int8", "tflite"), "pairwise_accuracy"])
    # the pairwise source is the gathered float export: no second row for it
    assert len(df) == len(runs) + 1 and ("pairs", "tflite") not in df.index
    assert df.loc[("rm-medium", "tflite"), "name"] == df.loc[("rm-medium-2", "tflite"), "name"] == "medium"


def _drawn_tick_labels(fig, ax):
    fig.canvas.draw()
    return [t for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]


def _overlaps(fig, labels):
    """Pairs of labels whose words overlap (a point label's leader line is not its words)."""
    from matplotlib.text import Text

    boxes = [Text.get_window_extent(t, fig.canvas.get_renderer()) for t in labels]
    return [(a.get_text(), b.get_text()) for (a, ba), (b, bb) in combinations(zip(labels, boxes), 2)
            if ba.overlaps(bb)]


@pytest.mark.parametrize("plot", PLOTS, ids=[p[0] for p in PLOTS])
def test_plotted_points_labels_and_ticks(runs, plot):
    _, col, label, fmt = plot
    df = gather(runs)
    fig = pareto_figure(df, col, label, fmt)
    expected = {"size_bytes": {"pointwise": {"rm", "rm-light", "rm-medium", "rm-medium-2"},
                               "pairwise": {"pairs-export", "pairs-light"}},
                "latency_ms_p50": {"pointwise": {"rm", "rm-light", "rm-medium", "rm-medium-2"}}}[col]
    assert [ax.get_title().split(":")[0] for ax in fig.axes] == list(expected)  # no panel without points
    units = ("B", "kB", "MB") if col == "size_bytes" else ("µs", "ms")
    for ax, (task, runs_shown) in zip(fig.axes, expected.items()):
        q = "accuracy" if task == "pointwise" else "pairwise_accuracy"
        table = df[(df["task"] == task) & df["run"].isin(runs_shown) & (df["kind"] == "tflite")]
        points = sorted(map(tuple, ax.collections[0].get_offsets().tolist()))
        assert points == sorted(zip(table[col].astype(float), table[q].astype(float)))
        assert {t.get_text() for t in ax.texts} == runs_shown
        ticks = _drawn_tick_labels(fig, ax)
        assert len(ticks) >= 3 and all(t.get_text().split(" ")[-1] in units for t in ticks), \
            [t.get_text() for t in ticks]
        assert not _overlaps(fig, ticks)
        lo, hi = ax.get_xlim()
        assert all(lo < x < hi for x, _ in points)
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_narrow_and_wide_ranges_get_distinct_readable_ticks():
    for sizes in ([100_100, 100_400, 100_700], [900, 2_000_000, 35_000_000]):
        df = pd.DataFrame({"run": [f"r{i}" for i in range(3)], "kind": "tflite", "task": "pairwise",
                           "pairwise_accuracy": [0.6, 0.62, 0.65], "size_bytes": sizes})
        fig = pareto_figure(df, *PLOTS[0][1:])
        texts = [t.get_text() for t in _drawn_tick_labels(fig, fig.axes[0])]
        assert len(set(texts)) == len(texts) >= 3 and not _overlaps(fig, _drawn_tick_labels(fig, fig.axes[0])), texts


def test_labels_of_close_points_do_not_overlap():
    df = pd.DataFrame({"run": ["compressed-run-a", "compressed-run-b", "compressed-run-c", "float-source"],
                       "kind": "tflite", "task": "pointwise", "accuracy": [0.830, 0.831, 0.832, 0.85],
                       "size_bytes": [50_000, 50_400, 50_800, 150_000]})
    fig = pareto_figure(df, *PLOTS[0][1:])
    fig.canvas.draw()
    assert {t.get_text() for t in fig.axes[0].texts} == set(df["run"])
    assert not _overlaps(fig, list(fig.axes[0].texts))
    # each label is tied to its own point by a leader line
    for t in fig.axes[0].texts:
        assert t.arrow_patch is not None and tuple(t.xy) in set(zip(df["size_bytes"], df["accuracy"]))
        assert df.set_index("run").loc[t.get_text(), "size_bytes"] == t.xy[0]


def test_nothing_to_plot_writes_tables_only(runs, tmp_path):
    df = gather([runs[0], runs[6]])  # a model directory and an int8 export without quality
    assert plotted_points(df, "size_bytes") == {}
    written = write_report(df, tmp_path / "out")
    assert sorted(p.name for p in written) == ["report.csv", "report.md"]


def test_markdown_and_csv_leave_missing_figures_blank(runs, tmp_path):
    df = gather(runs)
    write_report(df, tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "nan" not in md.lower() and "None" not in md
    lines = md.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    row = {r[0]: dict(zip(header, r)) for r in
           ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:]) if r[2] == "tflite"}
    assert row["rm-medium"]["size"] == "36.6 kB" and row["rm-medium"]["p50"] == "27.1 µs"
    assert row["rm-medium"]["tflite_precision"] == "int8" and row["rm-medium"]["savedmodel_precision"] == "float32"
    assert row["pairs-int8"]["pair_acc"] == "" and row["pairs-int8"]["p50"] == ""
    csv = pd.read_csv(tmp_path / "out" / "report.csv", keep_default_na=False)
    assert (csv.loc[csv["run"] == "pairs-int8", "pairwise_accuracy"] == "").all()
    assert not (csv == "nan").any().any()
    assert {"pareto_size.png", "pareto_latency.png"} <= {p.name for p in (tmp_path / "out").iterdir()}


def test_a_search_reports_its_chosen_run_and_a_sensitivity_table_is_refused(runs, tmp_path):
    from rmcompress.errors import UsageError

    search = _write(tmp_path / "rm-search", {"stage": "search", "best": {"candidate": "b1-nof-s0-int8"}})
    best = json.loads((runs[2] / "report.json").read_text())
    _write(search / "best", best)
    df = gather([search])
    assert df["run"].iloc[0] == "rm-search" and df["accuracy"].iloc[0] == best["accuracy"]  # then its source
    sens = _write(tmp_path / "rm-sens", {"stage": "sensitivity", "rows": [{"kind": "int8", "target": "dense"}]})
    with pytest.raises(UsageError, match=r"rm-sens/report.json: a sensitivity table \(a row per layer\)"):
        gather([sens])


def test_a_moved_tree_still_finds_the_source_of_a_float_export(tmp_path):
    """The demo writes through a temporary folder: the absolute source path is gone, the relative one holds."""
    tree = tmp_path / "tree"
    tree.mkdir()
    rm = _write(tree / "rm", {"stage": "train", "task": "pointwise", "accuracy": 0.84, "n_examples": 30,
                              "size_bytes": 1000})
    _write(tree / "rm-export", {"stage": "export", "task": "pointwise", "kind": "tflite", "quantize": "none",
                                "size_bytes": 900, "parity_max_abs_diff": 1e-7},
           {"task": "pointwise", "quantize": "none", "source_model": str(tmp_path / "gone" / "rm"),
            "source_model_relative": "../rm"})
    df = gather([rm, tree / "rm-export"]).set_index("run")
    assert df.loc["rm-export", "accuracy"] == 0.84 and df.loc["rm-export", "figures_from"] == str(rm.resolve())
