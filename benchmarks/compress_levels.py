"""Benchmark: every compression level and the recipe search against the dense float32 TFLite model
and the by-hand routes, under the benchmark protocol (docs/benchmarks.md, "Protocol").

Data: each task split once by :func:`benchmarks.common.protocol_splits` into train / validation /
test. For each task (SST-2 pointwise; HH-RLHF harmless pairs) and seed: train the dense transformer
(2 blocks, width 64, FFN 128; the seed is its training seed, the split stays) on train with
validation given, then

- by-hand routes on that model (what a tfmot/TFLite user does today): float32 TFLite, dynamic-range
  TFLite, full int8 PTQ (300 calibration rows), tfmot 80% magnitude pruning + dynamic range, and
  ``tfmot.quantization.keras.quantize_model`` (QAT) straight on the model;
- the recipe levels (``lossless``, ``light``, ``medium``, ``aggressive``) through
  ``rmcompress.compression.pipeline.compress``, their ``data`` section set to the protocol's split
  (fine-tuning and calibration on train; parity and every recipe-internal choice on validation);
- ``int8-ours``: fuse + full int8 with slow-in-int8 ops kept float (no length buckets); its op-by-op
  timing next to plain int8 and float32 is saved for the first seed (``op_profile_*.csv|md``);
- ``search``: :func:`rmcompress.compression.search.search` on the dense model, objective latency,
  ``--max-drop`` points on validation with the margin ``--search-z`` standard errors, ``--search-budget``
  seconds (no run starts after it), the space ``--search-levels`` then ``--search-budgets`` x factorised
  embedding x ``--search-precisions`` (successive halving, ``--search-eta``, 2 rungs, promotion with
  ``--search-promote-z``); its chosen model
  is scored like every row. After the choice every run of the search is also scored on test
  (``test_drop`` in ``search_TASK-sSEED_search.csv``; nothing is chosen on it), and
  ``search_margins.md`` shows what each margin ``z`` in 0, 1, 1.645 chooses on validation from the
  same runs and the test drop of that choice.

``--reuse-rows ROWS_CSV`` re-runs only the search (and the levels of ``--rerun-levels``): the other
routes of each task and seed are taken from that file (an earlier run's ``rows.csv`` on dense models
trained the same way; the dense model's validation accuracy must match), this run times the float32
TFLite file, the re-run levels' files and the search's file interleaved, and each re-run row's p50 is
put on the earlier run's scale (times the earlier float32 p50 / this run's float32 p50), so its
speed-up is the one measured here, and the search and a re-run level are timed in the same rounds.

Every row: quality of the TFLite artifact on **test** (``accuracy`` / ``pairwise_accuracy``; the
validation figure beside it as ``val_quality``), raw/gzip bytes and p50 latency (LiteRT, batch 1,
one thread, at the maximum length, on test texts tokenised by the artifact's tokenizer): all
TFLite files of one task and seed are timed in ``--latency-rounds`` interleaved rounds in one
process, median of the rounds' p50. ``speedup_real_length``: the recipe's own ratio at the
validation texts' real lengths (length buckets). Drops and ratios are per seed against that seed's
float32 TFLite, then mean +- sd over seeds. Resumable: each finished (task, seed) is
``OUT/rows/TASK-sSEED.csv`` (``OUT/rows.csv`` is all of them) and is skipped when the same command
runs again; the dense model, each level and the search are also reused from ``OUT/work``.
Writes ``OUT/rows.csv``, ``OUT/summary.md`` (tables, the search verdict, CPU), ``OUT/report.csv|md``,
``OUT/pareto_*.png`` (first seed), ``OUT/search_TASK-sSEED_pareto.png|csv``.

    PYTHONPATH=. python benchmarks/compress_levels.py --tasks sst2,hh --seeds 0,1,2 --out OUT
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import protocol_splits  # noqa: E402

from rmcompress.config.choices import SEARCH_DEFAULTS  # noqa: E402

LEVELS = ["lossless", "light", "medium", "aggressive"]
INT8_OURS = {"name": "int8-ours", "passes": ["fuse", {"quantise": {"mode": "int8", "keep_float_ops": "auto"}}]}
SEARCH = "search"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cpu() -> str:
    """The CPU model and its AVX-512 / VNNI flags, from /proc/cpuinfo."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "CPU not readable"
    model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), "?")
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
    simd = sorted(f for f in flags if f.startswith("avx512") or "vnni" in f)
    return f"{model} ({', '.join(simd) or 'no AVX-512/VNNI'})"


