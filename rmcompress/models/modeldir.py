"""The model directory: the artifact every stage reads and writes.

Layout::

    DIR/model.keras      the scorer (tf_keras v3 format): int32 ids [B, seq_len] -> reward [B, 1]
    DIR/vocab.txt        WordPiece vocabulary (id = line number - 1)
    DIR/tokenizer.json   seq_len, truncation side, lowercase, strip_accents
    DIR/metadata.json    format, task, label kind, loss, architecture config, provenance
    DIR/report.json      the measurements of the stage that wrote it
    DIR/samples.npz      up to 512 token-id rows of validation data (``validation_ids``, for parity
                         checks) and of training data (``calibration_ids``, for int8 calibration)

Loading uses Keras safe mode: no ``Lambda`` or other arbitrary code is deserialised; only
registered ``rmcompress`` layers and built-in tf_keras layers are accepted.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from rmcompress import __version__
from rmcompress._keras import keras
from rmcompress.data.tokenizer import Tokenizer
from rmcompress.errors import ModelError
from rmcompress.fileio import atomic_dir, read_json, write_json

MODEL_FILE = "model.keras"
METADATA_FILE = "metadata.json"
REPORT_FILE = "report.json"
SAMPLES_FILE = "samples.npz"
SAMPLE_ROWS = 512
FORMAT = "rmcompress.model"
FORMAT_VERSION = 1


@dataclass
class RewardModelBundle:
    """A loaded model directory: the tf_keras scorer, its tokenizer and metadata."""

    model: keras.Model
    tokenizer: Tokenizer
    metadata: dict
    path: Path | None = None
    report: dict = field(default_factory=dict)

    @property
    def task(self) -> str:
        return self.metadata["task"]


def custom_objects() -> dict:
    """Every layer class the project registers (importing the modules registers them)."""
    from rmcompress.models import layers

    objs = dict(layers.CUSTOM_LAYERS)
    try:  # gate layers live with the complexity package
        from rmcompress.complexity import gates

        objs.update(getattr(gates, "CUSTOM_LAYERS", {}))
    except ImportError:
        pass
    from rmcompress.compress import layers as compress_layers  # fused / factorised layers

    objs.update(compress_layers.CUSTOM_LAYERS)
    return objs


def save_model_dir(dest: str | os.PathLike, model: keras.Model, tokenizer: Tokenizer, metadata: dict,
                   report: dict | None = None, overwrite: bool = False, extra=None) -> Path:
    """Write a complete model directory atomically; ``extra(tmpdir)`` may add files."""
    dest = Path(dest)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "rmcompress_version": __version__,
            **metadata}
    with atomic_dir(dest, overwrite=overwrite) as tmp:
        model.save(tmp / MODEL_FILE, save_format="keras")
        tokenizer.save(tmp)
        write_json(tmp / METADATA_FILE, meta)
        if report is not None:
            write_json(tmp / REPORT_FILE, report)
        if extra is not None:
            extra(tmp)
    return dest


def is_model_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / MODEL_FILE).is_file()


def load_model_dir(path: str | os.PathLike, expect_task: str | None = None) -> RewardModelBundle:
    """Load a model directory (safe mode). Raises :class:`ModelError` naming what is missing."""
    d = Path(path)
    if not d.exists():
        raise ModelError(f"{d}: no such model directory")
    if not d.is_dir():
        raise ModelError(f"{d}: not a directory (expected a model directory with {MODEL_FILE})")
    for name in (MODEL_FILE, METADATA_FILE):
        if not (d / name).is_file():
            raise ModelError(f"{d}: missing {name}; not a complete rmcompress model directory")
    try:
        metadata = read_json(d / METADATA_FILE)
    except ValueError as e:
        raise ModelError(f"{d / METADATA_FILE}: invalid JSON ({e})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT or "task" not in metadata:
        raise ModelError(f"{d / METADATA_FILE}: not rmcompress model metadata")
    if expect_task is not None and metadata["task"] != expect_task:
        raise ModelError(f"{d}: a {metadata['task']} model, but the task here is {expect_task}")
    tokenizer = Tokenizer.load(d)
    try:
        model = keras.models.load_model(d / MODEL_FILE, custom_objects=custom_objects(),
                                        compile=False, safe_mode=True)
    except Exception as e:  # Keras raises TypeError/ValueError for unknown layers, zip errors, ...
        raise ModelError(f"{d / MODEL_FILE}: cannot load model ({type(e).__name__}: {str(e).splitlines()[0][:300]})") from None
    report = {}
    if (d / REPORT_FILE).is_file():
        try:
            report = read_json(d / REPORT_FILE)
        except ValueError:
            report = {}
    return RewardModelBundle(model, tokenizer, metadata, d, report)


def save_samples(directory: str | os.PathLike, validation_ids, calibration_ids, seed: int = 0) -> None:
    """Store up to :data:`SAMPLE_ROWS` rows of each (a seeded random subset) in ``samples.npz``."""
    import numpy as np

    rng = np.random.RandomState(seed)

    def pick(a):
        a = np.asarray(a, np.int32)
        if len(a) > SAMPLE_ROWS:
            a = a[np.sort(rng.choice(len(a), SAMPLE_ROWS, replace=False))]
        return a

    np.savez_compressed(Path(directory) / SAMPLES_FILE, validation_ids=pick(validation_ids),
                        calibration_ids=pick(calibration_ids))


def load_samples(directory: str | os.PathLike) -> dict:
    """``{"validation_ids", "calibration_ids"}`` (empty arrays if the file is absent)."""
    import numpy as np

    p = Path(directory) / SAMPLES_FILE
    if not p.is_file():
        return {"validation_ids": np.zeros((0, 0), np.int32), "calibration_ids": np.zeros((0, 0), np.int32)}
    with np.load(p, allow_pickle=False) as z:
        return {k: z[k] for k in ("validation_ids", "calibration_ids")}
