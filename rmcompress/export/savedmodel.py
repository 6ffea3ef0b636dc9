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
from rmcompress.runtime.tflite import serving_function


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