def train_dense(proto, seed, out, args):
    from rmcompress.models.modeldir import load_model_dir
    from rmcompress.training.trainer import TrainConfig, train

    if (out / "report.json").is_file():
        return load_model_dir(out), json.loads((out / "report.json").read_text())
    task = proto.task
    cfg = TrainConfig.from_flat(task="pointwise" if task == "sst2" else "pairwise", arch="transformer", width=64,
                                depth=2, heads=4, ffn=128, epochs=args.epochs, seed=seed,
                                seq_len=64 if task == "sst2" else args.hh_seq_len)
    res = train(proto.train, cfg, out, overwrite=True, verbose=0, validation=proto.val)
    return res.bundle, res.report


def quality_of(task, loss, score, enc) -> dict:
    from rmcompress.compression.pipeline import _quality, _scores

    return _quality(task, loss, _scores(score, enc), enc)


def by_hand(bundle, state, test_enc, work, baseline_only=False):
    """The hand-built routes (tfmot and TFLite calls without recipes) on the same model; each file is
    written to ``work/by-hand`` (for the interleaved timing) and scored on test and validation.
    ``baseline_only``: the float32 TFLite file alone (every ratio's baseline)."""
    from rmcompress.compression.prune import prune
    from rmcompress.compression.settings import PruneSettings
    from rmcompress.runtime.tflite import TFLiteRunner, convert

    cal = state.calibration_ids(300)
    files = {}
    (work / "by-hand").mkdir(parents=True, exist_ok=True)

    def row(name, flat, slug):
        path = work / "by-hand" / f"{slug}.tflite"
        path.write_bytes(flat)
        files[name] = path
        runner = TFLiteRunner(flat)
        q = quality_of(state.task, state.loss, runner.score, test_enc)
        v = quality_of(state.task, state.loss, runner.score, state.val)
        return {"name": name, "kind": "by hand", **q, "val_quality": next(iter(v.values())),
                "size_bytes": len(flat), "size_gzip_bytes": len(gzip.compress(flat, 9, mtime=0))}

    rows = []
    routes = (("float32 TFLite", "none", "float32"), ("dynamic-range TFLite", "dynamic", "dynamic"),
              ("full int8 PTQ (300 cal.)", "int8", "int8"))
    for name, mode, slug in routes[:1] if baseline_only else routes:
        t = time.time()
        rows.append(row(name, convert(bundle.model, mode, cal), slug))
        log(f"  {name}: {time.time() - t:.0f}s")
    if baseline_only:
        return rows, files
    t = time.time()
    pruned, note = prune(bundle.model, state, PruneSettings.from_mapping(
        {"sparsity": 0.8, "steps": 200, "learning_rate": 1e-4}, "prune", "by hand"))
    rows.append(row("tfmot 80% pruning + dynamic", convert(pruned, "dynamic"), "pruned-dynamic"))
    log(f"  pruning: {time.time() - t:.0f}s (sparsity {note['overall_sparsity']:.2f})")
    try:
        import tensorflow_model_optimization as tfmot

        tfmot.quantization.keras.quantize_model(bundle.model)
        rows.append({"name": "tfmot quantize_model (QAT)", "kind": "by hand", "note": "ran"})
    except Exception as e:  # the point of the row: it does not work on these models
        rows.append({"name": "tfmot quantize_model (QAT)", "kind": "by hand",
                     "note": f"fails: {type(e).__name__}: {str(e).splitlines()[0][:120]}"})
    return rows, files


