"""``flat_functional``: the one model shape every pass rewrites, a flat functional tf_keras graph.

Passes edit a functional model's config (:mod:`rmcompress.compression.graph`). A user's
``Sequential`` model, or a functional model that calls another model as a layer (a nested
``Sequential``/functional block), is turned into the equivalent flat functional model: a copy of
every layer (same class, config, name and weights) called on the same tensors in the same order,
nested models inlined. The compress pipeline does this once, when it loads the model
(:func:`rmcompress.compression.state.prepare_state`).

Check: both models score ``ids``; the largest reward difference must be ``<= TOLERANCE``, else
:class:`ModelError`. Refused with a one-line :class:`ModelError`: a Sequential model without an
input shape, a layer name used both outside and inside a nested model, a subclassed model.
"""
from __future__ import annotations

import numpy as np

from rmcompress._keras import keras, tf
from rmcompress.compression.graph import Graph, rebuild
from rmcompress.errors import ModelError

TOLERANCE = 1e-5


def needs_flattening(model: keras.Model) -> bool:
    """Whether ``model`` is a ``Sequential`` or calls a nested model as a layer."""
    return isinstance(model, keras.Sequential) or any(isinstance(l, keras.Model) for l in model.layers)


def _is_tensor(x) -> bool:
    return hasattr(x, "_keras_history")


def _inline(model: keras.Model, inputs: list, names: dict) -> list:
    """``model``'s outputs (flat) computed from the new tensors ``inputs``: each node's layer is
    called again on the new tensors (nested models recursively); ``names``: layer name -> model that
    holds it (a name clash between a nested model and its outer model is refused)."""
    if not getattr(model, "_is_graph_network", False):
        raise ModelError(f"model {model.name!r} ({type(model).__name__}) has no layer graph: a Sequential "
                         "needs keras.Input(shape=(seq_len,), dtype='int32') as its first item, and a "
                         "subclassed model must be written with the functional API")
    tensors = {id(t): n for t, n in zip(model.inputs, inputs)}

    def get(x):
        if not _is_tensor(x):
            return x
        if id(x) not in tensors:
            raise ModelError(f"model {model.name!r}: a tensor ({getattr(x, 'name', '?')}) is computed outside "
                             "its layer graph")
        return tensors[id(x)]

    for depth in sorted(model._nodes_by_depth, reverse=True):  # noqa: SLF001  (the graph's node order)
        for node in model._nodes_by_depth[depth]:  # noqa: SLF001
            layer = node.layer
            if node.is_input or isinstance(layer, keras.layers.InputLayer):
                continue
            holder = names.setdefault(layer.name, model.name)
            if holder != model.name:
                raise ModelError(f"layer name {layer.name!r} is used in model {holder!r} and in its nested "
                                 f"model {model.name!r}; give the layers unique names")
            kwargs = {k: v for k, v in node.call_kwargs.items()  # implicit masks: tf_keras propagates them
                      if not (k == "mask" and any(_is_tensor(t) and id(t) not in tensors
                                                  for t in tf.nest.flatten(v)))}
            args = tf.nest.map_structure(get, node.call_args)
            kwargs = tf.nest.map_structure(get, kwargs)
            if isinstance(layer, keras.Model):
                flat = [t for t in tf.nest.flatten((args, kwargs)) if _is_tensor(t)]
                outs = _inline(layer, flat, names)
            else:
                outs = tf.nest.flatten(layer(*args, **kwargs))
            for old, new in zip(tf.nest.flatten(node.outputs), outs):
                tensors[id(old)] = new
    return [get(t) for t in model.outputs]


def _copy(model: keras.Model) -> keras.Model:
    """New layers with ``model``'s weights: inlining calls layers again, never the caller's own."""
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def flat_functional(model: keras.Model, ids: np.ndarray | None = None) -> tuple[keras.Model, dict | None]:
    """``(model, note)``: ``model`` itself and ``None`` when it is already a flat functional model,
    else the equivalent flat functional model and a note (what it was, ``max_abs_diff`` on ``ids``)."""
    if not needs_flattening(model):
        return model, None
    source = _copy(model)
    spec = model.inputs[0] if model.inputs else None
    if spec is None:
        raise ModelError(f"model {model.name!r} has no input shape; start it with "
                         "keras.Input(shape=(seq_len,), dtype='int32')")
    name = model.input_names[0] if getattr(model, "input_names", None) else "token_ids"
    new_input = keras.Input(shape=tuple(spec.shape[1:]), dtype=spec.dtype, name=name)
    outputs = _inline(source, [new_input], {})
    view = keras.Model(new_input, outputs if len(outputs) > 1 else outputs[0], name=model.name)
    flat = rebuild(view, Graph(view), name=model.name)  # independent layers, weights by name
    nested = [l.name for l in model.layers if isinstance(l, keras.Model)]
    note = {"pass": "functional", "from": type(model).__name__, "inlined_models": nested,
            "layers": len(flat.layers)}
    if ids is not None and len(ids):
        ids = np.asarray(ids, np.int32)
        a = model.predict(ids, batch_size=256, verbose=0)
        b = flat.predict(ids, batch_size=256, verbose=0)
        diff = float(np.max(np.abs(np.asarray(a, np.float64).reshape(len(ids), -1)
                                   - np.asarray(b, np.float64).reshape(len(ids), -1))))
        note["max_abs_diff"] = diff
        if not diff <= TOLERANCE:
            raise ModelError(f"model {model.name!r}: its functional form differs by {diff:.3g} > {TOLERANCE:g}")
    return flat, note
