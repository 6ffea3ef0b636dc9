"""Shrinking a gated model whose groups came from its layer graph
(:func:`rmcompress.models.dependency.discover`, gated by :mod:`rmcompress.structured.gating`).

The gated graph is re-traced (:func:`rmcompress.models.dependency.replay`) without its gate
layers: ``InputGatedDense``/``InputGatedConv1D``/``HeadGatedMultiHeadAttention`` become the
``Dense``/``Conv1D``/``MultiHeadAttention`` they stand for, with ``units``/``filters``/
``output_dim``/``num_heads`` cut to the units whose deterministic gate is non-zero. Each weight is
cut along the axes the registry's ``LayerFacts.slices`` give its roles; the kept gate values are
folded first into the weights that read them (a consumer's kernel rows, ``W'[f] = z_f W[f]``, exact
because the kernel is linear in its input; an attention layer's output-projection rows of each
head). A stream group's gates (``WidthGate`` on a writer's output, ``GatedLayerNormalization``,
``GatedPositionEmbedding``) fold into the writer's output weights (``W'[:, c] = z_c W[:, c]``,
``b'_c = z_c b_c``, ``gamma'_c = z_c gamma_c``, ``beta'_c = z_c beta_c``, the position table's
columns): the gated norm over the open channels is the plain norm of the kept ones. Every other
layer is a copy of itself with its per-channel weights cut (BatchNormalization).
Vocabulary rows (the ``vocab`` group) leave the embedding; a ``TokenRemap`` (``token_remap``,
made or updated; int16 ids up to 32,768 kept rows) sends every removed token id to row 0, which
becomes all-zero (what ``RowGate`` gave a closed row; padding is masked by id before the remap).
A residual branch left with no unit (an attention layer with no head, a feed-forward pair with no
unit) goes with its residual add and the normalisation that fed only it; the output projection's
bias it still added is folded into the layer that made the residual
(:class:`rmcompress.models.dependency.BranchRemoval`), later branches first, so a bias folded into a
branch that goes too travels on with that branch's own.
The result is a plain model of the user's own layer classes, loadable without rmcompress.
"""
from __future__ import annotations

import numpy as np

from rmcompress._keras import keras, tf
from rmcompress.cost.registry import facts_for, weight_of
from rmcompress.errors import ModelError
from rmcompress.layers.encoder import MultiHeadSelfAttention, PositionEmbedding, TokenRemap, remap_dtype
from rmcompress.layers.gates import (GATE_LAYERS, GatedLayerNormalization, GatedPositionEmbedding,
                                     HeadGatedMultiHeadAttention, InputGatedConv1D, InputGatedDense, RowGate, WidthGate,
                                     deterministic_gates)
from rmcompress.models.dependency import VOCAB, Structure, graph_nodes, replay
from rmcompress.structured.gating import layer_config

#: the gated stand-in -> the class it stands for
_PLAIN = {InputGatedDense: keras.layers.Dense, InputGatedConv1D: keras.layers.Conv1D,
          HeadGatedMultiHeadAttention: keras.layers.MultiHeadAttention,
          GatedLayerNormalization: keras.layers.LayerNormalization, GatedPositionEmbedding: PositionEmbedding}
#: stand-ins called on ``[x, z]`` (the plain layer takes ``x``)
_ON_X_AND_Z = (InputGatedDense, InputGatedConv1D, GatedLayerNormalization, GatedPositionEmbedding)
#: class -> (config key, role) of the size a shrunk copy is built with
_SIZE_KEYS = {keras.layers.Dense: ("units", "out"), keras.layers.Conv1D: ("filters", "out"),
              keras.layers.Embedding: ("output_dim", "width"), keras.layers.MultiHeadAttention: ("num_heads", "heads"),
              MultiHeadSelfAttention: ("num_heads", "heads")}


def _index(dim, keep: dict, sizes: dict, unit: int = 1) -> np.ndarray:
    """Indices kept along an axis laid out as ``dim.segments`` (each unit spans ``unit`` elements)."""
    out, offset = [], 0
    for seg in dim.segments:
        n = seg if isinstance(seg, int) else sizes[seg]
        idx = np.arange(n) if isinstance(seg, int) else keep[seg]
        out.append(offset + (idx[:, None] * unit + np.arange(unit)[None, :]).reshape(-1))
        offset += n * unit
    return np.concatenate(out).astype(np.int64)


def _vector(dim, z: dict, sizes: dict, only=None) -> np.ndarray:
    """The gate values along an axis laid out as ``dim.segments`` (ones for kept-whole segments and
    for groups not in ``only``, when given)."""
    return np.concatenate([np.ones(s) if isinstance(s, int) else
                           z.get(s, np.ones(sizes[s])) if only is None or s in only else np.ones(sizes[s])
                           for s in dim.segments])


