"""Per-example task losses of reward models (reduced by the caller, see ``training``).

- ``bce``:  ``softplus(r) - y r``  (binary cross-entropy on the reward logit ``r``, label ``y``).
- ``mse``:  ``(r - y)^2``;  ``mae``:  ``|r - y|``.
- pairwise: ``-log sigmoid(r_c - r_r - margin) = softplus(-(r_c - r_r - margin))``, plus the
  optional reward-centering term ``c * (r_c + r_r)^2`` per pair (its mean over the batch is
  ``c * mean((r_c + r_r)^2)``, as in TRL's ``center_rewards_coefficient``).
"""
from __future__ import annotations

from rmcompress._keras import tf

from rmcompress.config.choices import POINTWISE_LOSSES


def pointwise_loss(name: str, reward, labels):
    """``[B]`` per-example losses for rewards ``[B]`` or ``[B, 1]`` and labels ``[B]``."""
    r = tf.reshape(tf.cast(reward, tf.float32), [-1])
    y = tf.reshape(tf.cast(labels, tf.float32), [-1])
    if name == "bce":
        return tf.nn.softplus(r) - y * r
    if name == "mse":
        return tf.square(r - y)
    if name == "mae":
        return tf.abs(r - y)
    raise ValueError(f"pointwise loss {name!r} unknown; allowed: {', '.join(POINTWISE_LOSSES)}")


def pairwise_loss(r_chosen, r_rejected, margin=None, center_coefficient: float = 0.0):
    """``[B]`` per-pair losses (see module docstring)."""
    rc = tf.reshape(tf.cast(r_chosen, tf.float32), [-1])
    rr = tf.reshape(tf.cast(r_rejected, tf.float32), [-1])
    diff = rc - rr
    if margin is not None:
        diff = diff - tf.reshape(tf.cast(margin, tf.float32), [-1])
    loss = tf.nn.softplus(-diff)
    if center_coefficient:
        loss = loss + center_coefficient * tf.square(rc + rr)
    return loss
