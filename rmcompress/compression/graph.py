"""Rewrite a functional tf_keras model through its config, then rebuild it with weights.

Every structural pass (fuse, factorise, ...) works the same way: take ``model.get_config()``
(a list of layer entries, each with ``inbound_nodes`` naming its input layers), edit the entries
(:class:`Graph` offers bypass/replace/insert), rebuild with :func:`rebuild`, and hand the new
layers their weights (by default every layer keeps the weights of the old layer with the same
name when their shapes agree). A layer's inputs are every tensor reference in its call: the first
argument's (for ``TFOpLambda`` a single reference) and those in its keyword arguments (``y`` of
``x + y``, ``value`` of attention), so a rewrite sees every reader of a tensor. Models whose layers
are called more than once (shared layers) are refused: the reward models never share layers, and
rewiring them is ambiguous; so are ``Sequential`` and nested models (a pass gets the flat
functional form of :mod:`rmcompress.compression.functional`).
"""
from __future__ import annotations

import copy
from typing import Iterable

import numpy as np

from rmcompress._keras import keras
from rmcompress.errors import ModelError
from rmcompress.models.modeldir import custom_objects as model_objects


def _is_ref(x, names) -> bool:
    """A tensor reference ``[layer, node, tensor]`` (``[..., kwargs]`` as a first argument)."""
    return (isinstance(x, list) and len(x) in (3, 4) and isinstance(x[0], str) and x[0] in names
            and isinstance(x[1], int) and isinstance(x[2], int) and (len(x) == 3 or isinstance(x[3], dict)))


def _walk_refs(data, names, visit) -> None:
    """Call ``visit(container, key)`` for every tensor reference in a node's data: the first-argument
    references (a list of ``[layer, node, tensor, kwargs]``, or one such reference for layers that keep
    their input structure, e.g. ``TFOpLambda``) and those inside ``kwargs`` (the other arguments:
    ``y`` of ``x + y``, ``value`` of attention)."""
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in list(items):
        if _is_ref(value, names):
            visit(data, key)
            if len(value) == 4:
                _walk_refs(value[3], names, visit)
        else:
            _walk_refs(value, names, visit)