def artifact_row(name, kind, report, model_dir, proto):
    """A recipe or search result: its TFLite file scored on test; validation figures from its report."""
    from rmcompress.evaluation.evaluate import evaluate

    ev = evaluate(Path(model_dir) / "model.tflite", proto.test, latency_runs=0)
    key = "pairwise_accuracy" if proto.task == "hh" else "accuracy"
    row = {"name": name, "kind": kind, key: ev[key], "val_quality": report.get(key),
           "val_drop_points": report.get("accuracy_drop_points"), "n_val": report.get("n_examples")}
    for k in ("size_bytes", "size_gzip_bytes", "flops", "params", "latency_speedup_real_length", "tflite_precision"):
        if report.get(k) is not None:
            row[k] = report[k]
    row["speedup_real_length"] = row.pop("latency_speedup_real_length", np.nan)
    return row


def level_rows(proto, dense_dir, work, recipes, args):
    """Each recipe of ``recipes`` (level names, YAML files or dicts) compressed and scored on test."""
    from rmcompress.compression.pipeline import compress
    from rmcompress.compression.recipe import Recipe

    rows, files = [], {}
    for recipe in recipes:
        name = recipe if isinstance(recipe, str) else recipe["name"]
        if isinstance(recipe, str) and recipe.endswith((".yaml", ".yml")):  # a recipe file: its own name
            name = Recipe.resolve(recipe).name
        d = work / name
        if not (d / "report.json").is_file():
            spec = {**Recipe.resolve(recipe).to_dict(), "data": dict(proto.data_settings)}
            t = time.time()
            try:
                compress(dense_dir, spec, proto.rest, d, overwrite=True, latency_runs=args.latency_runs)
            except Exception as e:  # a failing level is a result too
                rows.append({"name": name, "kind": "recipe", "note": f"fails: {str(e).splitlines()[0][:200]}"})
                log(f"  {name}: FAILED {e}")
                continue
            log(f"  {name}: {time.time() - t:.0f}s")
        report = json.loads((d / "report.json").read_text())
        if report["n_examples"] != len(proto.val):
            raise SystemExit(f"{name}: validated on {report['n_examples']} rows, the protocol's validation has "
                             f"{len(proto.val)}")
        rows.append(artifact_row(name, "recipe", report, d, proto))
        files[name] = d / "model.tflite"
    return rows, files


def search_row(proto, dense_dir, work, seed, out, args):
    from rmcompress.compression.search import Settings, Space, search

    settings = Settings(max_drop=args.max_drop, objective="latency", eta=args.search_eta, rungs=2,
                        latency_runs=args.latency_runs, time_budget=args.search_budget, margin_z=args.search_z,
                        promote_z=args.search_promote_z,
                        space=Space(budgets=tuple(float(b) for b in args.search_budgets.split(",") if b),
                                    factorise=(True,), sparsity=(0.0,),
                                    precisions=tuple(args.search_precisions.split(",")),
                                    levels=tuple(v for v in args.search_levels.split(",") if v)),
                        data=dict(proto.data_settings))
    d = work / SEARCH
    t = time.time()
    report = search(dense_dir, proto.rest, d, settings, log=lambda m: log(f"  search: {m}"))
    best = report["best"]
    log(f"  search: {time.time() - t:.0f}s, {report['runs']} runs, chose {best['candidate']} "
        f"(validation drop {best['accuracy_drop_points']:.2f})")
    for f in ("pareto.png", "pareto.csv"):
        shutil.copyfile(d / f, out / f"search_{proto.task}-s{seed}_{f}")
    runs = search_runs_on_test(pd.read_csv(d / "search.csv"), proto)
    runs.to_csv(out / f"search_{proto.task}-s{seed}_search.csv", index=False)
    row = artifact_row(SEARCH, "search", json.loads((d / "best" / "report.json").read_text()), d / "best", proto)
    row.update(candidate=best["candidate"], max_drop=args.max_drop, margin_z=args.search_z,
               promote_z=args.search_promote_z,
               drop_bound=best["drop_bound"], val_drop_se_points=best.get("accuracy_drop_se_points"),
               feasible_on_val=report["feasible"], search_runs=report["runs"],
               search_seconds=report["seconds"], stopped_by_time_budget=report["stopped_by_time_budget"])
    return row, d / "best" / "model.tflite"


