"""``rmcompress demo``: the whole pipeline on the embedded synthetic data, ending in one table.

Generates its own data (``rmcompress.data.synthetic``), trains small reward models of each
architecture (pointwise) and one pairwise model, exports each to SavedModel + float TFLite with a
parity check, compresses the pointwise transformer with the ``light`` and ``medium`` recipes
(``medium`` = FLOPs budget + shrink + fuse + factorise + int8), evaluates every TFLite file on
held-out data, and writes ``report.json``, ``report.csv`` and ``report.md`` into ``--out``.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from rmcompress.config.rules import integer


def add_parser(sub, parents):
    p = sub.add_parser("demo", parents=parents, help="run train -> export -> evaluate on generated data",
                       description="End-to-end demo on generated data; prints the result table.")
    p.add_argument("--out", default="saved_models/demo", help="output directory")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--seed", type=integer, default=0)
    return p


DEMO_MODELS = [
    # name, task, train-config overrides
    ("transformer", "pointwise", dict(arch="transformer", width=32, depth=2, heads=4, ffn=64, epochs=4)),
    ("cnn", "pointwise", dict(arch="cnn", width=32, filters=32, epochs=4)),
    ("bow", "pointwise", dict(arch="bow", width=32, hidden=32, epochs=6, learning_rate=3e-3)),
    ("pairwise-transformer", "pairwise", dict(arch="transformer", width=32, depth=1, heads=2, ffn=64,
                                               epochs=3, seq_len=48)),
]


# (trained model name, recipe level) pairs compressed after training
DEMO_RECIPES = [("transformer", "light"), ("transformer", "medium")]


def run_demo(out: Path, seed: int = 0, log=print) -> list[dict]:
    """Run the demo into ``out`` (which must not exist yet); return the table rows."""
    from rmcompress.data.synthetic import pairwise_frame, pointwise_frame, write_demo_data
    from rmcompress.evaluation.evaluate import evaluate
    from rmcompress.export.exporter import export_model
    from rmcompress.fileio import atomic_write_text, write_json
    from rmcompress.training.trainer import TrainConfig, train

    data = write_demo_data(out / "data", seed=seed)
    test = {"pointwise": out / "data" / "sentiment_test.tsv", "pairwise": out / "data" / "preferences_test.jsonl"}
    atomic_write_text(test["pointwise"], pointwise_frame(1000, seed + 1000).to_csv(sep="\t", index=False))
    atomic_write_text(test["pairwise"], pairwise_frame(400, seed + 1000).to_json(orient="records", lines=True))
    rows = []
    for name, task, overrides in DEMO_MODELS:
        t0 = time.time()
        cfg = TrainConfig.from_flat(task=task, vocab_size=1000, seq_len=overrides.pop("seq_len", 32), seed=seed,
                                    **overrides)
        log(f"[{name}] training ({cfg.arch.name}, {task}) ...")
        result = train(data[task], cfg, out / "models" / name, verbose=0)
        log(f"[{name}] exporting to SavedModel + TFLite ...")
        exp = export_model(result.out_dir, out / "exports" / name, latency_runs=200)
        ev = evaluate(out / "exports" / name / "model.tflite", test[task], latency_runs=200)
        rows.append({"name": name, "task": task, **{k: ev[k] for k in ev if k not in ("artifact", "data")},
                     "parity_max_abs_diff": exp["parity_max_abs_diff"], "seconds": round(time.time() - t0, 1)})
    from rmcompress.compression.pipeline import compress

    for name, level in DEMO_RECIPES:
        t0 = time.time()
        task = next(t for n, t, _ in DEMO_MODELS if n == name)
        log(f"[{name}+{level}] compressing with the {level} recipe ...")
        comp = compress(out / "models" / name, level, data[task], out / "compressed" / f"{name}-{level}",
                        latency_runs=200)
        ev = evaluate(out / "compressed" / f"{name}-{level}", test[task], latency_runs=200)
        rows.append({"name": f"{name} + {level}", "task": task,
                     **{k: ev[k] for k in ev if k not in ("artifact", "data")},
                     "parity_max_abs_diff": comp.get("parity_max_abs_diff"), "recipe": level,
                     "seconds": round(time.time() - t0, 1)})
    write_json(out / "report.json", {"rows": rows})
    from rmcompress.evaluation.table import humanize, rows_to_frame

    df = rows_to_frame(rows)
    atomic_write_text(out / "report.csv", df.to_csv(index=False))
    atomic_write_text(out / "report.md", humanize(df).to_markdown(index=False, disable_numparse=True))
    return rows


def run(args) -> int:
    from rmcompress.evaluation.table import format_table
    from rmcompress.fileio import atomic_dir

    t0 = time.time()
    out = Path(args.out)
    with atomic_dir(out, overwrite=args.overwrite) as tmp:
        rows = run_demo(tmp, args.seed, log=lambda m: print(m, file=sys.stderr))
    print(format_table(rows))
    print(f"demo finished in {time.time() - t0:.0f} s; artifacts and report in {out}")
    return 0
