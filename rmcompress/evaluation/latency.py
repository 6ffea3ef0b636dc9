"""Latency of a TFLite reward model in the LiteRT interpreter: batch 1, one thread.

``runs`` timed invocations (default 200) after ``warmup`` untimed ones, cycling over real token-id
rows so the work matches real inputs; reports p50 and p90 in milliseconds.

:func:`interleaved_latency` times several files against each other: ``rounds`` rounds, each timing
every file in turn for ``runs / rounds`` invocations, each figure the median of its rounds' p50 (p90),
so a change of the machine's load between two files' timings hits both and their ratio stays
(one process, the same rows).
"""
from __future__ import annotations

import time

import numpy as np

from rmcompress.runtime.tflite import TFLiteRunner

DEFAULT_RUNS = 200


def measure_latency(model, ids: np.ndarray, runs: int = DEFAULT_RUNS, warmup: int = 20,
                    num_threads: int = 1) -> dict:
    """``{"latency_ms_p50", "latency_ms_p90", "latency_runs"}`` for a ``.tflite`` path/bytes/runner."""
    runner = model if isinstance(model, TFLiteRunner) else TFLiteRunner(model, num_threads=num_threads)
    ids = np.asarray(ids, np.int32)
    if len(ids) == 0:
        ids = np.ones((1, runner.seq_len), np.int32)
    runner.prepare_single(ids.shape[1])
    rows = [ids[i:i + 1] for i in range(len(ids))]
    for i in range(warmup):
        runner.invoke(rows[i % len(rows)])
    times = np.empty(runs, np.float64)
    for i in range(runs):
        row = rows[i % len(rows)]
        t = time.perf_counter()
        runner.invoke(row)
        times[i] = time.perf_counter() - t
    return {"latency_ms_p50": float(np.percentile(times, 50) * 1e3),
            "latency_ms_p90": float(np.percentile(times, 90) * 1e3), "latency_runs": int(runs)}


def interleaved_latency(models: list, ids, runs: int = DEFAULT_RUNS, rounds: int = 3,
                        num_threads: int = 1) -> list[dict]:
    """:func:`measure_latency` of each of ``models`` (paths, bytes or runners) in ``rounds``
    interleaved rounds of ``max(1, runs // rounds)`` invocations (module docstring), in their order;
    ``latency_runs`` says how many that made. ``ids``: one array of rows every model runs, or a list
    of such arrays, one per model (each with its own tokenizer)."""
    if rounds < 1:
        raise ValueError(f"interleaved_latency: rounds {rounds} must be >= 1")
    runners = [m if isinstance(m, TFLiteRunner) else TFLiteRunner(m, num_threads=num_threads) for m in models]
    rows = [np.asarray(x) for x in ids] if isinstance(ids, (list, tuple)) else [ids] * len(runners)
    if any(x.ndim != 2 for x in rows):
        raise ValueError("interleaved_latency: ids must be a 2-d array of rows or a list of them, one per model")
    if len(rows) != len(runners):
        raise ValueError(f"interleaved_latency: {len(rows)} id arrays for {len(runners)} models")
    per = max(1, int(runs) // rounds)
    timed = [[measure_latency(r, x, runs=per) for r, x in zip(runners, rows)] for _ in range(rounds)]
    return [{"latency_ms_p50": float(np.median([t[i]["latency_ms_p50"] for t in timed])),
             "latency_ms_p90": float(np.median([t[i]["latency_ms_p90"] for t in timed])),
             "latency_runs": per * rounds, "latency_rounds": rounds} for i in range(len(runners))]