def search_runs_on_test(runs: pd.DataFrame, proto) -> pd.DataFrame:
    """Every built run of a search scored on test after the choice (``test_quality``, ``test_drop``
    against the source's float32 TFLite that the search exported, points); nothing is chosen on it."""
    from rmcompress.evaluation.evaluate import evaluate
    from rmcompress.export.exporter import export_model

    key = "pairwise_accuracy" if proto.task == "hh" else "accuracy"
    src = Path(runs["dir"].iloc[0]).parents[1] / "source-float32"
    if not (src / "model.tflite").is_file():
        export_model(Path(runs["dir"].iloc[0]).parents[1].parent / "dense", src, formats=("tflite",),
                     latency_runs=0, overwrite=True)
    base = evaluate(src / "model.tflite", proto.test, latency_runs=0)[key]
    q = [evaluate(Path(p) / "model.tflite", proto.test, latency_runs=0)[key] if (Path(p) / "model.tflite").is_file()
         else np.nan for p in runs["dir"]]
    return runs.assign(test_quality=q, test_drop=[100.0 * (base - v) for v in q])


def margin_table(out: Path, max_drop: float, zs=(0.0, 1.0, 1.645)) -> str:
    """What each margin ``z`` chooses from the same search runs (on validation: the bound
    ``drop + z * se`` within the max drop, then the fastest by the search's own speed-up), and the
    test drop of that choice, per task and seed; mean over seeds."""
    from rmcompress.compression.search import Settings, rank_key

    lines = ["| task | z | chosen per seed | validation drop | test drop | within max drop on test | speed-up (search's) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    files = sorted(out.glob("search_*-s*_search.csv"))
    for task in sorted({f.name.split("_")[1].rsplit("-s", 1)[0] for f in files}):
        for z in zs:
            picks = []
            for f in files:
                if f.name.split("_")[1].rsplit("-s", 1)[0] != task:
                    continue
                runs = pd.read_csv(f)
                if "test_drop" not in runs:
                    continue
                runs = runs[np.isfinite(runs["accuracy_drop_points"].astype(float))]
                s = Settings(max_drop=max_drop, objective="latency", margin_z=z)
                rows = runs.to_dict(orient="records")
                picks.append((min(rows, key=lambda r: (*rank_key(r, s), -r["rung"])), max_drop))
            if not picks:
                continue
            md = picks[0][1]
            lines.append(
                f"| {task} | {z:g} | {', '.join(p['candidate'] + ' r' + str(int(p['rung'])) for p, _ in picks)} | "
                f"{_ms([p['accuracy_drop_points'] for p, _ in picks], '{:.2f}')} | "
                f"{_ms([p['test_drop'] for p, _ in picks], '{:.2f}')} | "
                f"{sum(p['test_drop'] <= md for p, _ in picks)} of {len(picks)} | "
                f"{_ms([p['latency_speedup'] for p, _ in picks], '{:.2f}')}x |")
    return "\n".join(lines)


def interleaved_latency(files: dict, proto, dense_tokenizer, args) -> dict:
    """p50 (ms) of every file, timed in rounds over all files in one process; median of the rounds."""
    from rmcompress.evaluation.artifacts import open_artifact
    from rmcompress.evaluation.latency import interleaved_latency

    texts = list(proto.test.texts if proto.task == "sst2" else proto.test.chosen)[:256]
    ids = []
    for path in files.values():
        tok = dense_tokenizer if "by-hand" in Path(path).parts else open_artifact(path).tokenizer
        ids.append(np.asarray(tok.encode(texts), np.int32))
    timed = interleaved_latency([Path(p).read_bytes() for p in files.values()], ids,
                                runs=args.latency_runs * args.latency_rounds, rounds=args.latency_rounds)
    return {name: t["latency_ms_p50"] for name, t in zip(files, timed)}


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


def run_seed(proto, seed, out, args) -> list[dict]:
    """Every row of one task and seed (module docstring)."""
    from rmcompress.compression.state import prepare_state
    from rmcompress.data.pipeline import encode

    work = out / "work" / f"{proto.task}-s{seed}"
    t = time.time()
    bundle, report = train_dense(proto, seed, work / "dense", args)
    log(f"{proto.task} seed {seed}: dense model ready in {time.time() - t:.0f}s")
    if args.reuse_rows:
        reused_dense_check(args.reuse_rows, proto.task, seed, report.get("accuracy", report.get("pairwise_accuracy")))
    state = prepare_state(bundle, proto.rest, proto.data_settings)
    if len(state.val) != len(proto.val):
        raise SystemExit(f"the recipes' split of {proto.task} gives {len(state.val)} validation rows, "
                         f"the protocol {len(proto.val)}")
    test_enc = encode(proto.test, bundle.tokenizer)
    rows, files = [], {}
    r, f = by_hand(bundle, state, test_enc, work, baseline_only=args.no_by_hand or bool(args.reuse_rows))
    rows += r
    files.update(f)
    if args.reuse_rows:
        recipes = [v for v in args.rerun_levels.split(",") if v]
    else:
        recipes = [*(v for v in args.levels.split(",") if v), *([INT8_OURS] if args.int8_ours else [])]
    r, f = level_rows(proto, work / "dense", work, recipes, args)
    rows += r
    files.update(f)
    if args.search_budget > 0:
        r, f = search_row(proto, work / "dense", work, seed, out, args)
        rows.append(r)
        files[SEARCH] = f
    t = time.time()
    lat = interleaved_latency(files, proto, bundle.tokenizer, args)
    log(f"  interleaved latency of {len(files)} files: {time.time() - t:.0f}s")
    for r in rows:
        if r["name"] in lat:
            r["latency_ms_p50"] = lat[r["name"]]
            r["sha256"] = hashlib.sha256(Path(files[r["name"]]).read_bytes()).hexdigest()
    if seed == args.profile_seed and not (out / f"op_profile_{proto.task}.md").is_file():
        prof, kept = op_profiles(bundle, state, out, proto.task)
        (out / f"op_profile_{proto.task}.md").write_text(
            f"kept float by int8-ours (auto): {', '.join(kept)}\n\n" + prof.to_markdown() + "\n")
    common = {"task_name": proto.task, "seed": seed, "n_train": len(proto.train), "n_val": len(proto.val),
              "n_test": len(proto.test), "dense_val_quality": report.get("accuracy", report.get("pairwise_accuracy"))}
    rows = [{**common, **r} for r in rows]
    return reuse(rows, args.reuse_rows, proto.task, seed) if args.reuse_rows else rows


def reused_dense_check(path, task: str, seed: int, val_quality: float) -> None:
    """Stop unless ``path`` has rows of ``task`` and ``seed`` on a dense model of the same validation quality."""
    old = pd.read_csv(path)
    f32 = old[(old["task_name"] == task) & (old["seed"] == seed) & (old["name"] == "float32 TFLite")]
    if not len(f32):
        raise SystemExit(f"--reuse-rows {path}: no float32 TFLite row of {task} seed {seed}")
    if not np.isclose(f32["dense_val_quality"].item(), val_quality, atol=1e-9):
        raise SystemExit(f"--reuse-rows {path}: {task} seed {seed}'s dense model scored "
                         f"{f32['dense_val_quality'].item()} on validation there, {val_quality} here: not the same model")


def reuse(rows: list[dict], path, task: str, seed: int) -> list[dict]:
    """This run's rows (the search, re-run levels) with the other routes of ``path`` (module docstring,
    ``--reuse-rows``): every row of this run but its float32 baseline replaces the file's row of that
    name, its p50 times the file's float32 p50 / this run's float32 p50."""
    old = pd.read_csv(path)
    old = old[(old["task_name"] == task) & (old["seed"] == seed)]
    mine = {r["name"]: r for r in rows}
    f32 = old[old["name"] == "float32 TFLite"]
    reused_dense_check(path, task, seed, mine["float32 TFLite"]["dense_val_quality"])
    here = mine.pop("float32 TFLite")["latency_ms_p50"]
    new = {}
    for name, r in mine.items():
        r = dict(r)
        if pd.notna(r.get("latency_ms_p50", np.nan)):
            r["latency_ms_p50"] *= f32["latency_ms_p50"].item() / here
            r["latency_rescaled_from_float32_ms_p50"] = here
        new[name] = r
    rows = [new.pop(r["name"], r) for r in old.to_dict(orient="records")]  # in the file's order
    return [*rows, *new.values()]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", default="sst2,hh")
    p.add_argument("--levels", default=",".join(LEVELS), help="level names or recipe YAML files")
    p.add_argument("--hh-seq-len", type=int, default=128)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seeds", default="0,1,2", help="training seeds of the dense model (the split stays)")
    p.add_argument("--latency-runs", type=int, default=200)
    p.add_argument("--latency-rounds", type=int, default=3)
    p.add_argument("--max-drop", type=float, default=0.5, help="search: validation drop allowed (points)")
    p.add_argument("--search-budget", type=float, default=480, help="search: seconds per task and seed (0: no search)")
    p.add_argument("--search-budgets", default="1,0.5,0.25,0.1", help="search: FLOPs fractions (1: no budget pass)")
    p.add_argument("--search-eta", type=int, default=2, help="search: successive halving keeps 1/eta of rung 1")
    p.add_argument("--search-precisions", default="int8", help="search: precisions")
    p.add_argument("--search-levels", default="light,medium,aggressive",
                   help="search: recipes run as written before the grid (empty: none)")
    p.add_argument("--search-z", type=float, default=1.0,
                   help="search: feasible when validation drop + z * its paired standard error <= --max-drop")
    p.add_argument("--search-promote-z", type=float, default=SEARCH_DEFAULTS["promote_z"],
                   help="search: after a rung's best, promote the candidates whose drop - z * se is within --max-drop")
    p.add_argument("--no-int8-ours", dest="int8_ours", action="store_false", help="skip the int8-ours row")
    p.add_argument("--reuse-rows", metavar="ROWS_CSV",
                   help="re-run only the search; the other rows of each task and seed from this file")
    p.add_argument("--rerun-levels", default="",
                   help="with --reuse-rows: these levels are re-run too, timed with the search")
    p.add_argument("--profile-seed", type=int, default=0, help="seed whose op-by-op profile is written")
    p.add_argument("--no-by-hand", action="store_true", help="of the by-hand routes only the float32 baseline")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "compress_levels"))
    p.add_argument("--table-from", metavar="ROWS_CSV", help="no run: print the tables of an earlier rows.csv")
    args = p.parse_args(argv)
    if args.table_from:
        print(tables(pd.read_csv(args.table_from)))
        return 0
    from rmcompress import _quiet

    _quiet.silence()
    from rmcompress.evaluation.report import write_report

    out = Path(args.out)
    (out / "rows").mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    tasks = args.tasks.split(",")
    t0 = time.time()
    protos = {}
    for seed in seeds:  # seed-major: an interrupted run has every task at the seeds it finished
        for task in tasks:
            done = out / "rows" / f"{task}-s{seed}.csv"
            if done.is_file():
                log(f"{task} seed {seed}: done ({done})")
                continue
            if task not in protos:
                protos[task] = protocol_splits(task)
                log(f"{task}: protocol split {protos[task].sizes()}")
            t = time.time()
            rows = run_seed(protos[task], seed, out, args)
            pd.DataFrame(rows).to_csv(done, index=False)
            log(f"{task} seed {seed}: {time.time() - t:.0f}s")
    df = pd.concat([pd.read_csv(f) for f in sorted((out / "rows").glob("*.csv"))], ignore_index=True)
    df.to_csv(out / "rows.csv", index=False)
    meta = {"tasks": args.tasks, "seeds": sorted(df["seed"].unique().tolist()), "epochs": args.epochs,
            "hh_seq_len": args.hh_seq_len, "search_budget_s": args.search_budget, "max_drop": args.max_drop,
            "search_budgets": args.search_budgets, "search_precisions": args.search_precisions,
            "search_eta": args.search_eta, "search_levels": args.search_levels, "search_z": args.search_z,
            "search_promote_z": args.search_promote_z,
            "reuse_rows": args.reuse_rows, "rerun_levels": args.rerun_levels,
            "latency": f"{args.latency_rounds} interleaved rounds x {args.latency_runs} runs",
            "cpu": cpu(), "wall_seconds_this_call": round(time.time() - t0)}
    text = tables(df)
    margins = margin_table(out, args.max_drop)
    (out / "search_margins.md").write_text(margins + "\n")
    (out / "summary.md").write_text(f"{json.dumps(meta)}\n\n{text}\n\n{margins}\n")
    first = df[df["seed"] == df["seed"].min()].copy()
    first["task"] = np.where(first["task_name"] == "sst2", "pointwise", "pairwise")
    write_report(first[first["size_bytes"].notna()], out)
    print(text)
    print(json.dumps(meta))
    return 0


