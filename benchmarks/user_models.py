"""Models the user wrote, on SST-2: dense against budget training in the user's own ``fit``, and the
``aggressive`` recipe through ``rmcompress import`` / ``compress`` (docs/benchmarks.md).

Two models written as a user writes them (``benchmarks/user_models.py::kim_cnn``: a tf_keras
``Sequential`` Kim-style CNN; ``transformer``: a Keras 3 functional post-LN transformer brought in
with ``rmcompress.from_keras``). Data: SST-2 ``train.tsv``, split once (seed 0) into a test split
(``--test`` rows), a validation split (``--val`` rows) and a training subset (``--train`` rows), each
split ``disjoint`` (no test or validation sentence inside a training phrase). Every choice (the best
epoch of the dense run and of the fine-tuning after shrinking) is made on the validation split;
accuracy is reported on the test split, which nothing is chosen on, as mean +- sd over seeds.

Per model and seed:

- ``dense``: ``model.compile(loss=BinaryCrossentropy(from_logits=True))`` + ``fit`` for ``--epochs``,
  the weights of the best validation epoch kept;
- ``budget B`` for each ``--budgets``: ``rmcompress.ComplexityAwareModel(dense, budget_flops=B)`` on a
  copy of the trained dense model, ``fit`` for ``--epochs`` with ``BudgetController`` (target 1.0 -> B
  over the first half of the steps), ``model.shrink()`` (the units that fit the budget, exactly),
  then ``--finetune-epochs`` of plain ``fit`` on the shrunk model (best validation epoch kept);
- ``aggressive`` (``--recipe-seeds``): the dense model saved as ``.keras`` with its ``vocab.txt``,
  ``rmcompress import`` -> ``rmcompress compress --recipe aggressive`` (its own budget, fusion,
  factorisation, pruning, clustering and int8 QAT, exported to TFLite), the ``.tflite`` scored on the
  test split.

Columns: exact FLOPs per example and params (``rmcompress.count``), the FLOPs fraction achieved
against the budget, test accuracy; for the recipe also the gzipped TFLite size and the latency ratio
of the dense model's float32 TFLite to the recipe's TFLite (batch 1, one thread, interleaved in one
process, median of rounds), with the CPU model and its AVX-512/VNNI flags. Writes ``runs.csv``,
``summary.md`` and ``summary.json`` to ``--out``.

    python benchmarks/user_models.py --seeds 0,1,2 --out benchmarks/results/user_models
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SST2, mean_sd, require  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def kim_cnn(vocab: int, seq_len: int):
    """A user's tf_keras Sequential Kim-style CNN."""
    import tf_keras as keras

    return keras.Sequential([
        keras.Input((seq_len,), dtype="int32"),
        keras.layers.Embedding(vocab, 64),
        keras.layers.Conv1D(128, 5, activation="relu"),
        keras.layers.GlobalMaxPooling1D(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dropout(0.3),
        keras.layers.Dense(1),
    ], name="kim_cnn")


def transformer(vocab: int, seq_len: int):
    """A user's Keras 3 functional post-LN transformer (two blocks, four heads)."""
    import keras

    ids = keras.Input((seq_len,), dtype="int32")
    x = keras.layers.Embedding(vocab, 64, mask_zero=True)(ids)
    for _ in range(2):
        x = keras.layers.LayerNormalization()(x + keras.layers.MultiHeadAttention(4, 16)(x, x))
        f = keras.layers.Dense(64)(keras.layers.Dense(128, activation="gelu")(x))
        x = keras.layers.LayerNormalization()(x + keras.layers.Dropout(0.1)(f))
    pooled = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(ids, keras.layers.Dense(1)(pooled), name="transformer")


MODELS = {"kim_cnn": kim_cnn, "transformer": transformer}


def cpu_description() -> str:
    model, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = sorted(f for f in flags if f.startswith("avx512") or "vnni" in f)
    return f"{model}; {os.cpu_count()} cores; {' '.join(wanted) or 'no AVX-512/VNNI'}"


def load_splits(args):
    from rmcompress.data.loaders import load_pointwise
    from rmcompress.data.split import split_data

    data = load_pointwise(require(SST2))
    rest, test = split_data(data, args.test / len(data), seed=0, mode="disjoint")
    train, val = split_data(rest, args.val / len(rest), seed=0, mode="disjoint")
    train = train.subset(np.random.RandomState(0).permutation(len(train))[: args.train])
    return train, val, test


def to_tf_keras(model):
    import rmcompress

    return model if model.__class__.__module__.startswith("tf_keras") else rmcompress.from_keras(model)


def fit_best(model, train, val, epochs, seed, batch_size):
    """``fit`` keeping the weights of the best validation accuracy epoch."""
    import tf_keras as keras

    best = keras.callbacks.EarlyStopping("val_accuracy", mode="max", patience=epochs,
                                         restore_best_weights=True)
    model.fit(train.ids, train.labels, validation_data=(val.ids, val.labels), epochs=epochs,
              batch_size=batch_size, callbacks=[best], verbose=0, shuffle=True)
    return model


def accuracy(scorer, data) -> float:
    logits = np.asarray(scorer.predict(data.ids, batch_size=512, verbose=0)).reshape(-1)
    return float(np.mean((logits > 0) == (data.labels > 0.5)))


def compile_plain(model, lr):
    import tf_keras as keras

    model.compile(optimizer=keras.optimizers.Adam(lr), loss=keras.losses.BinaryCrossentropy(from_logits=True),
                  metrics=[keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)])
    return model


