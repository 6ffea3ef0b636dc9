"""Benchmark: every compression level against the dense float32 TFLite model and the by-hand routes.

For each task (SST-2 pointwise with its own disjoint validation split; HH-RLHF harmless pairs) and
seed: train the dense transformer (2 blocks, width 64, FFN 128), then

- by-hand routes on that model (what a tfmot/TFLite user does today): float32 TFLite, dynamic-range
  TFLite, full int8 PTQ (300 calibration rows), tfmot 80% magnitude pruning + dynamic range, and
  ``tfmot.quantization.keras.quantize_model`` (QAT) straight on the model;
- the recipe levels (``lossless``, ``light``, ``medium``, ``aggressive``) through
  ``rmcompress.compression.pipeline.compress``. ``medium``/``aggressive`` start with the ``budget`` pass
  (complexity-aware training);
- ``int8-ours``: fuse + full int8 with slow-in-int8 ops kept float (no length buckets), the answer to
  "full int8 of the dense model is slower than float32"; its op-by-op timing next to plain int8 and
  float32 is printed and saved (``op_profile_*.csv``).

Every row: validation quality of the TFLite artifact, raw/gzip bytes, LiteRT p50 latency (batch 1,
one thread) at the maximum length and, with length buckets, at the validation texts' real lengths.
Seeds > 1 give mean and sd. Writes ``OUT/rows.csv``, ``OUT/summary.md``, ``OUT/report.csv|md``,
``OUT/pareto_size.png``, ``OUT/pareto_latency.png``.

    PYTHONPATH=. python benchmarks/compress_levels.py --sst-examples 15000 --epochs 2 --seeds 0
"""
from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / ".." / "shared" / "data").resolve()
LEVELS = ["lossless", "light", "medium", "aggressive"]
INT8_OURS = {"name": "int8-ours", "passes": ["fuse", {"quantise": {"mode": "int8", "keep_float_ops": "auto"}}]}


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load_task(task: str, args):
    from rmcompress.data.loaders import load_data

    if task == "sst2":
        d = load_data(Path(args.sst), "pointwise")
        if args.sst_examples and len(d) > args.sst_examples:
            d = d.subset(np.sort(np.random.RandomState(0).choice(len(d), args.sst_examples, replace=False)))
        return d
    return load_data(Path(args.hh), "pairwise")


def train_dense(task, data, seed, out, args):
    from rmcompress.training.trainer import TrainConfig, train

    cfg = TrainConfig.from_flat(task="pointwise" if task == "sst2" else "pairwise", arch="transformer", width=64,
                      depth=2, heads=4, ffn=128, epochs=args.epochs, seed=seed,
                      split_mode="disjoint" if task == "sst2" else "random",
                      seq_len=64 if task == "sst2" else args.hh_seq_len)
    return train(data, cfg, out, overwrite=True, verbose=0)


def tflite_row(name, flat, state, runs, quality_fn):
    from rmcompress.evaluation.latency import measure_latency
    from rmcompress.runtime.tflite import TFLiteRunner

    runner = TFLiteRunner(flat)
    row = {"name": name, **quality_fn(runner.score), "size_bytes": len(flat),
           "size_gzip_bytes": len(gzip.compress(flat, 9, mtime=0))}
    if runs:
        row["latency_ms_p50"] = measure_latency(flat, state.val_ids(256), runs=runs)["latency_ms_p50"]
    return row


def by_hand(bundle, state, runs):
    """The hand-built routes (tfmot and TFLite calls without recipes), on the same model and validation split."""
    from rmcompress.compression.pipeline import _quality, _scores
    from rmcompress.compression.prune import prune
    from rmcompress.runtime.tflite import convert

    def quality(score):
        return _quality(state.task, state.loss, _scores(score, state.val), state.val)

    cal = state.calibration_ids(300)
    rows = []
    for name, mode in (("float32 TFLite", "none"), ("dynamic-range TFLite", "dynamic"),
                       ("full int8 PTQ (300 cal.)", "int8")):
        t = time.time()
        rows.append(tflite_row(name, convert(bundle.model, mode, cal), state, runs, quality))
        log(f"  {name}: {time.time() - t:.0f}s")
    t = time.time()
    pruned, note = prune(bundle.model, state, sparsity=0.8, steps=200, learning_rate=1e-4)
    rows.append(tflite_row("tfmot 80% pruning + dynamic", convert(pruned, "dynamic"), state, runs, quality))
    log(f"  pruning: {time.time() - t:.0f}s (sparsity {note['overall_sparsity']:.2f})")
    try:
        import tensorflow_model_optimization as tfmot

        tfmot.quantization.keras.quantize_model(bundle.model)
        rows.append({"name": "tfmot quantize_model (QAT)", "note": "ran"})
    except Exception as e:  # the point of the row: it does not work on these models
        rows.append({"name": "tfmot quantize_model (QAT)", "note": f"fails: {type(e).__name__}: "
                                                                   f"{str(e).splitlines()[0][:120]}"})
    return rows


