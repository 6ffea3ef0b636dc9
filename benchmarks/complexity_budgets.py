"""Complexity budgets on SST-2: complexity-aware training against the baselines (README figures).

For each architecture (``--arch``) and seed: the dense model; complexity-aware training at each
FLOPs budget (``--budgets``, fractions of the dense model), twice: ``budget`` = ``train()`` from
scratch with ``budget_flops`` (gates, Lagrangian budget, deterministic units chosen to the
budget, shrink, fine-tune; the same number of steps as the dense run) and ``budget_from_dense`` =
``budget_compress()`` of the trained dense model for as many steps (the same compute as baseline
(b)); and the baselines at the same FLOPs:

(a) ``narrow``: the same architecture uniformly narrower (transformer: width, FFN and head size
    scaled together; cnn: embedding width and filters scaled together), trained from scratch for
    the same number of steps (blocks are dropped only where even width 4 is over the budget);
(b) ``magnitude``: the trained dense model with its lowest-L1 units removed to the budget
    (``rmcompress.structured.magnitude``), then fine-tuned for as many steps as a full training run;
(c) ``small``: the hand-designed small models (transformer width 32 / FFN 64, width 16 / FFN 32,
    bag of embeddings 64 -> 64 -> 1; the dense cnn is the default cnn).

Every model is trained on the same training subset and scored on the same validation split
(``split_data(..., mode="disjoint")`` of SST-2's ``train.tsv``, taken before subsetting); reported
per model: exact FLOPs per example at length 64 and params (``count`` of the final plain model),
validation accuracy (mean +- sd over seeds), float32 TFLite size and LiteRT p50 latency (batch 1,
one thread). Also the train-step time ratio gated/plain, measured in one process with interleaved
rounds on the same batch. Writes ``runs.csv``, ``summary.csv``, ``summary.md``, ``summary.json``,
``accuracy_vs_flops.png`` and ``accuracy_vs_latency.png`` to ``--out`` and prints the table.

Example (the reduced scale of docs/complexity.md)::

    python benchmarks/complexity_budgets.py --arch transformer,cnn --budgets 0.25,0.02 --seeds 3 \\
        --arch-seeds cnn=1 --train-subset 16000 --epochs 2 --out benchmarks/results/complexity
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "sst2" / "train.tsv"))
    p.add_argument("--arch", default="transformer,cnn")
    p.add_argument("--budgets", default="0.5,0.25,0.1,0.02")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--arch-seeds", default="", help="per-architecture seed counts, e.g. cnn=1")
    p.add_argument("--train-subset", type=int, default=0, help="training examples to use (0: all)")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument("--baselines", default="narrow,magnitude,small")
    p.add_argument("--methods", default="budget,budget_from_dense",
                   help="budget: train() from scratch with the budget; budget_from_dense: "
                        "budget_compress() of the trained dense model for as many steps; "
                        "budget_from_magnitude: the same with gates started in magnitude order "
                        "(gate_init='magnitude')")
    p.add_argument("--gate-init-spread", type=float, default=None,
                   help="half-width of the starting log_alpha range for budget_from_magnitude "
                        "(default: rmcompress.config.choices.GATE_SCHEDULES, 4)")
    p.add_argument("--finetune-fraction", type=float, default=None,
                   help="budget_from_*: share of the steps fine-tuning the shrunk model "
                        "(default: by gate start, 0.3 uniform / 0.8 magnitude)")
    p.add_argument("--head-hidden", type=int, default=0,
                   help="transformer and cnn: a ReLU reward-head layer of this many units after the pooling "
                        "(rows labelled transformer+headN)")
    p.add_argument("--final-steps", type=int, default=0,
                   help="budget_from_* and magnitude: extra fine-tuning steps of the pruned model on top of "
                        "the N steps")
    p.add_argument("--kernel-sizes", default="",
                   help="cnn convolution widths, e.g. 1,2,3,4,5 (default: 3,4,5; rows labelled "
                        "cnn[1,2,3,4,5])")
    p.add_argument("--distill", type=float, default=0.0,
                   help="budget_from_*: self-distillation weight from the dense model (0: labels only)")
    p.add_argument("--small-models", default="small_t32,small_t16,small_bow",
                   help="which hand-designed models baseline (c) trains")
    p.add_argument("--latency-runs", type=int, default=200)
    p.add_argument("--timing-rounds", type=int, default=12)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "complexity"))
    p.add_argument("--combine", nargs="+", default=None, metavar="RUN_DIR",
                   help="no training: merge the runs.csv (and step timings) of these output folders "
                        "(later folders replace rows of the same arch/method/budget/seed) into --out")
    return p.parse_args(argv)


def combine(args):
    """Merge earlier runs into one table and figures (see ``--combine``)."""
    frames, meta = [], {}
    for d in args.combine:
        if (Path(d) / "runs.csv").is_file():  # a timing-only run (--seeds 0) has no rows
            frames.append(with_speedup(pd.read_csv(Path(d) / "runs.csv")))
        if (Path(d) / "summary.json").is_file():
            m = json.loads((Path(d) / "summary.json").read_text())
            if m.get("sources"):  # an earlier combined folder: keep the runs it came from
                meta.setdefault("sources", []).extend(m["sources"])
            else:
                meta.setdefault("sources", []).append({"dir": str(d), "command": m.get("command"),
                                                       "wall_seconds": m.get("wall_seconds")})
            for t in m.get("step_time") or []:  # per architecture; a later folder replaces an earlier one
                meta["step_time"] = [x for x in meta.get("step_time", []) if x["arch"] != t["arch"]] + [t]
            for k in ("n_train", "n_val", "steps_per_run", "epochs", "batch_size", "seq_len"):
                meta.setdefault(k, m.get(k))
    runs = pd.concat(frames, ignore_index=True)
    runs["_key"] = [f"{a}|{m}|{b}|{s}" for a, m, b, s in zip(runs["arch"], runs["method"], runs["budget"], runs["seed"])]
    runs = runs.drop_duplicates("_key", keep="last").drop(columns="_key")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    methods = ["dense", "budget", "budget_from_dense", "budget_from_magnitude", "narrow", "magnitude",
               "small_t32", "small_t16", "small_bow"]
    archs = list(dict.fromkeys(runs["arch"]))
    runs["_a"] = runs["arch"].map(archs.index)
    runs["_b"] = -runs["budget"].fillna(-1.0)
    runs["_m"] = runs["method"].map(lambda m: methods.index(m) if m in methods else len(methods))
    runs = runs.sort_values(["_a", "_b", "_m", "seed"], kind="stable").drop(columns=["_a", "_b", "_m"])
    runs.to_csv(out / "runs.csv", index=False)
    summary = summarise(runs)
    summary.to_csv(out / "summary.csv", index=False)
    table = to_markdown(summary)
    (out / "summary.md").write_text(table + "\n")
    (out / "summary.json").write_text(json.dumps(meta, indent=2))
    plots(summary, out)
    print(table)


# -- data -------------------------------------------------------------------------------------------
def load_splits(args):
    from rmcompress.data.loaders import load_data
    from rmcompress.data.split import split_data

    data = load_data(args.data, "pointwise")
    train, val = split_data(data, args.val_fraction, seed=0, mode="disjoint")
    if args.train_subset and args.train_subset < len(train):
        idx = np.sort(np.random.RandomState(0).choice(len(train), args.train_subset, replace=False))
        train = train.subset(idx)
    return train, val


def base_config(args, arch, seed, **kw):
    from rmcompress.config.choices import HEAD_HIDDEN_ARCHS
    from rmcompress.training.trainer import TrainConfig

    if arch in HEAD_HIDDEN_ARCHS and getattr(args, "head_hidden", 0):
        kw.setdefault("head_hidden", args.head_hidden)
    if arch == "cnn" and getattr(args, "kernel_sizes", ""):
        kw.setdefault("kernel_sizes", [int(k) for k in args.kernel_sizes.split(",")])

    return TrainConfig.from_flat(arch=arch, seed=seed, epochs=args.epochs, batch_size=args.batch_size,
                       seq_len=args.seq_len, vocab_size=args.vocab_size, val_fraction=0.0, patience=0,
                       **kw)


def total_steps(args, n_train):
    return math.ceil(n_train / args.batch_size) * args.epochs


# -- measuring one model ----------------------------------------------------------------------------
def measure(model, tokenizer, val, args, cache={}):
    from rmcompress.models.structure import count
    from rmcompress.evaluation.latency import measure_latency
    from rmcompress.runtime.tflite import convert

    key = id(tokenizer)
    if key not in cache:
        cache.clear()
        cache[key] = tokenizer.encode(val.texts)
    ids = cache[key]
    r = model.predict(ids, batch_size=512, verbose=0).reshape(-1)
    acc = float(np.mean((r > 0) == (np.asarray(val.labels) > 0.5)))
    flat = convert(model)
    lat = measure_latency(flat, ids[:256], runs=args.latency_runs)
    return {"accuracy": acc, **count(model).as_dict(), "tflite_bytes": len(flat),
            "latency_ms_p50": lat["latency_ms_p50"], "shape": shape(model)}


def shape(model) -> str:
    """The kept structure in a few words (runs.csv ``shape``), e.g. ``E8 filters 12/0/25 head 9``."""
    from rmcompress.models.structure import infer_arch_config

    c = infer_arch_config(model)
    parts = [f"E{c.width}"]
    if c.arch == "cnn":
        parts.append("filters " + "/".join(str(f) for f in c.per_conv()))
    elif c.arch == "transformer":
        present = c.block_present or [True] * c.depth
        parts += [f"blocks {sum(bool(p) for p in present)}", "heads " + "/".join(map(str, c.per_block("heads"))),
                  "ffn " + "/".join(map(str, c.per_block("ffn")))]
    elif c.arch == "bow":
        parts.append(f"hidden {c.hidden}")
    if c.head_hidden:
        parts.append(f"head {c.head_hidden}")
    return " ".join(parts)


# -- baselines ---------------------------------------------------------------------------------------
def narrow_config(dense_cfg, budget, dense_flops):
    """The uniformly narrower config (same arch) with the largest FLOPs <= budget * dense."""
    from rmcompress.models.structure import count
    from rmcompress.models.archconfig import ArchConfig
    from rmcompress.models.architectures import build_reward_model

    best = None
    target = budget * dense_flops
    d = dense_cfg.to_dict()
    if dense_cfg.arch == "transformer":
        candidates = []
        for depth in range(dense_cfg.depth, -1, -1):
            for w in range(4, dense_cfg.width + 1, 4):
                s = w / dense_cfg.width
                candidates.append({**d, "depth": depth, "width": w, "head_dim": max(1, w // 4), "heads": 4,
                                   "ffn": max(1, round(128 * s)) if isinstance(d["ffn"], int) else d["ffn"],
                                   "block_present": None})
            if any(c["depth"] == depth for c in candidates if _flops(c) <= target):
                break
    else:
        candidates = []
        for w in range(2, dense_cfg.width + 1, 2):
            s = w / dense_cfg.width
            candidates.append({**d, "width": w, "filters": max(1, round(int(dense_cfg.per_conv()[0]) * s))})
    for c in candidates:
        f = _flops(c)
        if f <= target and (best is None or f > best[0]):
            best = (f, c)
    if best is None:
        best = min(((_flops(c), c) for c in candidates), key=lambda t: t[0])
    return ArchConfig.from_dict(best[1])


def _flops(cfg_dict):
    from rmcompress.models.structure import count
    from rmcompress.models.archconfig import ArchConfig
    from rmcompress.models.architectures import build_reward_model

    return count(build_reward_model(ArchConfig.from_dict(cfg_dict))).flops


def train_cfg_from_arch(args, arch_cfg, seed):
    kw = {"width": arch_cfg.width, "depth": arch_cfg.depth}
    if arch_cfg.arch == "transformer":
        kw.update(heads=arch_cfg.per_block("heads")[0] if arch_cfg.depth else 4,
                  ffn=arch_cfg.per_block("ffn")[0] if arch_cfg.depth else 128)
    elif arch_cfg.arch == "cnn":
        kw.update(filters=arch_cfg.per_conv()[0])
    else:
        kw.update(hidden=arch_cfg.hidden)
    return base_config(args, arch_cfg.arch, seed, **kw)


# -- train-step time ratio ---------------------------------------------------------------------------
def step_time_ratio(arch, args, ids, labels, rounds):
    """Median over interleaved rounds of (gated step time / plain step time), same batch."""
    from rmcompress._keras import keras, tf
    from rmcompress.models.archconfig import ArchConfig
    from rmcompress.models.architectures import build_reward_model
    from rmcompress.training.complexity_model import ComplexityAwareModel
    from rmcompress.training.model import RewardTrainingModel

    cfg = ArchConfig(arch=arch, vocab_size=args.vocab_size, seq_len=args.seq_len)
    batch = (tf.constant(ids[: args.batch_size]), tf.constant(labels[: args.batch_size]))
    ds = tf.data.Dataset.from_tensors(batch).repeat()

    def make(gated):
        keras.utils.set_random_seed(0)
        scorer = build_reward_model(cfg)  # ComplexityAwareModel gates a plain scorer itself
        model = ComplexityAwareModel(scorer, budget_flops=0.25) if gated else RewardTrainingModel(scorer)
        model.compile(optimizer=keras.optimizers.AdamW(1e-3))
        fn, it = model.make_train_function(), iter(ds)
        for _ in range(5):
            fn(it)
        return fn, it

    plain, gated = make(False), make(True)
    ratios, times = [], {"plain": [], "gated": []}
    for r in range(rounds):
        pair = (("plain", plain), ("gated", gated))
        for name, (fn, it) in (pair if r % 2 == 0 else pair[::-1]):  # alternate who goes first
            t = time.perf_counter()
            for _ in range(10):
                out = fn(it)
            float(out["loss"])
            times[name].append((time.perf_counter() - t) / 10)
        ratios.append(times["gated"][-1] / times["plain"][-1])
    return {"arch": arch, "ratio_median": float(np.median(ratios)),
            "plain_ms": float(np.median(times["plain"]) * 1e3), "gated_ms": float(np.median(times["gated"]) * 1e3)}


# -- main -------------------------------------------------------------------------------------------
def main(argv=None):
    args = parse_args(argv)
    if args.combine:
        return combine(args)
    from rmcompress._keras import keras
    from rmcompress.training.budget import budget_compress
    from rmcompress.structured.magnitude import magnitude_prune
    from rmcompress.data.pipeline import EncodedData
    from rmcompress.models.archconfig import ArchConfig
    from rmcompress.training.finetune import finetune
    from rmcompress.training.tasks import make_task
    from rmcompress.training.trainer import train

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    archs = [a for a in args.arch.split(",") if a]
    budgets = [float(b) for b in args.budgets.split(",") if b]
    baselines = {b for b in args.baselines.split(",") if b}
    small_models = {b for b in args.small_models.split(",") if b}
    methods = {m for m in args.methods.split(",") if m}
    arch_seeds = {k: int(v) for k, v in (kv.split("=") for kv in args.arch_seeds.split(",") if kv)}
    t0 = time.time()
    train_data, val = load_splits(args)
    steps = total_steps(args, len(train_data))
    print(f"SST-2: {len(train_data)} training / {len(val)} validation examples; {steps} steps per run",
          flush=True)
    rows = []

    def record(**row):
        rows.append(row)
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
        pd.DataFrame(rows).to_csv(out / "runs.csv", index=False)

    from rmcompress.data.tokenizer import Tokenizer, TokenizerConfig

    t_tok = time.time()
    tokenizer = Tokenizer.train(train_data.texts, args.vocab_size, TokenizerConfig(args.seq_len, "start", True))
    print(f"tokenizer: {tokenizer.vocab_size} tokens ({time.time() - t_tok:.0f} s), shared by every run", flush=True)

    from rmcompress.config.choices import HEAD_HIDDEN_ARCHS

    def label(arch):
        name = f"{arch}[{args.kernel_sizes}]" if arch == "cnn" and args.kernel_sizes else arch
        return f"{name}+head{args.head_hidden}" if arch in HEAD_HIDDEN_ARCHS and args.head_hidden else name

    def run_train(cfg, arch, method, budget, seed):
        t = time.time()
        r = train(train_data, cfg, None, verbose=0, tokenizer=tokenizer)
        m = measure(r.bundle.model, r.bundle.tokenizer, val, args)
        record(arch=label(arch), method=method, budget=budget, seed=seed, train_seconds=round(time.time() - t, 1),
               steps=r.report.get("steps"), dense_flops=r.report.get("dense_flops"), **m)
        return r

    small_done = set()
    for arch in archs:
        for seed in range(arch_seeds.get(arch, args.seeds)):
            keras.utils.set_random_seed(seed)
            dense = run_train(base_config(args, arch, seed), arch, "dense", 1.0, seed)
            dense_flops = rows[-1]["flops"]
            dense_arch = ArchConfig.from_dict(dense.bundle.metadata["arch"])
            for b in budgets:
                if "budget" in methods:
                    run_train(base_config(args, arch, seed, budget_flops=b), arch, "budget", b, seed)
                for method, gate_init in (("budget_from_dense", "uniform"), ("budget_from_magnitude", "magnitude")):
                    if method not in methods:
                        continue
                    t = time.time()
                    enc_val = EncodedData("pointwise", ids=np.zeros((0, args.seq_len), np.int32),
                                          labels=np.zeros((0,), np.float32))
                    small = budget_compress(dense.bundle, dense.train_data, enc_val, flops_fraction=b,
                                            steps=steps, seed=seed, batch_size=args.batch_size,
                                            gate_init=gate_init, gate_init_spread=args.gate_init_spread,
                                            finetune_fraction=args.finetune_fraction,
                                            distill_weight=args.distill, final_steps=args.final_steps)
                    m = measure(small.model, dense.bundle.tokenizer, val, args)
                    record(arch=label(arch), method=method, budget=b, seed=seed,
                           train_seconds=round(time.time() - t, 1), steps=steps + args.final_steps,
                           dense_flops=dense_flops, **m)
                if "narrow" in baselines:
                    ncfg = narrow_config(dense_arch, b, dense_flops)
                    run_train(train_cfg_from_arch(args, ncfg, seed), arch, "narrow", b, seed)
                if "magnitude" in baselines:
                    t = time.time()
                    pruned = magnitude_prune(dense.bundle.model, flops_fraction=b)
                    ds = dense.train_data.dataset(args.batch_size, shuffle=True, seed=seed, repeat=True)
                    # as many fine-tuning steps as ours, --final-steps included
                    o = base_config(args, arch, seed).optim
                    tuned, _ = finetune(pruned, make_task("pointwise", "bce"), ds, steps + args.final_steps,
                                        learning_rate=o.learning_rate, warmup_fraction=o.warmup_fraction,
                                        weight_decay=o.weight_decay, copy=True)
                    m = measure(tuned, dense.bundle.tokenizer, val, args)
                    record(arch=label(arch), method="magnitude", budget=b, seed=seed,
                           train_seconds=round(time.time() - t, 1), steps=steps + args.final_steps,
                           dense_flops=dense_flops, **m)
            if "small" in baselines and arch == "transformer":
                smalls = (("small_t32", dict(arch="transformer", width=32, ffn=64)),
                          ("small_t16", dict(arch="transformer", width=16, ffn=32)),
                          ("small_bow", dict(arch="bow", width=64, hidden=64)))
                for name, kw in smalls:
                    if name not in small_models:
                        continue
                    if (name, seed) in small_done:
                        continue
                    small_done.add((name, seed))
                    kw = dict(kw)
                    run_train(base_config(args, kw.pop("arch"), seed, **kw), arch, name, None, seed)

    timing = []
    from rmcompress.data.pipeline import encode

    enc = encode(train_data.subset(np.arange(min(len(train_data), 512))), tokenizer)
    for arch in archs if args.timing_rounds > 0 else ():
        timing.append(step_time_ratio(arch, args, enc.ids, enc.labels, args.timing_rounds))
        print(json.dumps(timing[-1]), flush=True)

    table = ""
    if rows:  # a timing-only run (--seeds 0) has no rows to summarise
        summary = summarise(with_speedup(pd.DataFrame(rows)))
        summary.to_csv(out / "summary.csv", index=False)
        table = to_markdown(summary)
        (out / "summary.md").write_text(table + "\n")
    meta = {"n_train": len(train_data), "n_val": len(val), "steps_per_run": steps, "epochs": args.epochs,
            "batch_size": args.batch_size, "seq_len": args.seq_len, "archs": archs, "budgets": budgets,
            "seeds": args.seeds, "arch_seeds": arch_seeds, "step_time": timing,
            "wall_seconds": round(time.time() - t0, 1), "command": " ".join(sys.argv)}
    (out / "summary.json").write_text(json.dumps(meta, indent=2))
    if rows:
        plots(summary, out)
    print(table)
    print(json.dumps(meta, indent=2))


def with_speedup(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with ``speedup`` = p50 latency of the dense model of the same architecture and seed
    *in the same run* / the row's p50 latency (rows that already carry one keep it: merged folders).
    Latency ratios are only compared within one run: runs on other machines or under other load
    shift every absolute latency alike."""
    runs = runs.copy()
    dense = runs[runs["method"] == "dense"].set_index(["arch", "seed"])["latency_ms_p50"]
    dense = dense[~dense.index.duplicated(keep="last")]
    fresh = [dense.get((a, s), np.nan) / lat for a, s, lat in zip(runs["arch"], runs["seed"], runs["latency_ms_p50"])]
    runs["speedup"] = runs["speedup"].fillna(pd.Series(fresh, index=runs.index)) if "speedup" in runs else fresh
    return runs


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    keys = ["arch", "method", "budget"]
    runs = runs.copy()
    runs["budget"] = runs["budget"].fillna(-1)
    g = runs.groupby(keys, sort=False)
    s = g.agg(n=("seed", "count"), accuracy_mean=("accuracy", "mean"), accuracy_sd=("accuracy", "std"),
              flops=("flops", "mean"), flops_min=("flops", "min"), flops_max=("flops", "max"),
              params=("params", "mean"), tflite_bytes=("tflite_bytes", "mean"),
              latency_ms_p50=("latency_ms_p50", "mean"), speedup=("speedup", "mean"),
              train_seconds=("train_seconds", "mean")).reset_index()
    s["accuracy_sd"] = s["accuracy_sd"].fillna(0.0)
    dense = s[s["method"] == "dense"].set_index("arch")["flops"]
    s["flops_fraction"] = [f / dense.get(a, np.nan) if a in dense.index else np.nan
                           for a, f in zip(s["arch"], s["flops"])]
    s["budget"] = s["budget"].replace(-1, np.nan)
    return s


