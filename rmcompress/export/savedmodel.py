"""SavedModel export with two serving signatures.

- ``serving_default``: ``token_ids`` int32 ``[None, seq_len]`` -> ``{"reward": [None, 1]}``;
- ``score_text``: ``text`` string ``[None]`` -> ``{"reward", "token_ids"}``, the WordPiece
  tokeniser inside the graph (servers send raw strings). Loading this signature needs
  ``import tensorflow_text`` (its ops are registered there).
"""
from __future__ import annotations

import os

from rmcompress._keras import keras, tf
from rmcompress.data.tokenizer import Tokenizer
from rmcompress.export.tflite import serving_function


class RewardServingModule(tf.Module):
    """Holds the scorer and the tokenizer so both are saved with the graph."""

    def __init__(self, model: keras.Model, tokenizer: Tokenizer):
        super().__init__()
        self.model = model
        self.tokenizer_layer = tokenizer.layer
        self._tokenizer = tokenizer
        self.score_ids = serving_function(model, tokenizer.seq_len)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def score_text(text):
            ids = tokenizer.tokenize_tf(text)
            return {"reward": model(ids, training=False), "token_ids": ids}

        self.score_text = score_text


def save(model: keras.Model, tokenizer: Tokenizer, path: str | os.PathLike) -> None:
    """Write the SavedModel to ``path`` (the caller makes it atomic)."""
    module = RewardServingModule(model, tokenizer)
    tf.saved_model.save(module, str(path), signatures={
        "serving_default": module.score_ids.get_concrete_function(),
        "score_text": module.score_text.get_concrete_function()})


class SavedModelRunner:
    """Scores token ids with a SavedModel's ``serving_default`` signature."""

    def __init__(self, path: str | os.PathLike):
        import tensorflow_text  # noqa: F401  (registers the tokeniser ops of score_text)

        from rmcompress.errors import ModelError

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
        import numpy as np

        out = []
        for i in range(0, len(ids), batch_size):
            out.append(self.fn(token_ids=tf.constant(ids[i:i + batch_size], tf.int32))["reward"].numpy().reshape(-1))
        return np.concatenate(out) if out else np.zeros((0,), np.float32)

    def score_text(self, texts):
        return self.loaded.signatures["score_text"](text=tf.constant(list(texts)))["reward"].numpy().reshape(-1)