def shrink_graph(model, structure: Structure, name: str | None = None) -> keras.Model:
    """The plain model ``model``'s deterministic gates describe (module docstring)."""
    sizes = structure.groups
    z = {g: np.ones(n) for g, n in sizes.items()}
    z.update(deterministic_gates(model))
    for block, members in structure.blocks.items():  # a branch's units read their gate times the block's
        for g in members:
            z[g] = z[g] * z[block].reshape(-1)[0]
    keep = {g: np.nonzero(v > 0)[0] for g, v in z.items()}
    gone = {name: r for name, r in structure.removals.items() if len(keep[r.group]) == 0}
    dropped = {n for r in gone.values() for n in r.removed if n != r.add}
    adds = {r.add: name for name, r in gone.items()}
    folds = _bias_folds(model, gone, structure, z, keep)
    made: dict = {}

    vocab_cut = VOCAB in keep and len(keep[VOCAB]) < sizes[VOCAB]

    def call(node, args, kwargs):
        layer = node.layer
        if isinstance(layer, (RowGate, WidthGate)):  # x * g[ids], x * z: x (the gates are folded)
            return args[0][0]
        if isinstance(layer, GATE_LAYERS) or layer.name in dropped:
            return None
        if layer.name in adds:  # x + branch(...) with no unit left: x (its bias folded below)
            x = next(x for x in tf.nest.flatten((args, kwargs)) if x is not None and hasattr(x, "shape"))
            if getattr(x, "_keras_mask", None) is not None and getattr(node.outputs, "_keras_mask", None) is None:
                return tf.identity(x)  # the add dropped the Keras mask x carries; so does this
            return x
        cls = _PLAIN.get(type(layer), type(layer))
        dims = structure.dims.get(layer.name, {})
        if type(layer) in _ON_X_AND_Z:
            args = (args[0][0],) + tuple(args[1:])
        if type(layer) is MultiHeadSelfAttention:  # [x, mask, head gates]: [x, mask]
            args = (list(args[0][:2]),) + tuple(args[1:])
        kwargs = {k: v for k, v in kwargs.items() if k != "head_gates"}
        new = made.get(id(layer))
        if new is None:
            cfg = layer_config(layer)
            key = _SIZE_KEYS.get(cls)
            if key is not None and key[1] in dims:
                cfg[key[0]] = int(len(_index(dims[key[1]], keep, sizes)))
            if layer.name == structure.vocab_embedding:
                cfg["input_dim"] = int(len(_index(dims["rows"], keep, sizes)))
            out_key = {MultiHeadSelfAttention: "output_dim", keras.layers.MultiHeadAttention: "output_shape"}.get(cls)
            if out_key is not None and "out" in dims:  # the output width, stated (it may differ from the input's)
                n_out = int(len(_index(dims["out"], keep, sizes)))
                cfg[out_key] = n_out if cls is MultiHeadSelfAttention else [n_out]
            new = cls.from_config(cfg)
        if layer.name == structure.vocab_embedding and vocab_cut:
            args = (_remap(model, layer, args[0], keep[VOCAB], made),) + tuple(args[1:])
        out = new(*args, **kwargs)
        if id(layer) not in made:
            made[id(layer)] = new
            _set_weights(layer, new, dims, z, keep, sizes, structure)
        return out

    inputs, outputs = replay(model, call)
    for (target, attr), bias in folds.items():  # x + b: b into the last layer that adds into x
        weight = weight_of(made[id(model.get_layer(target))], attr)
        if weight.shape[-1] != len(bias):
            raise ModelError(f"shrink: the bias of a removed branch ({len(bias)} channels) does not fit "
                             f"{target}.{attr} {tuple(weight.shape)}")
        weight.assign(weight.numpy() + bias.reshape((1,) * (weight.shape.rank - 1) + (-1,)))
    return keras.Model(inputs, outputs if len(outputs) > 1 else outputs[0], name=name or model.name)


def _remap(model, embedding, ids, kept, made):
    """The token rows the shrunk ``embedding`` reads: ``ids`` through a ``TokenRemap`` sending kept
    row ``kept[i] + 1`` to ``i + 1`` and every removed row to 0 (the source's own remap, composed, or
    a new ``token_remap``)."""
    rows = int(embedding.input_dim)
    row_map = np.zeros(rows, np.int32)
    row_map[np.asarray(kept) + 1] = np.arange(1, len(kept) + 1)
    source = ids._keras_history.layer
    if isinstance(source, TokenRemap):  # already re-traced: compose its table with this one
        if np.any(embedding.embeddings.numpy()[0] != 0):
            raise ModelError(f"shrink: model {model.name!r} already had vocabulary rows removed and its shared "
                             "row 0 was trained since; its rows cannot be cut again")
        source.table.assign(row_map[source.table.numpy()].astype(source.table.dtype.as_numpy_dtype))
        return ids
    names = {layer.name for layer in model.layers}
    remap = TokenRemap(rows, table_dtype=remap_dtype(len(kept) + 1),
                       name="token_remap" if "token_remap" not in names else f"{embedding.name}_remap")
    out = remap(ids)
    remap.table.assign(row_map.astype(remap.table_dtype))
    made[id(remap)] = remap
    return out


