"""The learning-rate schedule of every training and fine-tuning run."""
from __future__ import annotations

from rmcompress._keras import keras


def warmup_cosine(learning_rate: float, total_steps: int, warmup_fraction: float):
    """Linear warm-up to ``learning_rate`` over ``warmup_fraction`` of steps, then cosine to 0."""
    warmup = max(1, int(total_steps * warmup_fraction))
    decay = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(1, total_steps - warmup), warmup_target=learning_rate,
        warmup_steps=warmup)
    return decay


__all__ = ["warmup_cosine"]
