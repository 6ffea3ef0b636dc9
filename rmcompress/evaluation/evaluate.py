"""``evaluate()``: quality, size, FLOPs, params and latency of any artifact on a data file.

Report keys (ARCHITECTURE.md): ``task``, ``n_examples``, ``accuracy`` (pointwise, binary) or
``pairwise_accuracy`` (pairwise), ``flops``, ``params``, ``size_bytes``, ``size_gzip_bytes``,
``latency_ms_p50``/``latency_ms_p90`` (batch 1, one thread, LiteRT interpreter; Keras and SavedModel
artifacts are converted to float TFLite for this), plus ``artifact`` and ``kind``; for an exported
file also ``precision`` (its ``tflite_precision`` / ``savedmodel_precision`` in ``metadata.json``)
and, for a TFLite file, ``quantize``.
"""
from __future__ import annotations

import os

import numpy as np

from rmcompress.data.loaders import load_for_model
from rmcompress.data.pipeline import encode
from rmcompress.errors import UsageError
from rmcompress.evaluation.artifacts import open_artifact
from rmcompress.evaluation.latency import DEFAULT_RUNS, measure_latency
from rmcompress.metrics import quality_metrics


def evaluate(model: str | os.PathLike, data: str | os.PathLike, latency_runs: int = DEFAULT_RUNS,
             max_examples: int | None = None, seed: int = 0) -> dict:
    """Evaluate artifact ``model`` on ``data`` (a data file, or data loaded with
    :func:`rmcompress.data.loaders.load_for_model`): every row, or a seeded ``max_examples``."""

    if latency_runs < 0:
        raise UsageError(f"--latency-runs {latency_runs} must be >= 0")
    if max_examples is not None and max_examples < 1:
        raise UsageError(f"--max-examples {max_examples} must be >= 1")
    art = open_artifact(model)
    ds = load_for_model(data, art.metadata, where=art.path)
    loss = art.metadata.get("loss") or "bce"
    if max_examples is not None and len(ds) > max_examples:
        idx = np.sort(np.random.RandomState(seed).choice(len(ds), max_examples, replace=False))
        ds = ds.subset(idx)
    enc = encode(ds, art.tokenizer)
    if art.task == "pairwise":
        scores = (art.score(enc.chosen), art.score(enc.rejected))
        sample = enc.chosen
    else:
        scores = art.score(enc.ids)
        sample = enc.ids
    report = {"task": art.task, "artifact": str(art.path), "kind": art.kind, "data": str(ds.source or data),
              "n_examples": len(ds), **quality_metrics(art.task, scores, enc.labels, loss),
              **art.sizes, **art.complexity}
    if ds.skipped:
        report["skipped_rows"] = dict(ds.skipped)
    if ds.truncated:
        report["truncated_texts"] = int(ds.truncated)
    if art.kind == "tflite" and art.metadata.get("quantize"):  # a SavedModel beside it is not quantised
        report["quantize"] = art.metadata["quantize"]
    if art.metadata.get(f"{art.kind}_precision"):
        report["precision"] = art.metadata[f"{art.kind}_precision"]
    if latency_runs:
        report.update(measure_latency(art.tflite_model(), sample[:256], runs=latency_runs))
    return report