def run_model(name, seed, enc, tok, args, rows, work):
    import tf_keras as keras

    import rmcompress

    keras.utils.set_random_seed(seed)
    build = MODELS[name]
    initial = to_tf_keras(build(tok.vocab_size, args.seq_len))
    init_weights = initial.get_weights()
    dense_flops = rmcompress.count(initial).flops
    train, val, test = enc
    t0 = time.time()
    dense = compile_plain(keras.models.clone_model(initial), args.lr)
    dense.set_weights(init_weights)
    fit_best(dense, train, val, args.epochs, seed, args.batch_size)
    c = rmcompress.count(dense)
    rows.append({"model": name, "variant": "dense", "budget": 1.0, "seed": seed, "flops": c.flops,
                 "params": c.params, "flops_fraction": 1.0, "val_accuracy": accuracy(dense, val),
                 "test_accuracy": accuracy(dense, test), "seconds": time.time() - t0})
    print(rows[-1], flush=True)
    dense_dir = work / f"{name}-s{seed}-dense"
    dense_dir.mkdir(parents=True, exist_ok=True)
    dense.save(dense_dir / "model.keras")
    tok.save(dense_dir)
    for budget in args.budgets:
        t0 = time.time()
        keras.utils.set_random_seed(seed)
        start = keras.models.clone_model(dense)
        start.set_weights(dense.get_weights())
        model = rmcompress.ComplexityAwareModel(start, budget_flops=budget)
        model.compile(optimizer=keras.optimizers.Adam(args.lr))
        steps = args.epochs * int(np.ceil(len(train) / args.batch_size))
        model.fit(train.ids, train.labels, epochs=args.epochs, batch_size=args.batch_size, verbose=0,
                  callbacks=[rmcompress.BudgetController(warmup_steps=steps // 2)])
        shrunk = compile_plain(model.shrink(), args.lr / 2)
        fit_best(shrunk, train, val, args.finetune_epochs, seed, args.batch_size)
        c = rmcompress.count(shrunk)
        rows.append({"model": name, "variant": f"budget {budget:g}", "budget": budget, "seed": seed,
                     "flops": c.flops, "params": c.params, "flops_fraction": c.flops / dense_flops,
                     "val_accuracy": accuracy(shrunk, val), "test_accuracy": accuracy(shrunk, test),
                     "seconds": time.time() - t0})
        print(rows[-1], flush=True)
    return dense_dir


def rmc(*argv):
    exe = Path(sys.executable).with_name("rmcompress")
    out = subprocess.run([str(exe), *argv], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"rmcompress {' '.join(argv)} failed ({out.returncode}): {out.stderr.strip()[-2000:]}")
    return out.stdout


def interleaved_ratio(base: Path, other: Path, seq_len: int, rounds: int = 3, runs: int = 300) -> float:
    """p50 latency of ``base`` / ``other`` (batch 1, one thread, random ids at each file's input
    length; ``seq_len`` for a file with a free length), the two files timed in turn within each
    round, median of the rounds' ratios."""
    from ai_edge_litert.interpreter import Interpreter

    def p50(path):
        it = Interpreter(model_path=str(path), num_threads=1)
        inp = it.get_input_details()[0]
        if any(d < 0 for d in inp["shape_signature"]):  # a file with a free length: the full length
            it.resize_tensor_input(inp["index"], [1, seq_len])
        it.allocate_tensors()
        inp = it.get_input_details()[0]
        ids = np.random.RandomState(0).randint(1, 100, size=tuple(inp["shape"])).astype(inp["dtype"])
        times = []
        for i in range(runs + 20):
            it.set_tensor(inp["index"], ids)
            t = time.perf_counter()
            it.invoke()
            if i >= 20:
                times.append(time.perf_counter() - t)
        return statistics.median(times)

    return statistics.median(p50(base) / p50(other) for _ in range(rounds))


def gz_size(path: Path) -> int:
    return len(gzip.compress(path.read_bytes(), 9))


def run_recipe(name, seed, dense_dir, test, test_texts, args, rows, work):
    """``import`` -> ``compress --recipe aggressive``; the dense float32 TFLite from ``export``."""
    from common import artifact_scores

    imported, compressed, float32 = (work / f"{name}-s{seed}-{k}" for k in ("imported", "aggressive", "float32"))
    t0 = time.time()
    if not (compressed / "report.json").is_file():  # a finished step is not redone
        rmc("import", "--model", str(dense_dir / "model.keras"), "--vocab", str(dense_dir / "vocab.txt"),
            "--task", "pointwise", "--out", str(imported), "--overwrite", "--seq-len", str(args.seq_len))
        rmc("export", "--model", str(imported), "--out", str(float32), "--format", "tflite", "--overwrite")
        rmc("compress", "--model", str(imported), "--recipe", "aggressive", "--data", str(args.recipe_data),
            "--out", str(compressed), "--overwrite")
    tfl = sorted(compressed.rglob("*.tflite"))[-1]
    base = sorted(float32.rglob("*.tflite"))[-1]
    scores = artifact_scores(tfl, test_texts)
    report = json.loads((compressed / "report.json").read_text()) if (compressed / "report.json").is_file() else {}
    rows.append({"model": name, "variant": "aggressive", "budget": None, "seed": seed,
                 "flops": report.get("flops"), "params": report.get("params"),
                 "flops_fraction": report["flops"] / next(r["flops"] for r in rows if r["model"] == name
                                                           and r["variant"] == "dense") if report.get("flops") else None,
                 "test_accuracy": float(np.mean((scores > 0) == (test.labels > 0.5))),
                 "tflite_gz_bytes": gz_size(tfl), "float32_gz_bytes": gz_size(base),
                 "speedup_vs_float32": interleaved_ratio(base, tfl, args.seq_len), "seconds": time.time() - t0})
    print(rows[-1], flush=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="kim_cnn,transformer")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--budgets", default="0.25,0.1")
    p.add_argument("--recipe-seeds", default="0,1,2", help="seeds that also run the aggressive recipe ('' for none)")
    p.add_argument("--phase", choices=("all", "train", "recipe"), default="all",
                   help="train: dense and budget rows only; recipe: the recipe rows from a train phase's "
                        "dense models in --out (rows added to runs.csv)")
    p.add_argument("--train", type=int, default=8000)
    p.add_argument("--val", type=int, default=1000)
    p.add_argument("--test", type=int, default=3000)
    p.add_argument("--seq-len", type=int, default=48)
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--finetune-epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "user_models"))
    args = p.parse_args(argv)
    args.budgets = [float(b) for b in args.budgets.split(",") if b]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from rmcompress import _quiet

    _quiet.silence()
    from rmcompress.data.pipeline import encode
    from rmcompress.data.tokenizer import Tokenizer, TokenizerConfig

    out = Path(args.out)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    train, val, test = load_splits(args)
    args.recipe_data = work / "train.tsv"  # the recipe trains and chooses on the training subset only
    pd.DataFrame({"sentence": train.texts, "label": train.labels}).to_csv(args.recipe_data, sep="\t", index=False)
    tok = Tokenizer.train(train.texts, args.vocab_size, TokenizerConfig(seq_len=args.seq_len))
    enc = (encode(train, tok), encode(val, tok), encode(test, tok))
    rows: list = pd.read_csv(out / "runs.csv").to_dict("records") if args.phase == "recipe" else []
    recipe_seeds = {int(x) for x in args.recipe_seeds.split(",") if x} if args.phase != "train" else set()
    for name in args.models.split(","):
        for seed in (int(x) for x in args.seeds.split(",")):
            dense_dir = work / f"{name}-s{seed}-dense"
            if args.phase != "recipe":
                dense_dir = run_model(name, seed, enc, tok, args, rows, work)
            if seed in recipe_seeds:
                run_recipe(name, seed, dense_dir, enc[2], test.texts, args, rows, work)
            pd.DataFrame(rows).to_csv(out / "runs.csv", index=False)
    df = pd.DataFrame(rows)
    summary = []
    for (name, variant), g in df.groupby(["model", "variant"], sort=False):
        row = {"model": name, "variant": variant, "seeds": len(g)}
        for col in ("flops", "params", "flops_fraction", "test_accuracy", "tflite_gz_bytes", "speedup_vs_float32"):
            if col in g and g[col].notna().any():
                row[col] = mean_sd(g[col].dropna())
        summary.append(row)
    table = pd.DataFrame(summary)
    cpu = cpu_description()
    md = table.to_markdown(index=False) + f"\n\nCPU: {cpu}\n"
    (out / "summary.md").write_text(md)
    (out / "summary.json").write_text(json.dumps({"cpu": cpu, "args": {k: str(v) for k, v in vars(args).items()},
                                                  "rows": summary}, indent=2))
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
