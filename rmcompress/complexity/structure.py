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

from rmcompress._keras import keras
from rmcompress.complexity.registry import CostModel, Dim
from rmcompress.errors import ModelError
from rmcompress.models.architectures import ArchConfig


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


def cost_model(model, structure: Structure | None = None) -> CostModel:
    """The registry over ``model`` with its roles wired to ``structure``'s groups."""
    structure = structure or structure_for(infer_arch_config(model))
    names = {layer.name for layer in model.layers}
    dims = {k: v for k, v in structure.dims.items() if k in names}
    present = {k: v for k, v in structure.present.items() if k in names}
    return CostModel(model, dims, present)


def gated_cost(model, mode: str = "deterministic", table: bool = False, structure: Structure | None = None):
    """Cost of a gated model with ``mode`` alive counts: ``full`` (the dense model), ``expected``
    (differentiable E[open gates]) or ``deterministic`` (what ``shrink`` keeps)."""
    from rmcompress.complexity.gates import alive_counts

    structure = structure or structure_for(infer_arch_config(model))
    return cost_model(model, structure).evaluate(alive_counts(model, structure, mode), table=table)


# -- reading an ArchConfig back from a built model --------------------------------------------------
def _get(model, name):
    try:
        return model.get_layer(name)
    except ValueError:
        return None


def _hidden_units(model) -> int:
    """Units of the ``hidden`` layer after the pooling (bow ``hidden``, ``head_hidden``); 0 if none."""
    hidden = _get(model, "hidden")
    return int(hidden.units) if hidden is not None else 0


def _dropout(model, names) -> float:
    for n in names:
        layer = _get(model, n)
        if layer is not None:
            return float(layer.rate)
    return 0.0


def infer_arch_config(model) -> ArchConfig:
    """The :class:`ArchConfig` a (gated, plain or shrunk) rmcompress scorer was built from.

    Raises :class:`ModelError` naming the model when it is not one of the three architectures.
    """
    names = [layer.name for layer in model.layers]
    emb = _get(model, "token_embedding")
    if emb is None or not isinstance(emb, keras.layers.Embedding) or _get(model, "reward") is None:
        raise ModelError(f"model {model.name!r} is not an rmcompress architecture "
                         f"(no token_embedding/reward layers)")
    remap = _get(model, "token_remap")
    base = dict(vocab_size=int(emb.input_dim), seq_len=int(model.input_shape[1]), width=int(emb.output_dim),
                input_vocab_size=int(remap.input_vocab_size) if remap is not None else None)
    if _get(model, "embedding_norm") is not None:
        cfg = _infer_bert(model, names, base)
    elif _get(model, "final_norm") is not None:
        blk = _infer_blocks(model, names, 16, "relu",
                            lambda i, attn, ffn_in: attn is not None or ffn_in is not None)
        if blk["dropout"] == 0.0:
            blk["dropout"] = _dropout(model, ["hidden_dropout"])
        cfg = ArchConfig(arch="transformer", **blk, norm_epsilon=float(_get(model, "final_norm").epsilon),
                         head_hidden=_hidden_units(model), **base)
    elif any(isinstance(layer, keras.layers.Conv1D) for layer in model.layers):
        convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv1D)]
        cfg = ArchConfig(arch="cnn", kernel_sizes=[int(c.kernel_size[0]) for c in convs],
                         filters=[int(c.filters) for c in convs], dropout=_dropout(model, ["pool_dropout"]),
                         head_hidden=_hidden_units(model), **base)
    else:
        cfg = ArchConfig(arch="bow", hidden=_hidden_units(model),
                         dropout=_dropout(model, ["hidden_dropout"]), **base)
    _check_matches(model, cfg)
    return cfg


def _infer_blocks(model, names, head_dim: int, act: str, present) -> dict:
    """Per-block ``heads``/``ffn``/``block_present`` (``present(i, attn, ffn_in)``), ``depth``,
    ``head_dim``, ``activation`` and ``dropout`` of a transformer-like graph with ``block{i}_*`` layers
    (the defaults apply when no block has attention / a feed-forward layer)."""
    blocks = sorted({int(n[5:].split("_")[0]) for n in names if n.startswith("block") and n[5:].split("_")[0].isdigit()})
    depth = (blocks[-1] + 1) if blocks else 0
    heads, ffn, on = [], [], []
    for i in range(depth):
        attn, ffn_in = _get(model, f"block{i}_attn"), _get(model, f"block{i}_ffn_in")
        heads.append(int(attn.num_heads) if attn is not None else 0)
        ffn.append(int(ffn_in.units) if ffn_in is not None else 0)
        on.append(bool(present(i, attn, ffn_in)))
        if attn is not None:
            head_dim = int(attn.head_dim)
        if ffn_in is not None:
            act = ffn_in.activation.__name__
    dropout = _dropout(model, ["embedding_dropout"] + [f"block{i}_{p}_dropout" for i in range(depth)
                                                        for p in ("attn", "ffn")])
    return {"depth": depth, "heads": heads, "ffn": ffn, "block_present": on, "head_dim": head_dim,
            "activation": act, "dropout": dropout}


def _infer_bert(model, names, base) -> ArchConfig:
    blk = _infer_blocks(model, names, 64, "gelu", lambda i, attn, ffn_in: _get(model, f"block{i}_attn_norm") is not None)
    return ArchConfig(arch="bert", **blk, norm_epsilon=float(_get(model, "embedding_norm").epsilon), **base)


def _check_matches(model, cfg: ArchConfig) -> None:
    """The model's non-gate layers and weight shapes must be exactly those ``cfg`` builds."""
    from rmcompress.models.architectures import build_reward_model

    ref = build_reward_model(cfg)
    mine = {layer.name: [tuple(w.shape) for w in layer.weights] for layer in model.layers
            if not getattr(layer, "_is_rmcompress_gate", False)}
    theirs = {layer.name: [tuple(w.shape) for w in layer.weights] for layer in ref.layers}
    if mine != theirs:
        diff = sorted(set(mine) ^ set(theirs)) or sorted(k for k in mine if mine[k] != theirs.get(k))
        raise ModelError(f"model {model.name!r} is not an rmcompress {cfg.arch} architecture "
                         f"(layers differ: {diff[:5]})")


__all__ = ["Fold", "Structure", "structure_for", "infer_arch_config", "cost_model", "gated_cost",
           "default_gate_groups", "VOCAB"]