def op_profiles(bundle, state, out_dir, task):
    """Per-op timing of float32, plain int8 and our int8, summarised by op type."""
    from rmcompress.compression.fuse import fuse
    from rmcompress.compression.quantise import build_tflite
    from rmcompress.evaluation.op_profile import profile_ops, summarise
    from rmcompress.runtime.tflite import convert

    cal = state.calibration_ids(300)
    fused, _ = fuse(bundle.model, state.val_ids(64))
    ours, note = build_tflite(fused, "int8", cal, keep_float_ops="auto")
    models = {"float32": convert(bundle.model), "int8-plain": convert(bundle.model, "int8", cal), "int8-ours": ours}
    ids = state.val_ids(1)
    tables = {}
    for name, flat in models.items():
        tab = profile_ops(flat, ids, runs=100)
        tab.to_csv(out_dir / f"op_profile_{task}_{name}.csv", index=False)
        s = summarise(tab)
        tables[name] = s
    merged = None
    for name, s in tables.items():
        g = s.groupby("op")["us"].sum().rename(f"{name}_us")
        merged = g.to_frame() if merged is None else merged.join(g, how="outer")
    merged = merged.fillna(0.0).sort_values("int8-plain_us", ascending=False)
    merged.loc["TOTAL (sum of ops)"] = merged.sum()
    return merged.round(1), note.get("kept_float_ops", [])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", default="sst2,hh")
    p.add_argument("--levels", default=",".join(LEVELS))
    p.add_argument("--sst", default=str(DATA / "sst2" / "train.tsv"))
    p.add_argument("--hh", default=str(DATA / "hh-rlhf-harmless" / "pairs.jsonl.gz"))
    p.add_argument("--sst-examples", type=int, default=0, help="SST-2 subset size (0: all 67k rows)")
    p.add_argument("--hh-seq-len", type=int, default=128)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--latency-runs", type=int, default=200)
    p.add_argument("--no-by-hand", action="store_true")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "compress_levels"))
    p.add_argument("--table-from", metavar="ROWS_CSV", help="no run: print the README table of an earlier rows.csv")
    args = p.parse_args(argv)
    if args.table_from:
        print(readme_table(pd.read_csv(args.table_from)))
        return 0
    from rmcompress import _quiet

    _quiet.silence()
    from rmcompress.compression.pipeline import compress
    from rmcompress.compression.state import prepare_state
    from rmcompress.evaluation.report import write_report

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    t0 = time.time()
    for task in args.tasks.split(","):
        data = load_task(task, args)
        log(f"{task}: {len(data)} rows")
        for seed in seeds:
            t = time.time()
            res = train_dense(task, data, seed, out / "work" / f"{task}-s{seed}" / "dense", args)
            log(f"{task} seed {seed}: dense model trained in {time.time() - t:.0f}s ({res.report})")
            bundle = res.bundle
            state = prepare_state(bundle, data)
            common = {"task_name": task, "seed": seed, "n_train": len(state.train), "n_examples": len(state.val)}
            if not args.no_by_hand:
                for r in by_hand(bundle, state, args.latency_runs):
                    rows.append({**common, "kind": "by hand", **r})
            recipes = [*args.levels.split(","), INT8_OURS]
            for recipe in recipes:
                name = recipe if isinstance(recipe, str) else recipe["name"]
                t = time.time()
                try:
                    r = compress(res.out_dir, recipe, data, out / "work" / f"{task}-s{seed}" / name, overwrite=True,
                                 latency_runs=args.latency_runs)
                except Exception as e:  # a failing level is a result too
                    rows.append({**common, "kind": "recipe", "name": name, "note": f"fails: {e}"})
                    log(f"  {name}: FAILED {e}")
                    continue
                log(f"  {name}: {time.time() - t:.0f}s")
                keep = {k: v for k, v in r.items() if not isinstance(v, (dict, list))}
                rows.append({**common, "kind": "recipe", **keep})
            if seed == seeds[0]:
                prof, kept = op_profiles(bundle, state, out, task)
                (out / f"op_profile_{task}.md").write_text(
                    f"kept float by int8-ours (auto): {', '.join(kept)}\n\n" + prof.to_markdown() + "\n")
                log(f"{task} op profile:\n{prof.to_string()}")
    df = pd.DataFrame(rows)
    df.to_csv(out / "rows.csv", index=False)
    summary = summarise_rows(df)
    text = summary.to_markdown(index=False, floatfmt=".4g")
    meta = {"tasks": args.tasks, "seeds": seeds, "epochs": args.epochs, "sst_examples": args.sst_examples,
            "hh_seq_len": args.hh_seq_len,
            "wall_seconds": round(time.time() - t0)}
    (out / "summary.md").write_text(f"{json.dumps(meta)}\n\n{text}\n")
    first = df[df["seed"] == seeds[0]].copy()
    first["task"] = np.where(first["task_name"] == "sst2", "pointwise", "pairwise")
    write_report(first[first["size_bytes"].notna()], out)
    print(text)
    print(json.dumps(meta))
    table = readme_table(df)
    (out / "readme_table.md").write_text(table + "\n")
    print(table)
    shutil.rmtree(out / "work" / "tmp", ignore_errors=True)
    return 0


