"""Where the prunable groups of each architecture sit: the wiring between the registry's layer
roles and the model's gates.

A *group* is a set of interchangeable units one gate vector controls:

=================  =====================================  ==========================================
architecture       group (units)                          what a closed unit removes
=================  =====================================  ==========================================
transformer        ``block{i}`` (1)                       the whole block (only the skip connection
                                                          is left)
                   ``block{i}_heads`` (heads)             one attention head (its q/k/v columns and
                                                          its rows of the output projection)
                   ``block{i}_ffn`` (ffn units)           one feed-forward unit
                   ``hidden`` (head_hidden)               one reward-head hidden unit
cnn                ``embed`` (width)                      one embedding column (a conv input channel)
                   ``conv{k}`` (filters)                  one filter of the width-``k`` convolution
                   ``hidden`` (head_hidden)               one reward-head hidden unit
bow                ``embed`` (width)                      one embedding column
                   ``hidden`` (hidden units)              one hidden unit
bert (post-LN)     ``block{i}`` (1, binary)               the whole block, LayerNorms included
                                                          (a ``BlockMix`` gate around it)
                   ``block{i}_heads`` (heads)             one attention head (0 left: the output
                                                          bias stays as ``BiasAdd``)
                   ``block{i}_ffn`` (ffn units)           one feed-forward unit (same)
all (optional)     ``vocab`` (vocab_size - 1)             one vocabulary row (row 0, padding, stays)
=================  =====================================  ==========================================

The transformer's and bert's residual width is not a group: LayerNormalization mixes all of its dimensions,
so removing one cannot be made exact. A transformer sub-layer (attention or FFN) whose units are all
closed is removed with its norm and residual add (its gate multiplies the branch by 0, bias included).

:func:`structure_for` maps every layer role onto groups (a :class:`~registry.Dim`), lists
which weights absorb non-binary gate values when shrinking (:class:`Fold`), and the least
number of units a group must keep for the shrunk graph to exist.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from rmcompress.cost.registry import Dim
from rmcompress.models.archconfig import ArchConfig


@dataclass(frozen=True)
class Fold:
    """Shrinking multiplies ``weights`` of ``layer`` by the gate values of ``group`` along the axis of
    ``role`` (``role=None``: a one-unit gate scales the whole weight)."""

    group: str
    layer: str
    weights: tuple
    role: str | None


@dataclass
class Structure:
    """The prunable groups of one architecture config (see module docstring)."""

    config: ArchConfig
    groups: dict                      # group -> full number of units
    dims: dict                        # layer name -> {role: Dim}
    present: dict                     # layer name -> Dim (0 = layer removed)
    folds: list
    min_alive: dict = field(default_factory=dict)    # group -> units it must keep
    require_any: list = field(default_factory=list)  # group tuples of which >= 1 unit must stay
    #: a layer a shrunk model may have that the source lacks -> (source layer, weight attribute)
    #: (``bert``: ``block{i}_attn_bias`` takes the output bias of ``block{i}_attn`` when every head goes)
    bias_sources: dict = field(default_factory=dict)

    def full_alive(self) -> dict:
        return dict(self.groups)


VOCAB = "vocab"


def structure_for(config: ArchConfig | dict) -> Structure:
    """The groups, role wiring and folds of ``config`` (a full or an already shrunk config)."""
    c = ArchConfig.from_dict(config) if isinstance(config, dict) else config
    groups: dict = {}
    dims: dict = {}
    present: dict = {}
    folds: list = []
    s = Structure(c, groups, dims, present, folds)
    if c.vocab_size > 1:
        groups[VOCAB] = c.vocab_size - 1
        dims["token_embedding"] = {"rows": Dim((1, VOCAB))}
        folds.append(Fold(VOCAB, "token_embedding", ("embeddings",), "rows"))
    if c.arch == "transformer":
        for i, (h, f, on) in enumerate(zip(c.per_block("heads"), c.per_block("ffn"), c.blocks_present())):
            if not on or (h <= 0 and f <= 0):
                continue
            b = f"block{i}"
            groups[b] = 1
            if h > 0:
                g = f"{b}_heads"
                groups[g] = h
                pres = Dim((1,), (b, g))
                for name in (f"{b}_attn_norm", f"{b}_attn", f"{b}_attn_residual"):
                    present[name] = pres
                dims[f"{b}_attn"] = {"heads": Dim((g,))}
                folds += [Fold(b, f"{b}_attn", ("output_kernel", "output_bias"), None),
                          Fold(g, f"{b}_attn", ("output_kernel",), "heads")]
            if f > 0:
                g = f"{b}_ffn"
                groups[g] = f
                pres = Dim((1,), (b, g))
                for name in (f"{b}_ffn_norm", f"{b}_ffn_in", f"{b}_ffn_out", f"{b}_ffn_residual"):
                    present[name] = pres
                dims[f"{b}_ffn_in"] = {"out": Dim((g,))}
                dims[f"{b}_ffn_out"] = {"in": Dim((g,))}
                folds += [Fold(b, f"{b}_ffn_out", ("kernel", "bias"), None),
                          Fold(g, f"{b}_ffn_out", ("kernel",), "in")]
        if c.head_hidden > 0:
            _hidden_structure(s, c.head_hidden, None)
        return s
    if c.arch == "bert":
        _bert_structure(s)
        return s
    groups["embed"] = c.width
    s.min_alive["embed"] = 1
    dims.setdefault("token_embedding", {})["width"] = Dim(("embed",))
    folds.append(Fold("embed", "token_embedding", ("embeddings",), "width"))
    if c.arch == "cnn":
        dims["embedding_mask"] = {"width": Dim(("embed",))}
        convs = []
        for k, n in zip(c.kernel_sizes, c.per_conv()):
            if n <= 0:
                continue
            g = f"conv{k}"
            groups[g] = n
            convs.append(g)
            dims[g] = {"in": Dim(("embed",)), "out": Dim((g,))}
            dims[f"pool{k}"] = {"width": Dim((g,))}
            folds.append(Fold(g, g, ("kernel", "bias"), "out"))
        dims["reward"] = {"in": Dim(tuple(convs))}
        s.require_any.append(tuple(convs))
        if c.head_hidden > 0:
            _hidden_structure(s, c.head_hidden, Dim(tuple(convs)))
    elif c.arch == "bow":
        dims["pool"] = {"width": Dim(("embed",))}
        if c.hidden > 0:
            _hidden_structure(s, c.hidden, Dim(("embed",)))
        else:
            dims["reward"] = {"in": Dim(("embed",))}
    return s


def _hidden_structure(s: Structure, units: int, inputs) -> None:
    """The ``hidden`` group: a ReLU layer between the pooling and ``reward`` (bow ``hidden``,
    transformer/cnn ``head_hidden``); ``inputs``: the Dim of its input (None: not a group)."""
    s.groups["hidden"] = units
    s.min_alive["hidden"] = 1
    s.dims["hidden"] = {"out": Dim(("hidden",))} if inputs is None else {"in": inputs, "out": Dim(("hidden",))}
    s.dims["reward"] = {"in": Dim(("hidden",))}
    s.folds.append(Fold("hidden", "hidden", ("kernel", "bias"), "out"))


def _bert_structure(s: Structure) -> None:
    """``bert`` (post-LN): ``block{i}`` (1, a binary gate mixing the whole block with its input),
    ``block{i}_heads``, ``block{i}_ffn``. A sub-layer with no units left keeps its output bias
    (``BiasAdd``; the attention's bias with every head closed is exactly that), its LayerNorm and no
    residual add; a closed block leaves nothing. The residual width is not a group (LayerNorm)."""
    c = s.config
    for i, (h, f, on) in enumerate(zip(c.per_block("heads"), c.per_block("ffn"), c.blocks_present())):
        if not on:
            continue
        b = f"block{i}"
        s.groups[b] = 1
        block = Dim((1,), (b,))
        for name in (f"{b}_attn", f"{b}_attn_bias", f"{b}_attn_norm", f"{b}_ffn_in", f"{b}_ffn_out",
                     f"{b}_ffn_bias", f"{b}_ffn_norm"):
            s.present[name] = block
        if h > 0:
            g = f"{b}_heads"
            s.groups[g] = h
            s.dims[f"{b}_attn"] = {"heads": Dim((g,))}
            s.present[f"{b}_attn_residual"] = Dim((1,), (b, g))
            s.folds.append(Fold(g, f"{b}_attn", ("output_kernel",), "heads"))
            s.bias_sources[f"{b}_attn_bias"] = (f"{b}_attn", "output_bias")
        if f > 0:
            g = f"{b}_ffn"
            s.groups[g] = f
            s.dims[f"{b}_ffn_in"] = {"out": Dim((g,))}
            s.dims[f"{b}_ffn_out"] = {"in": Dim((g,))}
            s.present[f"{b}_ffn_residual"] = Dim((1,), (b, g))
            s.folds.append(Fold(g, f"{b}_ffn_out", ("kernel",), "in"))
            s.bias_sources[f"{b}_ffn_bias"] = (f"{b}_ffn_out", "bias")


def default_gate_groups(structure: Structure, vocab: bool = False) -> list[str]:
    """Every group of ``structure`` (the vocabulary rows only when ``vocab``)."""
    return [g for g in structure.groups if vocab or g != VOCAB]


__all__ = ["Fold", "Structure", "structure_for", "default_gate_groups", "VOCAB"]
