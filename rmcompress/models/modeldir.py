"""The model directory: the artifact every stage reads and writes.

Layout::

    DIR/model.keras      the scorer (tf_keras v3 format): int32 ids [B, seq_len] -> reward [B, 1]
    DIR/vocab.txt        WordPiece vocabulary (id = line number - 1)
    DIR/tokenizer_settings.json   seq_len, truncation side, lowercase, strip_accents, mode
    DIR/tokenizer.json   the same tokeniser in Hugging Face ``tokenizers`` format (for apps)
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

from rmcompress._keras import keras
from rmcompress._version import __version__
from rmcompress.data.tokenizer import Tokenizer, find_settings
from rmcompress.errors import ModelError
from rmcompress.fileio import atomic_dir, read_json, write_json
from rmcompress.layers import compressed, encoder, gates
from rmcompress.models.layout import (FORMAT, FORMAT_VERSION, METADATA_FILE, MODEL_FILE, REPORT_FILE,
                                      SAMPLES_FILE, check_model_dir)
from rmcompress.models.structure import count

SAMPLE_ROWS = 512


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
    """Every layer class the project registers (:mod:`rmcompress.layers`)."""
    return {**encoder.CUSTOM_LAYERS, **gates.CUSTOM_LAYERS, **compressed.CUSTOM_LAYERS}


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
    metadata = check_model_dir(d, expect_task)
    tokenizer = Tokenizer.load(d)
    model = load_keras_model(d / MODEL_FILE)
    shape = getattr(model, "input_shape", None)
    if isinstance(shape, tuple) and len(shape) == 2 and shape[1] not in (None, tokenizer.seq_len):
        raise ModelError(f"{d / MODEL_FILE}: takes inputs of shape {shape}, but the tokeniser "
                         f"({find_settings(d)[0]}) makes [batch, {tokenizer.seq_len}]")
    report = {}
    if (d / REPORT_FILE).is_file():
        try:
            report = read_json(d / REPORT_FILE)
        except ValueError:
            report = {}
    return RewardModelBundle(model, tokenizer, metadata, d, report)


def config_layers(config, found=None, layers_only: bool = True) -> list[tuple[str, str, str]]:
    """Every ``(layer name, class name, module)`` in a saved Keras model config (nested models too).

    ``layers_only``: only entries a Keras v3 ``config.json`` marks as layers (with a ``module`` or
    ``registered_name``, or nested ``layers``); ``False``: every ``class_name`` with a named
    ``config`` (a legacy ``.h5`` config carries no module)."""
    found = [] if found is None else found
    if isinstance(config, dict):
        cfg = config.get("config")
        if "class_name" in config and isinstance(cfg, dict) and "name" in cfg and (
                not layers_only or "layers" in cfg or "module" in config or "registered_name" in config):
            found.append((str(cfg.get("name")), str(config["class_name"]), str(config.get("module") or "")))
        for v in config.values():
            config_layers(v, found, layers_only)
    elif isinstance(config, list):
        for v in config:
            config_layers(v, found, layers_only)
    return found


def _explain_load_failure(path: Path, error: Exception) -> str:
    """Name the layer behind a failed load by reading the archive's ``config.json`` (JSON only)."""
    import json
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            config = json.loads(z.read("config.json"))
    except Exception:
        config = None
    layers = config_layers(config) if config is not None else []
    known = set(custom_objects())
    for name, cls, module in layers:
        if cls == "Lambda":
            return (f"{path}: layer {name!r} is a Lambda layer (arbitrary Python code); refused: models "
                    "are loaded in Keras safe mode (only rmcompress and built-in Keras layers)")
    for name, cls, module in layers:
        builtin = module.startswith(("keras", "tf_keras")) or hasattr(keras.layers, cls)
        if not builtin and cls not in known and cls not in ("Functional", "Sequential", "Model"):
            return (f"{path}: layer {name!r} has class {cls!r}, which is neither an rmcompress layer nor "
                    "a built-in Keras layer; it cannot be loaded")
    first = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
    return f"{path}: cannot load model ({type(error).__name__}: {first})"


def load_keras_model(path: str | os.PathLike) -> keras.Model:
    """Load a ``model.keras`` in safe mode; :class:`ModelError` naming the file (and the offending
    layer, when one is to blame) for a corrupt archive, a Lambda layer or an unknown class."""
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):
        raise ModelError(f"{path}: not a Keras model archive (corrupt, truncated or another format)")
    try:
        return keras.models.load_model(path, custom_objects=custom_objects(), compile=False, safe_mode=True)
    except Exception as e:  # TypeError/ValueError for unknown layers and Lambda, zip/h5 errors, ...
        raise ModelError(_explain_load_failure(path, e)) from None


def count_model(model: keras.Model, where):
    """``complexity.count(model)`` with ``where`` (the artifact's path) prefixed to the error a layer
    unknown to the complexity registry raises (which names the layer and its class)."""

    try:
        return count(model)
    except ModelError as e:
        raise ModelError(f"{where}: {e}") from None


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
    empty = np.zeros((0, 0), np.int32)
    if not p.is_file():
        return {"validation_ids": empty, "calibration_ids": empty}
    import zipfile

    if not zipfile.is_zipfile(p):
        raise ModelError(f"{p}: not an .npz archive (corrupt or another format)")
    try:
        with np.load(p, allow_pickle=False) as z:  # never unpickle: object arrays are refused
            out = {k: (z[k] if k in z.files else empty) for k in ("validation_ids", "calibration_ids")}
    except Exception as e:  # BadZipFile, ValueError (pickled data), OSError, ...
        raise ModelError(f"{p}: unreadable samples file ({str(e).splitlines()[0][:200]})") from None
    for k, a in out.items():
        if a.size and (a.ndim != 2 or not np.issubdtype(a.dtype, np.integer)):
            raise ModelError(f"{p}: {k} must be a 2-D integer array, got {a.dtype} {a.shape}")
    return out
