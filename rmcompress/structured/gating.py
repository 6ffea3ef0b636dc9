"""A gated version of a plain scorer: hard-concrete gates on every prunable group, every weight
copied, every gate open (so the gated model computes exactly what the plain one does).

The model (an rmcompress architecture or any other functional/Sequential model: one path) is
re-traced through its layer graph (:func:`rmcompress.models.dependency.replay`) with one
``L0Gate`` per group found by :func:`rmcompress.models.dependency.discover`, applied where the
group's channels are read: each consumer ``Dense``/``Conv1D`` becomes
``InputGatedDense``/``InputGatedConv1D`` on ``[x, z]`` (``z`` through its kernel rows; a
concatenated input reads a ``GateConcat`` vector) and each ``MultiHeadAttention`` with a heads
group becomes ``HeadGatedMultiHeadAttention`` with ``head_gates=z`` (rmcompress's
``MultiHeadSelfAttention`` reads ``z`` as its third input). A block group's gate multiplies the
gates of its branches' groups (``GateMultiply``), so a closed block closes every unit of both. The
``vocab`` group (only when asked for: rows cost params, not FLOPs) scales the embedding's output by
its row's gate (``RowGate``, row 0 never gated). A stream group (a width a normalisation or an
attention layer reads: the residual width) is gated where it is written: each producer's output
through a ``WidthGate``, each ``LayerNormalization`` becomes a ``GatedLayerNormalization`` (statistics
over the open channels, output times the gates) and a ``PositionEmbedding`` a
``GatedPositionEmbedding``; its consumers read it ungated. Every other layer is a fresh copy of
itself (from its config, same weights). Gate ``g`` is the layer ``gate_<g>``, its noise seeded by
:func:`gate_seed`.
"""
from __future__ import annotations

import zlib

from rmcompress._keras import keras
from rmcompress.errors import ModelError
from rmcompress.layers.encoder import MultiHeadSelfAttention
from rmcompress.layers.encoder import PositionEmbedding
from rmcompress.layers.gates import (DEFAULT_INIT_LOG_ALPHA, GateConcat, GateMultiply, GatedLayerNormalization,
                                     GatedPositionEmbedding, HeadGatedMultiHeadAttention, InputGatedConv1D,
                                     InputGatedDense, L0Gate, RowGate, WidthGate)
from rmcompress.models.dependency import VOCAB, replay
from rmcompress.models.structure import structure_of


def gate_name(group: str) -> str:
    return f"gate_{group}"


def gate_seed(base: int, group: str) -> int:
    return (int(base) * 1_000_003 + zlib.crc32(group.encode())) % (2 ** 31 - 1)