def summarise_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Mean (and sd over seeds when > 1) per task and row name, with ratios to float32 TFLite."""
    q = "quality"
    df = df.copy()
    df[q] = df["accuracy"] if "accuracy" in df else np.nan
    if "pairwise_accuracy" in df:
        df[q] = df[q].fillna(df["pairwise_accuracy"])
    cols = [c for c in (q, "size_bytes", "size_gzip_bytes", "latency_ms_p50", "latency_ms_p50_real_length")
            if c in df]
    out = []
    for (task, name), g in df.groupby(["task_name", "name"], sort=False):
        row = {"task": task, "name": name, "kind": g["kind"].iloc[0], "seeds": len(g)}
        for c in cols:
            v = g[c].astype(float)
            row[c] = v.mean()
            if len(g) > 1:
                row[f"{c}_sd"] = v.std(ddof=1)
        if "note" in g and g["note"].notna().any():
            row["note"] = g["note"].dropna().iloc[0]
        out.append(row)
    s = pd.DataFrame(out)
    for task in s["task"].unique():
        base = s[(s["task"] == task) & (s["name"] == "float32 TFLite")]
        if len(base):
            b = base.iloc[0]
            m = s["task"] == task
            s.loc[m, "size_x"] = b["size_bytes"] / s.loc[m, "size_bytes"]
            s.loc[m, "gzip_x"] = b["size_gzip_bytes"] / s.loc[m, "size_gzip_bytes"]
            if "latency_ms_p50" in s:
                s.loc[m, "speed_x"] = b["latency_ms_p50"] / s.loc[m, "latency_ms_p50"]
                if "latency_ms_p50_real_length" in s:
                    s.loc[m, "speed_x_real_len"] = b["latency_ms_p50"] / s.loc[m, "latency_ms_p50_real_length"]
            s.loc[m, "drop_points"] = 100 * (b[q] - s.loc[m, q])
    return s


def readme_table(df: pd.DataFrame) -> str:
    """Per task and row: quality and its drop against the same seed's float32 TFLite (mean +- sd over
    seeds), raw and gzip size with the ratios, p50 latency at the maximum length and at the texts'
    real lengths with the speed-ups (ratios per seed, then averaged)."""
    df = df.copy()
    df["quality"] = df["accuracy"] if "accuracy" in df else np.nan
    if "pairwise_accuracy" in df:
        df["quality"] = df["quality"].fillna(df["pairwise_accuracy"])
    if "latency_ms_p50_real_length" not in df:
        df["latency_ms_p50_real_length"] = np.nan
    lines = []
    for task, t in df.groupby("task_name", sort=False):
        base = t[t["name"] == "float32 TFLite"].set_index("seed")
        lines += [f"**{task}**", "",
                  "| route | seeds | quality | drop (points) | raw size | smaller | gzip smaller | p50 | faster | faster at real length |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for name, g in t.groupby("name", sort=False):
            if g["size_bytes"].isna().all():
                note = g["note"].dropna().iloc[0] if "note" in g and g["note"].notna().any() else ""
                lines.append(f"| {name} | {len(g)} | {note} | | | | | | | |")
                continue
            b = base.reindex(g["seed"])

            def ms(v, fmt="{:.3f}"):
                v = np.asarray(v, float)
                v = v[np.isfinite(v)]
                if not len(v):
                    return ""
                return fmt.format(v.mean()) + (f" ± {fmt.format(v.std(ddof=1))}" if len(v) > 1 else "")

            drop = 100 * (b["quality"].to_numpy() - g["quality"].to_numpy())
            size_x = b["size_bytes"].to_numpy() / g["size_bytes"].to_numpy()
            gz_x = b["size_gzip_bytes"].to_numpy() / g["size_gzip_bytes"].to_numpy()
            sp = b["latency_ms_p50"].to_numpy() / g["latency_ms_p50"].to_numpy()
            sp_real = b["latency_ms_p50"].to_numpy() / g["latency_ms_p50_real_length"].to_numpy()
            lines.append(f"| {name} | {len(g)} | {ms(g['quality'])} | {ms(drop, '{:.2f}')} | "
                         f"{g['size_bytes'].mean() / 1e3:.0f} kB | {ms(size_x, '{:.1f}')}x | {ms(gz_x, '{:.1f}')}x | "
                         f"{g['latency_ms_p50'].mean():.3f} ms | {ms(sp, '{:.2f}')}x | "
                         f"{(ms(sp_real, '{:.1f}') + 'x') if np.isfinite(sp_real).any() else ''} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