def _quality(df: pd.DataFrame) -> pd.Series:
    q = df["accuracy"] if "accuracy" in df else pd.Series(np.nan, index=df.index)
    return q.fillna(df["pairwise_accuracy"]) if "pairwise_accuracy" in df else q


def per_seed(df: pd.DataFrame) -> pd.DataFrame:
    """Each row with its test ``drop`` and ``val_drop`` (points), ``smaller``, ``gzip_smaller``,
    ``faster`` against the same task and seed's float32 TFLite."""
    df = df.copy()
    df["quality"] = _quality(df)
    base = df[df["name"] == "float32 TFLite"].set_index(["task_name", "seed"])
    b = base.reindex(pd.MultiIndex.from_frame(df[["task_name", "seed"]]))
    df["drop"] = 100 * (b["quality"].to_numpy() - df["quality"].to_numpy())
    df["val_drop"] = 100 * (b["val_quality"].to_numpy() - df["val_quality"].to_numpy())
    df["smaller"] = b["size_bytes"].to_numpy() / df["size_bytes"].to_numpy()
    df["gzip_smaller"] = b["size_gzip_bytes"].to_numpy() / df["size_gzip_bytes"].to_numpy()
    df["faster"] = b["latency_ms_p50"].to_numpy() / df["latency_ms_p50"].to_numpy()
    return df