def gated_copy(model, gate_vocab: bool = False, groups=None, init_log_alpha: float = DEFAULT_INIT_LOG_ALPHA,
               seed: int = 0, gate_width: bool = False) -> keras.Model:
    """A gated version of a plain scorer with the same weights (all gates open).

    ``groups``: the groups to gate (default: all but ``vocab`` and the stream groups;
    ``gate_vocab`` adds the vocabulary rows when the model has that group, ``gate_width`` the
    stream groups, e.g. a transformer's residual width)."""
    structure = structure_of(model)
    if groups is None:
        groups = structure.default_gate_groups(vocab=gate_vocab, width=gate_width)
    groups = list(groups)
    unknown = [g for g in groups if g not in structure.groups]
    if unknown:
        raise ModelError(f"cannot gate {unknown}: the groups of model {model.name!r} are {sorted(structure.groups)}")
    names = {layer.name for layer in model.layers}
    clash = [gate_name(g) for g in groups if gate_name(g) in names]
    clash += [f"{gate_name(g)}_times_block" for b, m in structure.blocks.items() if b in groups for g in m
              if f"{gate_name(g)}_times_block" in names]
    clash += [f"{VOCAB}_gating"] if VOCAB in groups and f"{VOCAB}_gating" in names else []
    clash += [f"{w}_width_gate" for w in structure.writers if f"{w}_width_gate" in names]
    if clash:
        raise ModelError(f"model {model.name!r} already has a layer named {clash[0]!r}; rename it")
    made: dict = {}     # id(source layer) -> new layer (shared layers stay shared)
    taken = set(names)  # layer names in use (a shared writer's second call gets a numbered gate)
    state: dict = {}    # the gate tensors, made on the first input

    blocks = {b: m for b, m in structure.blocks.items() if b in groups}
    for b, members in blocks.items():
        missing = [g for g in members if g not in groups]
        if missing:
            raise ModelError(f"cannot gate block {b!r} without its branches' groups {missing}")

    def gates():
        if not state:
            anchor = new_inputs[0]
            for g in groups:
                state[g] = L0Gate(structure.groups[g], init_log_alpha, gate_seed(seed, g), name=gate_name(g))(anchor)
            for b, members in blocks.items():  # a branch's units read their gate times the block's
                for g in members:
                    state[g] = GateMultiply(("units", "scalar"), name=f"{gate_name(g)}_times_block")(
                        [state[g], state[b]])
        return state

    def vector(dim, name, wanted):
        """The gate vector along ``dim`` (segments in ``wanted`` gated, the rest ones), or None."""
        segs = dim.segments
        flags = [isinstance(s, str) and s in groups and s in wanted for s in segs]
        if not any(flags):
            return None
        z = gates()
        if len(segs) == 1:
            return z[segs[0]]
        sizes = [s if isinstance(s, int) else structure.groups[s] for s in segs]
        return GateConcat(sizes, flags, name=name)([z[s] for s, f in zip(segs, flags) if f])

    read_gated = set(structure.groups) - set(structure.streams)

    def input_gate(layer):
        dim = structure.input_gates(layer.name)
        return None if dim is None else vector(dim, f"{layer.name}_gates", read_gated)

    def output_gate(layer):
        dim = structure.output_gates(layer.name)
        return None if dim is None else vector(dim, f"{layer.name}_width_gates", structure.streams)

    def call(node, args, kwargs):
        layer = node.layer
        cfg = layer_config(layer)
        written = output_gate(layer)
        stream_norm = type(layer) in (keras.layers.LayerNormalization, PositionEmbedding) and written is not None
        if type(layer) in (keras.layers.Dense, keras.layers.Conv1D) and input_gate(layer) is not None:
            cls = InputGatedDense if isinstance(layer, keras.layers.Dense) else InputGatedConv1D
            new = made.get(id(layer)) or cls.from_config(cfg)
            out = new([args[0], input_gate(layer)], **kwargs)
        elif type(layer) is keras.layers.MultiHeadAttention and structure.head_groups.get(layer.name) in groups:
            new = made.get(id(layer)) or HeadGatedMultiHeadAttention.from_config(cfg)
            out = new(*args, head_gates=gates()[structure.head_groups[layer.name]], **kwargs)
        elif type(layer) is MultiHeadSelfAttention and structure.head_groups.get(layer.name) in groups:
            new = made.get(id(layer)) or MultiHeadSelfAttention.from_config(cfg)
            out = new(list(args[0][:2]) + [gates()[structure.head_groups[layer.name]]], *args[1:], **kwargs)
        elif stream_norm:
            cls = GatedLayerNormalization if type(layer) is keras.layers.LayerNormalization else GatedPositionEmbedding
            new = made.get(id(layer)) or cls.from_config(cfg)
            out = new([args[0], written], *args[1:], **kwargs)
        else:
            new = made.get(id(layer)) or type(layer).from_config(cfg)
            out = new(*args, **kwargs)
            if layer.name == structure.vocab_embedding and VOCAB in groups:
                out = RowGate(name=f"{VOCAB}_gating")([out, args[0], gates()[VOCAB]])
        if written is not None and not stream_norm:
            out = WidthGate(name=_unique(f"{layer.name}_width_gate", taken))([out, written])
        if id(layer) not in made:
            made[id(layer)] = new
            new.set_weights(layer.get_weights())
        return out

    new_inputs = [keras.Input(shape=t.shape[1:], dtype=t.dtype, name=layer.name)
                  for t, layer in zip(model.inputs, model._input_layers)]
    inputs, outputs = replay(model, call, new_inputs)
    return keras.Model(inputs, outputs if len(outputs) > 1 else outputs[0], name=model.name)


def _unique(name: str, taken: set) -> str:
    out, i = name, 1
    while out in taken:
        out, i = f"{name}_{i}", i + 1
    taken.add(out)
    return out


def layer_config(layer) -> dict:
    """``layer.get_config()`` without the input-shape keys a Sequential's first layer carries."""
    cfg = dict(layer.get_config())
    for key in ("batch_input_shape", "input_shape", "batch_size"):
        cfg.pop(key, None)
    return cfg


__all__ = ["gated_copy", "layer_config", "gate_name", "gate_seed"]
