"""Open any artifact the suite writes and score token ids with it.

Kinds, told apart by what is on disk:
- ``keras``: a model directory (``model.keras`` + tokenizer + metadata);
- ``savedmodel``: a directory with ``saved_model.pb`` (tokenizer and metadata in it or its parent);
- ``tflite``: a ``.tflite`` file (tokenizer and ``metadata.json`` beside it);
- an export directory (``model.tflite`` and/or ``saved_model/``) resolves to its TFLite file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from rmcompress._keras import tf
from rmcompress.data.tokenizer import Tokenizer
from rmcompress.errors import ModelError
from rmcompress.fileio import read_json
from rmcompress.models.modeldir import MODEL_FILE, load_model_dir, count_model
from rmcompress.runtime.savedmodel import SavedModelRunner
from rmcompress.runtime.tflite import TFLiteRunner, convert
from rmcompress.sizes import file_sizes

TFLITE_MAGIC = b"TFL3"


@dataclass
class Artifact:
    kind: str
    path: Path
    tokenizer: Tokenizer
    metadata: dict
    score: Callable[[np.ndarray], np.ndarray]
    tflite_model: Callable[[], bytes | str]  # a .tflite path or float TFLite bytes for latency
    sizes: dict = field(default_factory=dict)
    complexity: dict = field(default_factory=dict)

    @property
    def task(self) -> str:
        return self.metadata["task"]


def _find_beside(path: Path, name: str) -> Path | None:
    for d in (path if path.is_dir() else path.parent, (path if path.is_dir() else path.parent).parent):
        if (d / name).is_file():
            return d
    return None


def _tokenizer_and_metadata(path: Path) -> tuple[Tokenizer, dict]:
    tok_dir = _find_beside(path, "vocab.txt")
    meta_dir = _find_beside(path, "metadata.json")
    if tok_dir is None or meta_dir is None:
        raise ModelError(f"{path}: no tokeniser (vocab.txt, tokenizer.json) and metadata.json beside it; "
                         "evaluate the export directory the suite wrote")
    try:
        meta = read_json(meta_dir / "metadata.json")
    except ValueError as e:
        raise ModelError(f"{meta_dir / 'metadata.json'}: invalid JSON ({e})") from None
    if not isinstance(meta, dict) or "task" not in meta:
        raise ModelError(f"{meta_dir / 'metadata.json'}: has no task")
    return Tokenizer.load(tok_dir), meta


def _complexity(meta: dict) -> dict:
    return {k: meta[k] for k in ("flops", "params") if k in meta}


def open_artifact(path: str | os.PathLike) -> Artifact:
    """Open ``path`` as one of the kinds in the module docstring."""

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
    if p.is_file():
        with open(p, "rb") as f:
            head = f.read(8)
        if len(head) < 8 or head[4:8] != TFLITE_MAGIC:
            raise ModelError(f"{p}: not a TFLite file (no TFL3 identifier)")

        tok, meta = _tokenizer_and_metadata(p)
        runner = TFLiteRunner(p)
        if not runner.dynamic_length and runner.seq_len != tok.seq_len:
            raise ModelError(f"{p}: takes {runner.seq_len} token ids per text, but its tokeniser makes {tok.seq_len}")
        return Artifact("tflite", p, tok, meta, runner.score, lambda: str(p), file_sizes(p), _complexity(meta))
    if (p / MODEL_FILE).is_file():
        bundle = load_model_dir(p)

        model = bundle.model

        def score(ids):
            return model.predict(np.asarray(ids, np.int32), batch_size=256, verbose=0).reshape(-1)

        return Artifact("keras", p, bundle.tokenizer, bundle.metadata, score, lambda: convert(model),
                        file_sizes(p / MODEL_FILE), count_model(model, p).as_dict())

    tok, meta = _tokenizer_and_metadata(p)
    runner = SavedModelRunner(p)
    if runner.seq_len not in (None, tok.seq_len):
        raise ModelError(f"{p}: takes {runner.seq_len} token ids per text, but its tokeniser makes {tok.seq_len}")

    def saved_to_tflite():
        conv = tf.lite.TFLiteConverter.from_saved_model(str(p), signature_keys=["serving_default"])
        return conv.convert()

    return Artifact("savedmodel", p, tok, meta, runner.score, saved_to_tflite, file_sizes(p), _complexity(meta))
