"""Mixed-precision training (``train --mixed-precision``): the scorer computes in bfloat16; its
variables, the reward, the loss and the complexity term stay float32; the saved model is float32.

Policy: Keras' ``mixed_bfloat16`` (compute dtype bfloat16, variable dtype float32). bfloat16 has
float32's exponent range, so gradients neither underflow nor overflow and need no loss scaling:
the custom train steps (:mod:`rmcompress.training.model`, :mod:`~rmcompress.training.complexity_model`,
:mod:`~rmcompress.training.distill`), which call ``apply_gradients`` themselves, use their
optimizers as they are (no ``LossScaleOptimizer``).

- :func:`policy_scope`: the global policy is ``mixed_bfloat16`` only while the training model is
  built (layers take the policy when they are created); the previous policy is restored after,
  also when building fails.
- :func:`recast`: a copy of a model whose floating layers run under another policy, rebuilt from
  its config with the weights copied. Variables are float32 under both policies, so the copy's
  weights are bit-identical. To ``mixed_bfloat16``: a scorer rebuilt from a float32 config (an
  ``--init``/``--backbone`` start); to ``float32``: the trained scorer before it is measured and
  saved (export, compress and every other command read float32 models).
- :func:`float32_outputs`: the train steps compute every loss (task, distillation) from the
  scorer's outputs cast to float32.
- Gates: :class:`rmcompress.layers.gates.L0Gate` is always a float32 layer, so ``log_alpha``, the
  gate noise and the complexity term's expected FLOPs/params are float32 under any policy.

Devices: meant for GPUs (TensorFlow places the bfloat16 matmuls there on its own); on a CPU it
runs correctly, at best as fast as float32.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from rmcompress._keras import keras, tf
from rmcompress.errors import ModelError
from rmcompress.models.modeldir import custom_objects

MIXED = "mixed_bfloat16"
FLOAT32 = "float32"
#: the policies :func:`recast` moves a layer between (integer and other layers keep theirs)
FLOAT_POLICIES = (FLOAT32, MIXED)


@contextmanager
def policy_scope(enabled: bool = True, policy: str = MIXED):
    """Keras' global dtype policy is ``policy`` inside the block (nothing changes unless
    ``enabled``); the previous one is restored on leaving it, also on an exception."""
    if not enabled:
        yield
        return
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _policy_name(dtype) -> str | None:
    if isinstance(dtype, dict):  # a serialised Policy
        return (dtype.get("config") or {}).get("name")
    return dtype if isinstance(dtype, str) else None


def _retyped(config, policy: str):
    if isinstance(config, dict):
        return {k: policy if k == "dtype" and _policy_name(v) in FLOAT_POLICIES else _retyped(v, policy)
                for k, v in config.items()}
    if isinstance(config, list):
        return [_retyped(v, policy) for v in config]
    return config


def is_mixed(model) -> bool:
    """Whether any layer of ``model`` computes in a dtype other than its variables'."""
    return any(layer.dtype_policy.compute_dtype != layer.dtype_policy.variable_dtype
               for layer in model.submodules if isinstance(layer, keras.layers.Layer))


def recast(model: keras.Model, policy: str) -> keras.Model:
    """A copy of ``model`` (a functional model) whose floating layers run under ``policy``
    (``float32`` or ``mixed_bfloat16``), with the same weights bit for bit; raises
    :class:`ModelError` if the rebuilt model's weights do not match."""
    config = _retyped(model.get_config(), policy)
    new = keras.Model.from_config(config, custom_objects=custom_objects())
    weights = model.get_weights()
    if [w.shape for w in new.get_weights()] != [w.shape for w in weights]:
        raise ModelError(f"model {model.name!r}: the {policy} copy has other weights than the model")
    new.set_weights(weights)
    if not all(np.array_equal(a, b) for a, b in zip(new.get_weights(), weights)):
        raise ModelError(f"model {model.name!r}: the {policy} copy's weights differ from the model's")
    return new


def float32_outputs(outputs):
    """``outputs`` (a tensor or a nest of them) with every floating tensor cast to float32."""
    def cast(t):
        return tf.cast(t, tf.float32) if t is not None and t.dtype.is_floating else t
    return tf.nest.map_structure(cast, outputs)