def _ms(v, fmt="{:.3f}") -> str:
    v = np.asarray(v, float)
    v = v[np.isfinite(v)]
    if not len(v):
        return ""
    return fmt.format(v.mean()) + (f" ± {fmt.format(v.std(ddof=1))}" if len(v) > 1 else "")


def verdict(t: pd.DataFrame, levels=LEVELS) -> list[str]:
    """The search row against every level (means over seeds): a level *dominates* the search when it
    loses at most as much on test and is at least as fast (and better in one); the search dominates or
    matches every level on latency at equal or smaller drop when no level dominates it; where its file is
    the level's own in every seed (same ``sha256``) it matches that level, whatever two timings of one
    file say. It beats ``aggressive`` on latency at equal drop when it is faster and its mean test drop is
    at most ``aggressive``'s or within the pooled seed sd of the two."""
    s = t[t["name"] == SEARCH]
    if not len(s):
        return []
    sd, sf = s["drop"].mean(), s["faster"].mean()
    feasible = s["feasible_on_val"].astype(str).str.lower().eq("true").sum() if "feasible_on_val" in s else 0
    z = f" with a margin of {s['margin_z'].iloc[0]:g} standard errors" if "margin_z" in s and s["margin_z"].notna().all() else ""
    out = [f"search (chosen per seed: {', '.join(s['candidate'].astype(str))}; within {s['max_drop'].iloc[0]:g} "
           f"points on validation{z} in {feasible} of {len(s)} seeds, on test in "
           f"{int((s['drop'] <= s['max_drop']).sum())}): test drop {_ms(s['drop'], '{:.2f}')}, "
           f"{_ms(s['faster'], '{:.2f}')}x faster than float32.", ""]
    ok = []
    for name in levels:
        g = t[t["name"] == name]
        if not len(g):
            continue
        ld, lf = g["drop"].mean(), g["faster"].mean()
        if _same_files(s, g):
            word, good = "returns its file in every seed (same bytes): matches it", True
        elif ld <= sd and lf >= sf and (ld < sd or lf > sf):
            word, good = "is dominated by it", False
        elif sd <= ld and sf >= lf:
            word, good = ("dominates it" if (sd < ld or sf > lf) else "matches it"), True
        elif sf > lf:
            word, good = "is faster and loses more", True
        else:
            word, good = "loses less and is slower", True
        ok.append(good)
        out.append(f"- vs `{name}` (test drop {ld:.2f} points, {lf:.2f}x): search {word}")
    out.append(f"- dominates or matches every level on latency at equal or smaller test drop (no level loses at "
               f"most as much and is faster): {'yes' if ok and all(ok) else 'no'}")
    a = t[t["name"] == "aggressive"]
    if len(a):
        ad, af = a["drop"].mean(), a["faster"].mean()
        pooled = float(np.sqrt((s["drop"].var(ddof=1) + a["drop"].var(ddof=1)) / 2)) if len(s) > 1 else 0.0
        equal = sd <= ad or abs(sd - ad) <= pooled
        out.append(f"- beats `aggressive` on latency at equal drop: {'yes' if sf > af and equal else 'no'} "
                   f"({sf:.2f}x vs {af:.2f}x; test drop {sd:.2f} vs {ad:.2f} points, pooled seed sd {pooled:.2f})")
    return out


