"""Open any artifact the suite writes and score token ids with it.

Kinds, told apart by what is on disk:
- ``keras``: a model directory (``model.keras`` + tokenizer + metadata);
- ``savedmodel``: a directory with ``saved_model.pb`` (tokenizer and metadata in it or its parent);
- ``tflite``: a ``.tflite`` file (tokenizer and ``metadata.json`` beside it);
- an export directory (``model.tflite`` and/or ``saved_model/``) resolves to its TFLite file.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from rmcompress._keras import tf
from rmcompress.data.tokenizer import Tokenizer
from rmcompress.data.vocab_fit import mismatch_message, token_table_rows
from rmcompress.errors import ModelError
from rmcompress.models.layout import (METADATA_FILE, MODEL_FILE, VOCAB_FILE, find_beside, read_metadata,
                                      resolve_artifact)
from rmcompress.models.modeldir import count_model, load_model_dir
from rmcompress.runtime.savedmodel import SavedModelRunner
from rmcompress.runtime.tflite import TFLiteRunner, convert
from rmcompress.sizes import file_sizes

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


def _tokenizer_and_metadata(path: Path) -> tuple[Tokenizer, dict]:
    tok_dir = find_beside(path, VOCAB_FILE)
    meta_dir = find_beside(path, METADATA_FILE)
    return Tokenizer.load(tok_dir), read_metadata(meta_dir / METADATA_FILE)


def _complexity(meta: dict) -> dict:
    return {k: meta[k] for k in ("flops", "params") if k in meta}


def open_artifact(path: str | os.PathLike) -> Artifact:
    """Open ``path`` as one of the kinds in the module docstring, its vocabulary checked against
    the model's token table (:func:`check_vocabulary`)."""
    art = _open(path)
    check_vocabulary(art)
    return art


def check_vocabulary(art: Artifact) -> None:
    """A one-line :class:`ModelError` naming the vocabulary and the model unless the model can look
    up the tokeniser's highest id (``vocab.txt`` from another model): the lookup is tried on one
    text before any scoring, so the mismatch is not reported as a failure of the scoring op."""
    tok = art.tokenizer
    vocab = (find_beside(art.path, VOCAB_FILE) or art.path) / VOCAB_FILE
    rows = token_table_rows(art.metadata)
    if rows is not None and tok.vocab_size > rows:
        raise ModelError(mismatch_message(vocab, tok.vocab_size, art.path, rows))
    ids = np.zeros((1, tok.seq_len), np.int32)
    ids[0, 0] = tok.vocab_size - 1
    try:
        art.score(ids)
    except (tf.errors.InvalidArgumentError, RuntimeError, ValueError) as e:
        bound = re.search(r"is not in \[0, (\d+)\)", str(e))  # TensorFlow states the table's rows
        rows = bound.group(1) if bound else f"fewer than {tok.vocab_size}"
        raise ModelError(mismatch_message(vocab, tok.vocab_size, art.path, rows)) from None


def _open(path: str | os.PathLike) -> Artifact:

    kind, p, _ = resolve_artifact(path)  # the on-disk checks, shared with the CLI's preflight
    if kind == "tflite":
        tok, meta = _tokenizer_and_metadata(p)
        runner = TFLiteRunner(p)
        if not runner.dynamic_length and runner.seq_len != tok.seq_len:
            raise ModelError(f"{p}: takes {runner.seq_len} token ids per text, but its tokeniser makes {tok.seq_len}")
        return Artifact("tflite", p, tok, meta, runner.score, lambda: str(p), file_sizes(p), _complexity(meta))
    if kind == "keras":
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
