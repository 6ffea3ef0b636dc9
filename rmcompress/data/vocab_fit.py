"""Does a tokeniser's vocabulary fit the model it is used with? Checked from the files alone.

The tokeniser makes ids ``0 .. V-1`` (``V`` = lines of ``vocab.txt``); the model looks each up in
its token table of ``R`` rows (``metadata.json``: ``arch.input_vocab_size`` when vocabulary rows were
removed and ids are remapped, else ``arch.vocab_size``). ``V > R`` means the vocabulary belongs to
another model: a lookup would fail (or, on some devices, read zeros) mid-scoring. No TensorFlow
here, so the CLI reports it before loading the model.
"""
from __future__ import annotations

import os
from pathlib import Path

from rmcompress.errors import ModelError

VOCAB_FILE = "vocab.txt"


def vocab_lines(path: str | os.PathLike) -> int:
    """Token ids a ``vocab.txt`` defines (one token a line; a final newline ends the last)."""
    with open(path, "rb") as f:
        data = f.read()
    n = data.count(b"\n")
    return n + (1 if data and not data.endswith(b"\n") else 0)


def token_table_rows(metadata: dict) -> int | None:
    """Rows of the model's token table as its metadata states them (``None``: not stated)."""
    arch = metadata.get("arch")
    if not isinstance(arch, dict):
        return None
    rows = arch.get("input_vocab_size") or arch.get("vocab_size")
    return int(rows) if isinstance(rows, int) and not isinstance(rows, bool) else None


def mismatch_message(vocab_path, n_ids: int, model_path, rows: int | str) -> str:
    return (f"{vocab_path} defines {n_ids} token ids but {model_path} has a token table of {rows} rows: "
            "the vocabulary does not belong to this model")


def check_vocab_fits(model_dir: str | os.PathLike, metadata: dict, vocab_dir: str | os.PathLike | None = None,
                     model_file: str = "model.keras") -> None:
    """A one-line :class:`ModelError` naming both files unless the vocabulary in ``vocab_dir``
    (default: ``model_dir``) fits the token table ``metadata`` states (nothing to check when the
    metadata does not state it or there is no ``vocab.txt``)."""
    rows = token_table_rows(metadata)
    vocab = Path(vocab_dir or model_dir) / VOCAB_FILE
    if rows is None or not vocab.is_file():
        return
    try:
        n_ids = vocab_lines(vocab)
    except OSError as e:
        raise ModelError(f"{vocab}: cannot read ({e.strerror or e})") from None
    if n_ids > rows:
        raise ModelError(mismatch_message(vocab, n_ids, Path(model_dir) / model_file, rows))
