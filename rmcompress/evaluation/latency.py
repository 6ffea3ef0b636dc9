"""Latency of a TFLite reward model in the LiteRT interpreter: batch 1, one thread.

``runs`` timed invocations (default 200) after ``warmup`` untimed ones, cycling over real token-id
rows so the work matches real inputs; reports p50 and p90 in milliseconds.
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
