"""Benchmark: what the search's shared passes save, and that they change no result.

On a dense model of :mod:`benchmarks.compress_levels` (``OUT/work/TASK-sSEED/dense``) and the
protocol's split (:func:`benchmarks.common.protocol_splits`; the recipe ``data`` section gives every
run the protocol's train / validation rows), one rung of the search's grid at full steps: one
``budget`` fraction x factorised embedding on / off x the given precisions, no levels. These
candidates share their ``budget`` pass:

- **shared**: :func:`rmcompress.compression.search.search`, which trains the shared passes once
  (:mod:`rmcompress.compression.prefixcache`): its wall time and the CPU time of the process;
- **from scratch**: every candidate's recipe run alone by :func:`rmcompress.compression.pipeline.compress`,
  one after the other in the same process: the sum of their wall times, and the CPU time (which
  other jobs on the machine change less than the wall time);
- **same result**: per candidate, whether the compressed Keras models (``model/``) of the two runs
  have equal weights, and the validation accuracy, FLOPs and size of the two files. An ``int8``
  file with ``keep_float_ops: auto`` chooses its float ops by timing them, so two runs of it may
  keep different ops; the Keras model is the figure that must be equal.

    python benchmarks/search_sharing.py --dense OUT/work/sst2-s0/dense --task sst2 --seed 0 --out OUT2

Writes ``OUT2/sharing.json`` and prints a markdown table.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def same_weights(a: Path, b: Path) -> bool:
    from rmcompress.models.modeldir import load_model_dir

    wa, wb = load_model_dir(a).model.get_weights(), load_model_dir(b).model.get_weights()
    return len(wa) == len(wb) and all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(wa, wb))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dense", required=True, help="the dense model directory")
    p.add_argument("--task", default="sst2", choices=["sst2", "hh"])
    p.add_argument("--seed", type=int, default=0, help="the dense model's training seed (recorded; the split is the protocol's)")
    p.add_argument("--budget", type=float, default=0.1)
    p.add_argument("--precisions", default="int8,dynamic")
    p.add_argument("--latency-runs", type=int, default=50)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)

    from common import protocol_splits

    from rmcompress.compression.pipeline import compress
    from rmcompress.compression.search import Settings, Space, search

    out = Path(args.out)
    proto = protocol_splits(args.task)
    settings = Settings(max_drop=0.5, objective="latency", rungs=1, latency_runs=args.latency_runs,
                        space=Space(levels=(), budgets=(args.budget,), factorise=(True, False), sparsity=(0.0,),
                                    precisions=tuple(args.precisions.split(","))),
                        data=dict(proto.data_settings))
    t0, c0 = time.time(), time.process_time()
    search(args.dense, proto.rest, out / "search", settings, log=lambda m: print(f"search: {m}", flush=True))
    shared, shared_cpu = time.time() - t0, time.process_time() - c0
    rows = []
    quality = "pairwise_accuracy" if args.task == "hh" else "accuracy"
    c1 = time.process_time()
    for c in settings.space.candidates():
        t = time.time()
        alone = compress(args.dense, c.recipe(1.0, settings.data), proto.rest, out / "scratch" / c.name,
                         latency_runs=args.latency_runs)
        seconds = time.time() - t
        run = json.loads((out / "search" / "candidates" / f"{c.name}-r0" / "report.json").read_text())
        rows.append({"candidate": c.name, "scratch_seconds": round(seconds, 1), "search_seconds": run["seconds"],
                     "reused": [q["pass"] for q in run["passes"] if q.get("reused")],
                     "same_keras_weights": same_weights(out / "search" / "candidates" / f"{c.name}-r0" / "model",
                                                        out / "scratch" / c.name / "model"),
                     **{f"{k}_{w}": r[quality if k == "accuracy" else k] for k in ("accuracy", "flops", "size_bytes")
                        for w, r in (("search", run), ("scratch", alone))}})
        print(f"{c.name}: {seconds:.0f} s alone, {run['seconds']:.0f} s in the search", flush=True)
    scratch, scratch_cpu = sum(r["scratch_seconds"] for r in rows), time.process_time() - c1
    result = {"task": args.task, "seed": args.seed, "dense": str(args.dense), "budget": args.budget,
              "search_seconds": round(shared, 1), "scratch_seconds": round(scratch, 1),
              "speedup": scratch / shared, "search_cpu_seconds": round(shared_cpu, 1),
              "scratch_cpu_seconds": round(scratch_cpu, 1), "cpu_ratio": scratch_cpu / shared_cpu,
              "candidates": rows}
    (out / "sharing.json").write_text(json.dumps(result, indent=1))
    print(f"\nsearch with shared passes: {shared:.0f} s ({shared_cpu:.0f} s CPU); the same candidates from "
          f"scratch: {scratch:.0f} s ({scratch_cpu:.0f} s CPU): {scratch / shared:.2f}x wall, "
          f"{scratch_cpu / shared_cpu:.2f}x CPU\n")
    print("| candidate | passes reused | seconds in the search | seconds alone | same Keras weights | "
          "validation accuracy or pairwise accuracy (search / alone) | FLOPs equal | size (search / alone) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['candidate']} | {', '.join(r['reused']) or '-'} | {r['search_seconds']:.0f} | "
              f"{r['scratch_seconds']:.0f} | {'yes' if r['same_keras_weights'] else 'no'} | "
              f"{r['accuracy_search']:.4f} / {r['accuracy_scratch']:.4f} | "
              f"{'yes' if r['flops_search'] == r['flops_scratch'] else 'no'} | "
              f"{r['size_bytes_search']} / {r['size_bytes_scratch']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
