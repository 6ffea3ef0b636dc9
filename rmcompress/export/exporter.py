"""``export_model()``: model directory -> SavedModel and/or TFLite, checked and measured.

Output directory layout::

    OUT/saved_model/     SavedModel (signatures ``serving_default`` over ids, ``score_text`` over strings)
    OUT/model.tflite     TFLite over int32 ``token_ids [batch, seq_len]`` -> reward ``[batch, 1]``
    OUT/tokenizer.json   the tokeniser in Hugging Face ``tokenizers`` format: an app loads it and
                         gets the ids ``model.tflite`` takes (rmcompress.data.hf_tokenizer)
    OUT/vocab.txt, OUT/tokenizer_settings.json   the same tokeniser as rmcompress reads it
    OUT/metadata.json    task, seq_len, lowercase, truncation side, quantize, flops/params of the model,
                         ``tflite_precision`` / ``savedmodel_precision`` of each file written
    OUT/report.json      parity against the Keras float model, sizes, latency, flops, params, the two
                         precisions, ``kind`` (the file ``size_bytes`` and ``latency_ms_p50`` measure)

Precision: the SavedModel is always the Keras model as it is (float32 weights and activations for
every model rmcompress builds); ``--quantize`` and a recipe's ``quantise`` pass change only the
TFLite file (:data:`TFLITE_PRECISION`). A quantised export therefore holds two models that differ
by the quantisation error, and both precisions are written down.

The TFLite file is run with the LiteRT interpreter on the validation sample stored in the model
directory (or ``parity_ids``) and compared with the Keras model; a float export that differs by
more than 1e-4 raises :class:`ExportError` and nothing is written.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from rmcompress import faults
from rmcompress.errors import ExportError, UsageError
from rmcompress.evaluation.latency import measure_latency
from rmcompress.export import savedmodel
from rmcompress.export.parity import check_parity, parity_metrics
from rmcompress.fileio import atomic_dir, check_destination, relative_source, write_json
from rmcompress.models.modeldir import RewardModelBundle, count_model, load_model_dir, load_samples
from rmcompress.runtime import tflite
from rmcompress.runtime.savedmodel import SavedModelRunner
from rmcompress.sizes import file_sizes

from rmcompress.config.choices import EXPORT_FORMATS as FORMATS
TFLITE_FILE = "model.tflite"
SAVEDMODEL_DIR = "saved_model"
EXPORT_FORMAT = "rmcompress.export"
#: quantize mode (``--quantize``, or a recipe's ``quantise`` mode) -> the TFLite file's precision
TFLITE_PRECISION = {"none": "float32", "float16": "float16", "dynamic": "dynamic-range int8",
                    "int4": "dynamic-range int4/int8", "int8": "int8",
                    "int16x8": "int16x8", "qat": "int8 (QAT)"}


def weights_precision(model) -> str:
    """The dtype(s) of a Keras model's floating-point weights, e.g. ``float32``."""
    names = sorted({v.dtype.name for v in model.weights if v.dtype.is_floating})
    return "/".join(names) or "float32"


def precisions(model, formats, quantize: str) -> dict:
    """``tflite_precision`` / ``savedmodel_precision`` of the files ``formats`` writes."""
    out = {}
    if "tflite" in formats:
        out["tflite_precision"] = TFLITE_PRECISION.get(quantize, quantize)
    if "savedmodel" in formats:
        out["savedmodel_precision"] = weights_precision(model)
    return out


def parse_formats(formats) -> list[str]:
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise UsageError(f"--format {','.join(formats) or '(empty)'}: allowed formats are {', '.join(FORMATS)}")
    return list(dict.fromkeys(formats))


def export_metadata(bundle: RewardModelBundle, quantize: str, complexity: dict) -> dict:
    tok = bundle.tokenizer.config
    return {"format": EXPORT_FORMAT, "task": bundle.task, "loss": bundle.metadata.get("loss"),
            "seq_len": int(tok.seq_len), "truncate": tok.keep, "lowercase": bool(tok.lowercase),
            "strip_accents": bool(tok.strip_accents), "quantize": quantize,
            "tokenizer_mode": getattr(tok, "mode", "wordpiece"), "special_ids": bundle.tokenizer.special_ids(),
            "input": {"name": "token_ids", "dtype": "int32", "shape": [-1, int(tok.seq_len)],
                      "padding_id": 0},
            "output": {"name": "reward", "dtype": "float32", "shape": [-1, 1]},
            "source_model": str(Path(bundle.path).resolve()) if bundle.path else None, **complexity}