def _same_files(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Whether rows ``a`` and ``b`` (one per seed) have the same TFLite file in every seed of ``a``."""
    if "sha256" not in a or "sha256" not in b:
        return False
    x, y = a.set_index("seed")["sha256"], b.set_index("seed")["sha256"].reindex(a.set_index("seed").index)
    return bool(x.notna().all() and (x == y).all())


def tables(df: pd.DataFrame) -> str:
    """Per task and row: test quality and its drop against the same seed's float32 TFLite (mean ± sd
    over seeds), raw and gzip size with the ratios, p50 latency with the speed-up (interleaved), the
    recipe's own speed-up at the validation texts' real lengths; then the search verdict."""
    df = per_seed(df)
    lines = []
    for task, t in df.groupby("task_name", sort=False):
        n_test = int(t["n_test"].iloc[0]) if "n_test" in t else 0
        lines += [f"**{task}** (test: {n_test} {'sentences' if task == 'sst2' else 'pairs'}; "
                  f"seeds {', '.join(str(s) for s in sorted(t['seed'].unique()))})", "",
                  "| route | seeds | test quality | drop (points) | validation drop | raw size | smaller | gzip smaller "
                  "| p50 | faster | faster at real length |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for name, g in t.groupby("name", sort=False):
            if g["size_bytes"].isna().all():
                note = g["note"].dropna().iloc[0] if "note" in g and g["note"].notna().any() else ""
                lines.append(f"| {name} | {len(g)} | {note} | | | | | | | | |")
                continue
            real = g["speedup_real_length"] if "speedup_real_length" in g else pd.Series(dtype=float)
            lines.append(f"| {name} | {len(g)} | {_ms(g['quality'])} | {_ms(g['drop'], '{:.2f}')} | "
                         f"{_ms(g['val_drop'], '{:.2f}')} | {g['size_bytes'].mean() / 1e3:.0f} kB | "
                         f"{_ms(g['smaller'], '{:.1f}')}x | {_ms(g['gzip_smaller'], '{:.1f}')}x | "
                         f"{g['latency_ms_p50'].mean():.3f} ms | {_ms(g['faster'], '{:.2f}')}x | "
                         f"{(_ms(real, '{:.1f}') + 'x') if np.isfinite(real.astype(float)).any() else ''} |")
        lines += ["", *verdict(t), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
