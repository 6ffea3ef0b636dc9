"""The accuracy/speed frontier of a compressed pretrained encoder: accuracy kept (% of the fine-tuned
model's test accuracy) against the interleaved latency ratio to its float32 TFLite file, one curve
per method.

Input: the ``--out`` folder of ``benchmarks/pretrained.py --protocol`` (``models/minilm``, its
``exports/minilm/model.tflite`` and ``data/{train,val,test,unlabeled}.tsv``). For every recipe of
``--recipes`` (one curve point each, e.g. ``pretrained-aggressive`` at several FLOPs fractions) and
compression seed, ``rmcompress compress`` of the fine-tuned model, validated on the validation
sentences and distilled on the unlabeled texts as ``pretrained.py`` does (``--jobs`` at a time);
with ``--int4``, each compressed model re-quantised with 4-bit weights (``length`` buckets, then
``quantise: {mode: int4}``: the 4-bit curve); with ``--plain``, recipes without pruning run on the
fine-tuned model itself (e.g. ``light``: dynamic-range int8 only). Every file is scored on the
validation and test sentences, then all of them and the float32 file are timed interleaved in one
process (``--rounds`` rounds of ``--runs`` calls, batch 1, one thread, random ids at the model's
length; median of the rounds). Writes ``OUT/rows.csv``, ``OUT/summary.md`` (the table, the CPU and
its AVX-512/VNNI flags) and ``OUT/frontier.png``; a finished compression (its ``report.json``) is
reused. ``--jobs`` compressions share the cores (``compress_seconds`` then includes the contention;
the files are timed after all of them finished).

    python benchmarks/pretrained_frontier.py --bench BENCH --out OUT --seeds 0 --jobs 3 --int4 \\
        --recipes benchmarks/recipes/pretrained-aggressive-40pct.yaml,pretrained-aggressive,\\
benchmarks/recipes/pretrained-aggressive-6pct.yaml --plain light
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchmarks.compress_levels import cpu  # noqa: E402
from benchmarks.frontier import plot_curves  # noqa: E402
from benchmarks.remeasure_latency import interleaved_p50  # noqa: E402

#: the 4-bit re-quantisation of a compressed model (its own length buckets are rebuilt)
INT4_RECIPE = {"name": "int4", "description": "4-bit weights of the compressed model",
               "passes": [{"length": {"mode": "buckets"}}, {"quantise": {"mode": "int4"}}]}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def stem(recipe: str) -> str:
    return Path(recipe).stem if recipe.endswith((".yaml", ".yml")) else recipe


def compress(model: Path, recipe: str, dest: Path, bench: Path, seed: int, unlabeled: bool) -> dict:
    """``rmcompress compress`` into ``dest`` (reused when its ``report.json`` exists); its report."""
    if not (dest / "report.json").is_file():
        cmd = [sys.executable, "-m", "rmcompress", "compress", "--model", str(model), "--recipe", recipe,
               "--data", str(bench / "data" / "train.tsv"), "--val-data", str(bench / "data" / "val.tsv"),
               "--seed", str(seed), "--out", str(dest), "--overwrite", "--latency-runs", "0", "--quiet"]
        if unlabeled:
            cmd += ["--unlabeled", str(bench / "data" / "unlabeled.tsv")]
        t = time.time()
        log(f"{dest.name}: compress started")
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path})
        if r.returncode != 0:
            raise SystemExit(f"{dest.name}: compress failed (rc {r.returncode}): {r.stderr.strip()[-400:]}")
        log(f"{dest.name}: compressed in {time.time() - t:.0f} s")
    return json.loads((dest / "report.json").read_text())


def scores(tflite: Path, bench: Path) -> dict:
    from rmcompress.evaluation.evaluate import evaluate

    out = {}
    for split in ("val", "test"):
        ev = evaluate(tflite, bench / "data" / f"{split}.tsv", latency_runs=0)
        out[f"{split}_accuracy"] = ev["accuracy"]
    flat = tflite.read_bytes()
    out.update(size_bytes=len(flat), gzip_bytes=len(gzip.compress(flat)), flops=ev.get("flops"),
               params=ev.get("params"))
    return out


def plot(df, path: Path, title: str) -> None:
    df = df.assign(method=df["method"].replace("float32", "no pruning"))  # the no-pruning curve starts at it
    agg = df.groupby(["method", "recipe"], sort=False).agg(
        kept=("kept", "mean"), kept_sd=("kept", "std"), faster=("faster", "mean"), faster_sd=("faster", "std"))
    curves = [(method, t.droplevel(0).sort_values("faster")) for method, t in agg.groupby(level=0, sort=False)]
    plot_curves(curves, "faster", "kept", path, title, hline=99, vline=20,
                xlabel="lower p50 latency than float32 (x, interleaved, batch 1, one thread)",
                ylabel="test accuracy kept (% of the fine-tuned model)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bench", required=True, help="the --out folder of benchmarks/pretrained.py --protocol")
    p.add_argument("--out", required=True)
    p.add_argument("--recipes", default="pretrained-aggressive",
                   help="comma-separated recipes (names or YAML files) that prune the fine-tuned model")
    p.add_argument("--plain", default="", help="comma-separated recipes without pruning (one point each)")
    p.add_argument("--seeds", default="0", help="compression seeds")
    p.add_argument("--jobs", type=int, default=1, help="compressions at a time")
    p.add_argument("--int4", action="store_true", help="also re-quantise every pruned model with 4-bit weights")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--runs", type=int, default=200)
    args = p.parse_args(argv)

    import pandas as pd
    import yaml

    from rmcompress import _quiet

    _quiet.silence()
    bench, out = Path(args.bench).resolve(), Path(args.out).resolve()
    model, f32 = bench / "models" / "minilm", bench / "exports" / "minilm" / "model.tflite"
    data = [bench / "data" / f"{k}.tsv" for k in ("train", "val", "test", "unlabeled")]
    for need in (model / "model.keras", f32, *data):
        if not need.exists():
            raise SystemExit(f"{need}: missing; run benchmarks/pretrained.py --protocol --out {bench} first")
    out.mkdir(parents=True, exist_ok=True)
    int4 = out / "int4.yaml"
    int4.write_text(yaml.safe_dump(INT4_RECIPE, sort_keys=False))
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    pruned = [r.strip() for r in args.recipes.split(",") if r.strip()]
    plain = [r.strip() for r in args.plain.split(",") if r.strip()]

    jobs = [(stem(r), r, model, out / f"{stem(r)}", 0, False) for r in plain]  # quick ones first
    jobs += [(stem(r), r, model, out / f"{stem(r)}-s{s}", s, True) for r in pruned for s in seeds]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        reports = list(pool.map(lambda j: compress(j[2], j[1], j[3], bench, j[4], j[5]), jobs))
    rows = [dict(method=("pruned, int8 weights" if j[5] else "no pruning"), recipe=j[0], seed=j[4],
                 dir=j[3], compress_seconds=rep.get("seconds")) for j, rep in zip(jobs, reports)]
    if args.int4:
        four = [(r["recipe"], r["dir"] / "model", r["dir"].with_name(r["dir"].name + "-int4"), r["seed"])
                for r in rows if r["method"].startswith("pruned")]
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            list(pool.map(lambda j: compress(j[1], str(int4), j[2], bench, j[3], False), four))
        rows += [dict(method="pruned, 4-bit weights", recipe=r, seed=s, dir=d) for r, _, d, s in four]

    files = {"float32": f32}
    for r in rows:
        r["tflite"] = next(iter(sorted(Path(r["dir"]).glob("*.tflite"))))
        files[str(r["dir"])] = r["tflite"]
    base = dict(method="float32", recipe="fine-tuned", seed=0, dir=bench / "exports" / "minilm", tflite=f32)
    rows.insert(0, base)
    for r in rows:
        r.update(scores(Path(r["tflite"]), bench))
        log(f"{Path(r['dir']).name}: val {r['val_accuracy']:.4f} test {r['test_accuracy']:.4f}")
    log("timing every file interleaved")
    p50, _ = interleaved_p50(files, args.rounds, args.runs)
    ref_acc, ref_ms, ref_size = base["test_accuracy"], p50["float32"], f32.stat().st_size
    for r in rows:
        ms = p50["float32" if r is base else str(r["dir"])]
        r.update(p50_ms=ms, faster=ref_ms / ms, smaller=ref_size / r["size_bytes"],
                 gzip_smaller=base["gzip_bytes"] / r["gzip_bytes"],
                 kept=100 * r["test_accuracy"] / ref_acc, val_kept=100 * r["val_accuracy"] / base["val_accuracy"])
    df = pd.DataFrame(rows).drop(columns=["dir"]).assign(tflite=lambda d: d["tflite"].map(lambda f: f"{Path(f).parent.name}/{Path(f).name}"))
    df.to_csv(out / "rows.csv", index=False)
    agg = df.groupby(["method", "recipe"], sort=False).agg(
        seeds=("seed", "nunique"), val=("val_accuracy", "mean"), test=("test_accuracy", "mean"),
        kept=("kept", "mean"), kept_sd=("kept", "std"), flops=("flops", "mean"),
        mb=("size_bytes", lambda v: v.mean() / 1e6), smaller=("smaller", "mean"), gz=("gzip_smaller", "mean"),
        faster=("faster", "mean"), faster_sd=("faster", "std"))
    lines = [f"CPU: {cpu()}; {args.rounds} interleaved rounds of {args.runs} runs, batch 1, one thread; "
             f"float32 p50 {ref_ms:.3f} ms; {time.strftime('%Y-%m-%d')}", "",
             "| method | recipe | seeds | validation | test (kept) | FLOPs | TFLite | smaller (gzipped) | faster |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for (method, recipe), a in agg.iterrows():
        sd = f" ± {a.kept_sd:.1f}" if a.seeds > 1 else ""
        fsd = f" ± {a.faster_sd:.1f}" if a.seeds > 1 else ""
        lines.append(f"| {method} | {recipe} | {int(a.seeds)} | {a.val:.4f} | {a.test:.4f} ({a.kept:.1f}{sd}%) | "
                     f"{a.flops / 1e6:.0f} M | {a.mb:.2f} MB | {a.smaller:.1f}x ({a.gz:.1f}x) | "
                     f"{a.faster:.1f}x{fsd} |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(df, out / "frontier.png", "MiniLM-L6 on SST-2 (test): accuracy kept against speed-up")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