def _bias_folds(model, gone: dict, structure: Structure, z: dict, keep: dict) -> dict:
    """``{(target layer, weight attr): bias}`` of the removed branches ``gone``: each one's constant
    output (its own bias plus what later removed branches folded into it), added to the layer that
    made its residual. Later branches go first (a target always precedes its add). A bias written
    into a stream group carries its gates and is cut to the kept channels."""
    order = {node.layer.name: i for i, node in enumerate(graph_nodes(model))}
    extra: dict = {}   # (layer, attr) -> sum of biases folded into it so far
    out: dict = {}
    for r in sorted(gone.values(), key=lambda r: -order[r.add]):
        if r.bias is None:
            continue
        bias = weight_of(model.get_layer(r.bias[0]), r.bias[1]).numpy().astype(np.float64)
        out_dim = structure.output_gates(r.bias[0])
        if out_dim is not None:
            bias = bias * _vector(out_dim, z, structure.groups, structure.streams)
        bias = bias + extra.pop(tuple(r.bias), 0.0)
        key = (r.target, r.attr)
        extra[key] = extra.get(key, 0.0) + bias
    for key, bias in extra.items():
        dim = _last_axis_dim(model.get_layer(key[0]), key[1], structure)
        if dim is not None:
            bias = np.asarray(bias)[_index(dim, keep, structure.groups)]
        out[key] = np.asarray(bias, np.float64).astype(np.float32)
    return out


def _last_axis_dim(layer, attr: str, structure: Structure):
    """The Dim of weight ``attr``'s last axis in ``layer`` (None: that axis is not cut)."""
    axes = dict(facts_for(layer).slices.get(attr, ()))
    rank = weight_of(layer, attr).shape.rank
    dims = structure.dims.get(layer.name, {})
    for role, axis in axes.items():
        if axis in (rank - 1, -1) and role in dims:
            return dims[role]
    return None


def _set_weights(src, new, dims, z, keep, sizes, structure) -> None:
    """``new``'s weights: ``src``'s, gate values folded in and cut to the kept units."""
    if not src.weights:
        return
    facts = facts_for(src)
    by_id = {}
    for attr in facts.slices:
        try:
            by_id[id(weight_of(src, attr))] = attr
        except AttributeError:
            continue
    fold_in = structure.input_gates(src.name) if type(src) in (InputGatedDense, InputGatedConv1D) else None
    read_gated = set(sizes) - set(structure.streams)
    written = structure.writers.get(src.name)
    heads = structure.head_groups.get(src.name) if isinstance(src, (HeadGatedMultiHeadAttention,
                                                                     MultiHeadSelfAttention)) else None
    units = facts.units(src)
    values = []
    for w, target in zip(src.weights, new.weights):
        value = w.numpy().astype(np.float64)
        attr = by_id.get(id(w))
        axes = dict(facts.slices.get(attr, ()))
        if fold_in is not None and "in" in axes and attr == "kernel":
            shape = [1] * value.ndim
            shape[axes["in"]] = -1
            value = value * _vector(fold_in, z, sizes, read_gated).reshape(shape)
        if written is not None and written in axes:  # z into what the layer writes into a stream group
            shape = [1] * value.ndim
            shape[axes[written]] = -1
            value = value * _vector(dims[written], z, sizes, structure.streams).reshape(shape)
        if src.name == structure.vocab_embedding and attr == "embeddings":
            value = value * _vector(dims["rows"], z, sizes)[:, None]
            if len(keep.get(VOCAB, ())) < sizes.get(VOCAB, 0):
                value[0] = 0.0  # the shared row of removed tokens
        if heads is not None and attr in ("_output_dense.kernel", "output_kernel"):
            per_row = np.repeat(z[heads], units.get("heads", 1))  # Wo: [H, dh, d] or [H*dh, d]
            value = value * per_row.reshape([-1] + [1] * (value.ndim - 1))
        for role, axis in axes.items():
            if role in dims:
                value = np.take(value, _index(dims[role], keep, sizes, units.get(role, 1)), axis=axis)
        if tuple(value.shape) != tuple(target.shape):
            raise ModelError(f"shrink: weight {w.name!r} of layer {src.name!r} has shape {value.shape} after "
                             f"cutting; the shrunk layer wants {tuple(target.shape)} (a role the complexity "
                             "registry does not slice)")
        values.append(value.astype(np.float32))
    new.set_weights(values)


__all__ = ["shrink_graph"]