def to_markdown(s: pd.DataFrame) -> str:
    lines = ["| arch | method | budget | FLOPs (fraction of dense) | params | val accuracy | TFLite | p50 latency "
             "| faster than dense (same run) | seeds |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for _, r in s.iterrows():
        budget = "" if pd.isna(r["budget"]) else f"{r['budget']:.0%}"
        frac = "" if pd.isna(r["flops_fraction"]) else f" ({r['flops_fraction']:.2%})"
        lines.append(f"| {r['arch']} | {r['method']} | {budget} | {r['flops'] / 1e6:.3f} M{frac} | "
                     f"{r['params'] / 1e3:.1f} k | {r['accuracy_mean']:.3f} +- {r['accuracy_sd']:.3f} | "
                     f"{r['tflite_bytes'] / 1024:.0f} KiB | {r['latency_ms_p50']:.3f} ms | "
                     f"{r['speedup']:.1f}x | {int(r['n'])} |")
    return "\n".join(lines)


def plots(s: pd.DataFrame, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"dense": "black", "budget": "tab:red", "budget_from_dense": "tab:orange",
              "budget_from_magnitude": "tab:olive", "narrow": "tab:blue",
              "magnitude": "tab:green", "small_t32": "tab:purple", "small_t16": "tab:brown", "small_bow": "tab:pink"}
    markers = {"transformer": "o", "cnn": "^", "bow": "s"}
    s = s.assign(latency_rel=1.0 / s["speedup"])  # runs on other machines compare only within a run
    for xcol, fname, xlabel in (("flops", "accuracy_vs_flops.png", "FLOPs per example (log)"),
                                ("latency_rel", "accuracy_vs_latency.png",
                                 "LiteRT p50 latency / the dense model's in the same run (log)")):
        fig, ax = plt.subplots(figsize=(8.5, 5))
        for (arch, method), grp in s.groupby(["arch", "method"], sort=False):
            label = method if method.startswith("small") else f"{arch} {method}"
            ax.errorbar(grp[xcol], grp["accuracy_mean"], yerr=grp["accuracy_sd"], capsize=3, alpha=0.85,
                        color=colors.get(method, "gray"), marker=markers.get(arch, "o"),
                        linestyle="-" if arch.startswith("transformer") else "--", label=label)
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("validation accuracy (mean +- sd)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
        fig.tight_layout()
        fig.savefig(out / fname, dpi=120)
        plt.close(fig)


if __name__ == "__main__":
    main()
