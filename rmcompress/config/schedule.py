"""How many steps a training run takes, and how they split into epochs.

``steps_per_epoch = ceil(n_train / batch_size)`` and ``epochs`` as given, unless ``max_steps`` is
set: then the run takes exactly ``max_steps`` steps (``epochs`` is not used), split into ``e``
epochs of ``max_steps / e`` steps, ``e`` the divisor of ``max_steps`` nearest to
``max_steps / ceil(n_train / batch_size)`` (an epoch stays about one pass over the training rows;
the training stream repeats, so an epoch may cross the end of the data).
"""
from __future__ import annotations

import math


def step_plan(n_train: int, batch_size: int, epochs: int, max_steps: int | None = None) -> tuple[int, int]:
    """``(steps_per_epoch, epochs)`` of the module docstring; with ``max_steps`` their product is
    exactly ``max_steps``."""
    natural = max(1, math.ceil(n_train / batch_size))
    if max_steps is None:
        return natural, int(epochs)
    target = max_steps / natural
    divisors = [d for k in range(1, math.isqrt(max_steps) + 1) if max_steps % k == 0
                for d in {k, max_steps // k}]
    e = min(divisors, key=lambda d: (abs(math.log(d / target)) if target > 0 else d, d))
    return max_steps // e, e


def split_finetune(steps_per_epoch: int, epochs: int, finetune_steps: int) -> tuple[int, int]:
    """``(gated steps per epoch, fine-tuning steps)`` when ``finetune_steps`` of the
    ``steps_per_epoch * epochs`` steps go to fine-tuning the shrunk model: the gated epochs keep
    whole steps and fine-tuning takes every step left, so the total is unchanged."""
    total = steps_per_epoch * epochs
    if not finetune_steps:
        return steps_per_epoch, 0
    gated = max(1, (total - finetune_steps) // epochs)
    return gated, max(0, total - gated * epochs)
