"""Loading a SavedModel the exporter wrote and scoring with its signatures
(``serving_default``: int32 ``token_ids`` -> ``reward``; ``score_text``: raw strings -> ``reward``,
which needs ``tensorflow_text``'s ops, registered by importing it).
"""
from __future__ import annotations

import os

import numpy as np

from rmcompress._keras import tf
from rmcompress.errors import ModelError


class SavedModelRunner:
    """Scores token ids with a SavedModel's ``serving_default`` signature."""

    def __init__(self, path: str | os.PathLike):
        import tensorflow_text  # noqa: F401  (registers the tokeniser ops of score_text)

        try:
            self.loaded = tf.saved_model.load(str(path))
        except Exception as e:
            raise ModelError(f"{path}: cannot load SavedModel ({str(e).splitlines()[0][:200]})") from None
        if "serving_default" not in self.loaded.signatures:
            raise ModelError(f"{path}: SavedModel has no serving_default signature "
                             f"(has: {', '.join(self.loaded.signatures) or 'none'})")
        self.fn = self.loaded.signatures["serving_default"]
        spec = self.fn.structured_input_signature[1].get("token_ids")
        if spec is None or spec.dtype != tf.int32 or spec.shape.rank != 2:
            raise ModelError(f"{path}: serving_default does not take int32 token_ids [batch, seq_len]")
        self.seq_len = spec.shape[1]

    def score(self, ids, batch_size: int = 256):
        out = []
        for i in range(0, len(ids), batch_size):
            out.append(self.fn(token_ids=tf.constant(ids[i:i + batch_size], tf.int32))["reward"].numpy().reshape(-1))
        return np.concatenate(out) if out else np.zeros((0,), np.float32)

    def score_text(self, texts):
        return self.loaded.signatures["score_text"](text=tf.constant(list(texts)))["reward"].numpy().reshape(-1)
