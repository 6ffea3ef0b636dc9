"""Re-measure p50 latency of a `compress_levels.py` run: each seed's float32 TFLite against a level's
TFLite, interleaved in one process (rounds x seeds x both files), so a momentary hiccup of the
machine hits one sample, not one row. Prints per-seed times, the ratio per seed and mean +- sd.

    python benchmarks/remeasure_latency.py --run benchmarks/results/compress_levels --task sst2 \
        --level aggressive --seeds 0,1,2

The float32 file is exported from the run's dense model (``work/TASK-sS/dense``) into
``work/TASK-sS/float32`` when it is not there yet. Batch 1, one thread, random ids at the model's
``seq_len`` (the maximum length), median over rounds of each round's p50.

Any TFLite files against the first (e.g. the pretrained benchmark's MiniLM and its compressed
copies), the same way::

    python benchmarks/remeasure_latency.py --tflite exports/minilm/model.tflite \
        models/minilm-pretrained-aggressive/model.tflite
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", help="the --out folder of benchmarks/compress_levels.py")
    p.add_argument("--tflite", nargs="+", help="instead of --run: TFLite files, each timed against the first")
    p.add_argument("--task", default="sst2")
    p.add_argument("--level", default="aggressive")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--runs", type=int, default=500, help="timed invocations per file and round")
    args = p.parse_args(argv)
    if not args.run and not args.tflite:
        p.error("give --run or --tflite")

    from rmcompress import _quiet

    _quiet.silence()
    if args.tflite:
        return _files(args)
    from rmcompress.export.exporter import export_model
    from rmcompress.models.modeldir import load_model_dir

    work = Path(args.run) / "work"
    seeds = [int(s) for s in args.seeds.split(",")]
    files = {}
    for s in seeds:
        base = work / f"{args.task}-s{s}"
        f32 = base / "float32" / "model.tflite"
        bundle = load_model_dir(base / "dense")
        if not f32.exists():
            export_model(bundle, base / "float32", formats=["tflite"], quantize="none", latency_runs=0)
        files[s] = {"float32": f32.read_bytes(), args.level: (base / args.level / "model.tflite").read_bytes()}
    p50, seq_len = interleaved_p50({(s, name): flat for s in seeds for name, flat in files[s].items()}, args.rounds,
                             args.runs)
    ratios = []
    print(f"| seed | float32 p50 | {args.level} p50 | faster |\n| --- | --- | --- | --- |")
    for s in seeds:
        f, a = p50[(s, "float32")], p50[(s, args.level)]
        ratios.append(f / a)
        print(f"| {s} | {f * 1000:.1f} us | {a * 1000:.1f} us | {f / a:.2f}x |")
    sd = statistics.stdev(ratios) if len(ratios) > 1 else 0.0
    print(f"\n{args.task} {args.level} at {seq_len} tokens: {statistics.mean(ratios):.2f} +- {sd:.2f}x "
          f"lower p50 than float32 ({len(ratios)} seeds, {args.rounds} interleaved rounds)")
    return 0


def interleaved_p50(files: dict, rounds: int, runs: int) -> tuple[dict, int]:
    """``({key: p50 ms}, seq_len)`` of TFLite files (paths or their bytes) timed interleaved in one
    process: ``rounds`` rounds of ``runs`` calls per file, round-robin, batch 1, one thread, random
    ids at the files' fixed length (a length-bucketed file takes any); the median
    of each file's round p50s."""
    import numpy as np

    from rmcompress.evaluation.latency import interleaved_latency
    from rmcompress.runtime.tflite import TFLiteRunner

    flats = {k: f if isinstance(f, bytes) else Path(f).read_bytes() for k, f in files.items()}
    runners = [TFLiteRunner(flat) for flat in flats.values()]
    fixed = [r.seq_len for r in runners if not r.dynamic_length]
    if not fixed:
        raise SystemExit("every file takes any length: time them beside a fixed-length file (the float32 one)")
    if len(set(fixed)) > 1:
        raise SystemExit(f"the files take different fixed lengths {sorted(set(fixed))}: time each length apart")
    seq_len = fixed[0]
    del runners
    ids = np.random.RandomState(0).randint(5, 2000, size=(256, seq_len)).astype(np.int32)
    timed = interleaved_latency(list(flats.values()), ids, runs=runs * rounds, rounds=rounds)
    return {k: t["latency_ms_p50"] for k, t in zip(flats, timed)}, seq_len


def _files(args) -> int:
    p50, seq_len = interleaved_p50({f: f for f in args.tflite}, args.rounds, args.runs)
    flats = {f: Path(f).read_bytes() for f in args.tflite}
    ref = p50[args.tflite[0]]
    print(f"| file | size | p50 at {seq_len} tokens | vs first |\n| --- | --- | --- | --- |")
    for f in args.tflite:
        t = p50[f]
        print(f"| {f} | {len(flats[f]) / 1e6:.2f} MB | {t:.3f} ms | {ref / t:.2f}x faster, "
              f"{len(flats[args.tflite[0]]) / len(flats[f]):.1f}x smaller |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