def export_model(model, out_dir: str | os.PathLike, formats=FORMATS, quantize: str = "none",
                 parity_ids: np.ndarray | None = None, calibration_ids: np.ndarray | None = None,
                 overwrite: bool = False, latency_runs: int = 200, extra_report: dict | None = None,
                 tflite_model: bytes | None = None, parity_mode: str | None = None,
                 metadata_extra: dict | None = None, parity_pairs: bool = False,
                 reference_scores: np.ndarray | None = None) -> dict:
    """Export ``model`` (a model directory path or a loaded bundle); return the report dict.

    ``tflite_model``: a flatbuffer converted elsewhere (compression recipes: selective int8, QAT,
    dynamic length) that is checked and written instead of converting here; ``parity_mode``: the
    quantize mode whose parity bar applies (default ``quantize``); ``metadata_extra`` is merged
    into ``metadata.json``; ``parity_pairs``: ``parity_ids`` are chosen rows then rejected rows, so
    decisions are compared as pair orders; ``reference_scores``: what the TFLite file must reproduce
    on ``parity_ids`` when that is not ``bundle.model`` (a QAT model's fake-quant outputs).
    """
    formats = parse_formats(formats)
    if latency_runs < 0:
        raise UsageError(f"--latency-runs {latency_runs} must be >= 0")
    check_destination(out_dir, overwrite, inputs=[getattr(model, "path", model)])  # before any work
    bundle = model if isinstance(model, RewardModelBundle) else load_model_dir(model)
    samples = load_samples(bundle.path) if bundle.path else {}
    if parity_ids is None:
        parity_ids = samples.get("validation_ids")
    if calibration_ids is None:
        calibration_ids = samples.get("calibration_ids")
    if parity_ids is None or len(parity_ids) == 0:
        raise ExportError(f"{bundle.path}: no validation sample for the parity check (samples.npz); "
                          "pass parity_ids")
    parity_ids = np.asarray(parity_ids, np.int32)
    out_dir = Path(out_dir)

    complexity = count_model(bundle.model, bundle.path or "model").as_dict()
    reference = bundle.model.predict(parity_ids, batch_size=256, verbose=0).reshape(-1)
    tflite_reference = reference if reference_scores is None else np.asarray(reference_scores).reshape(-1)
    precision = precisions(bundle.model, formats, quantize)
    report = {"task": bundle.task, "stage": "export", "kind": "tflite" if "tflite" in formats else "savedmodel",
              "quantize": quantize, "formats": formats, **precision, **complexity}
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        if "tflite" in formats:
            flat = tflite_model if tflite_model is not None else \
                tflite.convert(bundle.model, quantize, calibration_ids, bundle.tokenizer.seq_len)
            runner = tflite.TFLiteRunner(flat)
            metrics = parity_metrics(tflite_reference, runner.score(parity_ids), pairs=parity_pairs)
            check_parity(metrics, parity_mode or quantize, what=f"{out_dir / TFLITE_FILE}")
            (tmp / TFLITE_FILE).write_bytes(flat)
            faults.point("export:after_tflite")
            report.update(metrics)
            report.update(file_sizes(tmp / TFLITE_FILE))
            if latency_runs:
                report.update(measure_latency(runner, parity_ids, runs=latency_runs))
        if "savedmodel" in formats:
            savedmodel.save(bundle.model, bundle.tokenizer, tmp / SAVEDMODEL_DIR)
            sm = SavedModelRunner(tmp / SAVEDMODEL_DIR)
            sm_metrics = parity_metrics(reference, sm.score(parity_ids))
            if sm_metrics["parity_max_abs_diff"] > 1e-4:
                raise ExportError(f"{out_dir / SAVEDMODEL_DIR}: SavedModel differs from the Keras model by "
                                  f"{sm_metrics['parity_max_abs_diff']:.3g}")
            report["savedmodel_parity_max_abs_diff"] = sm_metrics["parity_max_abs_diff"]
            report["savedmodel_size_bytes"] = file_sizes(tmp / SAVEDMODEL_DIR)["size_bytes"]
            if "tflite" not in formats:
                report["parity_max_abs_diff"] = sm_metrics["parity_max_abs_diff"]
                report.update(file_sizes(tmp / SAVEDMODEL_DIR))
        bundle.tokenizer.save(tmp)
        write_json(tmp / "metadata.json", {**export_metadata(bundle, quantize, complexity), **precision,
                                           "source_model_relative": relative_source(bundle.path, out_dir),
                                           **(metadata_extra or {})})
        if extra_report:
            report.update(extra_report)
        write_json(tmp / "report.json", report)
    return report