class Graph:
    """An editable copy of a functional model's config."""

    def __init__(self, model: keras.Model):
        if not getattr(model, "_is_graph_network", False):
            raise ModelError(f"model {model.name!r} is not a functional tf_keras model; cannot rewrite it")
        if isinstance(model, keras.Sequential) or any(isinstance(l, keras.Model) for l in model.layers):
            raise ModelError(f"model {model.name!r} is a Sequential model or calls a nested model; passes "
                             "rewrite flat functional models (rmcompress.compression.functional.flat_functional)")
        self.config = copy.deepcopy(model.get_config())
        for entry in self.config["layers"]:
            entry.pop("build_config", None)  # rebuilt from the inbound tensors instead
            if len(entry.get("inbound_nodes", [])) > 1:
                raise ModelError(f"layer {entry['name']!r} is called {len(entry['inbound_nodes'])} times; "
                                 "shared layers cannot be rewritten")

    # -- queries ----------------------------------------------------------------------------------
    @property
    def entries(self) -> list[dict]:
        return self.config["layers"]

    def entry(self, name: str) -> dict:
        for e in self.entries:
            if e["name"] == name:
                return e
        raise ModelError(f"no layer named {name!r} in the model")

    def has(self, name: str) -> bool:
        return any(e["name"] == name for e in self.entries)

    @property
    def names(self) -> set[str]:
        return {e["name"] for e in self.entries}

    def _refs(self, entry: dict) -> list[list]:
        found: list = []
        _walk_refs(entry.get("inbound_nodes", []), self.names, lambda c, k: found.append(c[k]))
        return found

    def inputs_of(self, name: str) -> list[str]:
        """Names of the layers feeding ``name``: its first call argument's, then those of its other
        arguments (``y`` of ``x + y``, ``value`` of attention), in call order."""
        return [r[0] for r in self._refs(self.entry(name))]

    def consumers_of(self, name: str) -> list[str]:
        """Names of the layers that take ``name``'s output as an input (in any argument)."""
        return [e["name"] for e in self.entries if any(r[0] == name for r in self._refs(e))]

    def is_output(self, name: str) -> bool:
        return any(r[0] == name for r in self.config["output_layers"])

    def class_name(self, name: str) -> str:
        return self.entry(name)["class_name"]

    def layer_config(self, name: str) -> dict:
        return self.entry(name)["config"]

    # -- edits ------------------------------------------------------------------------------------
    def _rename_refs(self, old: str, new_ref: list) -> None:
        """Every reference to ``old``'s output (in any argument, and the model outputs) reads
        ``new_ref`` instead; a first-argument reference keeps its own kwargs."""
        names = self.names | {old, new_ref[0]}

        def visit(container, key):
            r = container[key]
            if r[0] == old:
                container[key] = [new_ref[0], new_ref[1], new_ref[2]] + ([r[3]] if len(r) == 4 else [])

        for e in self.entries:
            _walk_refs(e.get("inbound_nodes", []), names, visit)
        for i, r in enumerate(self.config["output_layers"]):
            if r[0] == old:
                self.config["output_layers"][i] = list(new_ref[:3])

    def bypass(self, name: str) -> None:
        """Remove single-input layer ``name``; its consumers read its input instead."""
        refs = self._refs(self.entry(name))
        if len(refs) != 1:
            raise ModelError(f"layer {name!r} does not have exactly one input; cannot bypass it")
        src = refs[0]
        self.config["layers"] = [e for e in self.entries if e["name"] != name]
        self._rename_refs(name, src)

    def set_inputs(self, name: str, inputs: Iterable[str]) -> None:
        self.entry(name)["inbound_nodes"] = [[[n, 0, 0, {}] for n in inputs]]

    def replace(self, name: str, class_name: str, config: dict, module: str | None = None,
                registered_name: str | None = None) -> None:
        """Swap layer ``name`` for a layer of another class (same name, same inputs)."""
        e = self.entry(name)
        e["class_name"] = class_name
        e["config"] = {**config, "name": name}
        e["module"] = module
        e["registered_name"] = registered_name

    def insert_after(self, name: str, new_entry: dict) -> None:
        """Insert ``new_entry`` (fed by ``name``) and route ``name``'s consumers through it."""
        new_name = new_entry["name"]
        idx = next(i for i, e in enumerate(self.entries) if e["name"] == name)
        consumers = self.consumers_of(name)
        out = self.is_output(name)
        self._rename_refs(name, [new_name, 0, 0])
        new_entry = {**new_entry, "inbound_nodes": [[[name, 0, 0, {}]]]}
        self.entries.insert(idx + 1, new_entry)
        if not consumers and not out:
            raise ModelError(f"layer {name!r} has no consumers; nothing to insert after")


def layer_entry(layer_cls, config: dict, name: str) -> dict:
    """A config entry for a layer class (built-in tf_keras or a registered project layer)."""
    registered = keras.utils.get_registered_name(layer_cls)
    is_builtin = registered == layer_cls.__name__
    return {"module": "keras.layers" if is_builtin else layer_cls.__module__,
            "class_name": layer_cls.__name__, "config": {**config, "name": name},
            "registered_name": None if is_builtin else registered, "name": name}


def rebuild(model: keras.Model, graph: Graph, weights: dict[str, list[np.ndarray]] | None = None,
            name: str | None = None, custom_objects: dict | None = None) -> keras.Model:
    """Build ``graph`` and load weights: ``weights[layer]`` where given, else the old layer's."""

    cfg = copy.deepcopy(graph.config)
    if name:
        cfg["name"] = name
    try:
        new = keras.Model.from_config(cfg, custom_objects={**model_objects(), **(custom_objects or {})})
    except Exception as e:
        raise ModelError(f"rewritten model does not build ({type(e).__name__}: {str(e).splitlines()[0][:300]})") from None
    weights = weights or {}
    old = {l.name: l for l in model.layers}
    for layer in new.layers:
        if layer.name in weights:
            values = weights[layer.name]
        elif layer.name in old:
            values = old[layer.name].get_weights()
        else:
            values = None
        if values is None:
            if layer.weights:
                raise ModelError(f"no weights for new layer {layer.name!r}")
            continue
        shapes = [tuple(w.shape) for w in layer.weights]
        if shapes != [tuple(np.shape(v)) for v in values]:
            raise ModelError(f"layer {layer.name!r}: weight shapes {shapes} do not match "
                             f"{[tuple(np.shape(v)) for v in values]}")
        layer.set_weights(values)
    return new
