"""What an artifact looks like on disk, checked without TensorFlow.

The CLI calls these before it loads TensorFlow, so a wrong path or a broken ``metadata.json`` is
reported in a fraction of a second; the loaders (:mod:`rmcompress.models.modeldir`,
:mod:`rmcompress.evaluation.artifacts`) call the same functions, so the rules live here once.

A model directory holds ``model.keras`` (the scorer), ``vocab.txt`` + ``tokenizer.json``,
``metadata.json`` (format, task, architecture, provenance), ``report.json`` and ``samples.npz``.
An artifact is a model directory, a SavedModel directory (``saved_model.pb``), a ``.tflite`` file
(``TFL3`` identifier), or an export directory holding ``model.tflite`` and/or ``saved_model/``
(which resolves to its TFLite file); the last three find their tokenizer and ``metadata.json``
beside them or one folder up.
"""
from __future__ import annotations

import os
from pathlib import Path

from rmcompress.errors import ModelError
from rmcompress.fileio import read_json

MODEL_FILE = "model.keras"
METADATA_FILE = "metadata.json"
REPORT_FILE = "report.json"
SAMPLES_FILE = "samples.npz"
VOCAB_FILE = "vocab.txt"
FORMAT = "rmcompress.model"
FORMAT_VERSION = 1
TFLITE_MAGIC = b"TFL3"


#: metadata sections read as JSON objects (absent or ``null`` is fine)
OBJECT_KEYS = ("arch", "complexity", "train_config")


def read_metadata(path: Path, model_dir: bool = False) -> dict:
    """``metadata.json`` at ``path`` as a dict with a ``task`` (and, for a model directory, the
    rmcompress ``format``), its :data:`OBJECT_KEYS` objects and ``loss`` a name; one-line errors
    naming the file."""
    try:
        metadata = read_json(path)
    except ValueError as e:
        raise ModelError(f"{path}: invalid JSON ({e})") from None
    except OSError as e:
        raise ModelError(f"{path}: cannot read ({e.strerror or e})") from None
    if not isinstance(metadata, dict) or (model_dir and metadata.get("format") != FORMAT):
        raise ModelError(f"{path}: not rmcompress model metadata (no 'format': {FORMAT!r})")
    if "task" not in metadata:
        raise ModelError(f"{path}: not rmcompress model metadata (no 'task')")
    if metadata["task"] not in ("pointwise", "pairwise"):
        raise ModelError(f"{path}: 'task' = {metadata['task']!r}; allowed: pointwise, pairwise")
    for key in OBJECT_KEYS:
        if metadata.get(key) is not None and not isinstance(metadata[key], dict):
            raise ModelError(f"{path}: {key!r} = {str(metadata[key])[:60]!r}; expected a JSON object")
    if metadata.get("loss") is not None and not isinstance(metadata["loss"], str):
        raise ModelError(f"{path}: 'loss' = {str(metadata['loss'])[:60]!r}; expected a loss name")
    return metadata


def check_model_dir(path: str | os.PathLike, expect_task: str | None = None) -> dict:
    """Check that ``path`` is a complete model directory; return its metadata."""
    d = Path(path)
    if not d.exists():
        raise ModelError(f"{d}: no such model directory")
    if not d.is_dir():
        raise ModelError(f"{d}: not a directory (expected a model directory with {MODEL_FILE})")
    for name in (MODEL_FILE, METADATA_FILE):
        if not (d / name).is_file():
            raise ModelError(f"{d}: missing {name}; not a complete rmcompress model directory")
    metadata = read_metadata(d / METADATA_FILE, model_dir=True)
    if expect_task is not None and metadata["task"] != expect_task:
        raise ModelError(f"{d}: a {metadata['task']} model, but the task here is {expect_task}")
    return metadata


def find_beside(path: Path, name: str) -> Path | None:
    """The folder holding ``name``: the artifact's own folder or the one above it."""
    here = path if path.is_dir() else path.parent
    for d in (here, here.parent):
        if (d / name).is_file():
            return d
    return None


def resolve_artifact(path: str | os.PathLike) -> tuple[str, Path, dict]:
    """``(kind, path, metadata)`` of any artifact: kind ``keras`` (model directory), ``tflite`` or
    ``savedmodel``; an export directory resolves to its TFLite file (else its SavedModel)."""
    p = Path(path)
    if not p.exists():
        raise ModelError(f"{p}: no such file or directory")
    if p.is_dir() and not (p / MODEL_FILE).is_file() and not (p / "saved_model.pb").is_file():
        if (p / "model.tflite").is_file():
            p = p / "model.tflite"
        elif (p / "saved_model" / "saved_model.pb").is_file():
            p = p / "saved_model"
        else:
            raise ModelError(f"{p}: not a model directory, SavedModel, export directory or .tflite file")
    if p.is_dir() and (p / MODEL_FILE).is_file():
        return "keras", p, check_model_dir(p)
    if p.is_file():
        with open(p, "rb") as f:
            head = f.read(8)
        if len(head) < 8 or head[4:8] != TFLITE_MAGIC:
            raise ModelError(f"{p}: not a TFLite file (no TFL3 identifier)")
        kind = "tflite"
    else:
        kind = "savedmodel"
    if find_beside(p, VOCAB_FILE) is None or find_beside(p, METADATA_FILE) is None:
        raise ModelError(f"{p}: no tokeniser (vocab.txt, tokenizer.json) and metadata.json beside it; "
                         "evaluate the export directory the suite wrote")
    return kind, p, read_metadata(find_beside(p, METADATA_FILE) / METADATA_FILE)
