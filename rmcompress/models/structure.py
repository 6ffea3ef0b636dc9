"""What a built scorer is, read back from its layers: the :class:`ArchConfig` an rmcompress scorer
was built from (:func:`infer_arch_config`, checked against a fresh build), the prunable groups of
any scorer (:func:`structure_of`: found in its layer graph by
:func:`rmcompress.models.dependency.discover`, the shipped architectures included), its cost model
wired to those groups (:func:`cost_model`, :func:`gated_cost`) and its exact count (:func:`count`).
"""
from __future__ import annotations

import pandas as pd

from rmcompress._keras import keras
from rmcompress.cost.registry import PARTS, ComplexityReport, CostModel, is_gated
from rmcompress.errors import ModelError
from rmcompress.layers.gates import alive_counts
from rmcompress.models.archconfig import ArchConfig
from rmcompress.models.architectures import build_reward_model
from rmcompress.models.dependency import Structure, discover


def is_architecture(model) -> bool:
    """True when ``model`` is one of rmcompress's own architectures (plain, gated or shrunk)."""
    try:
        infer_arch_config(model)
    except ModelError:
        return False
    return True


def with_arch(metadata: dict, model) -> dict:
    """``metadata`` with ``arch`` set to ``model``'s :class:`ArchConfig` (an rmcompress
    architecture) or removed (any other model: its layers describe it)."""
    out = {k: v for k, v in metadata.items() if k != "arch"}
    if is_architecture(model):
        out["arch"] = infer_arch_config(model).to_dict()
    return out


def structure_of(model) -> Structure:
    """The prunable groups of ``model`` (plain or gated), found in its layer graph
    (:func:`rmcompress.models.dependency.discover`)."""
    return discover(model)


def cost_model(model, structure: Structure | None = None) -> CostModel:
    """The registry over ``model`` with its roles wired to ``structure``'s groups."""
    structure = structure or structure_of(model)
    names = {layer.name for layer in model.layers}
    dims = {k: v for k, v in structure.dims.items() if k in names}
    present = {k: v for k, v in structure.present.items() if k in names}
    return CostModel(model, dims, present)


def gated_cost(model, mode: str = "deterministic", table: bool = False, structure: Structure | None = None):
    """Cost of a gated model with ``mode`` alive counts: ``full`` (the dense model), ``expected``
    (differentiable E[open gates]) or ``deterministic`` (what ``shrink`` keeps)."""
    structure = structure or structure_of(model)
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
    ref = build_reward_model(cfg)
    mine = {layer.name: [tuple(w.shape) for w in layer.weights] for layer in model.layers
            if not getattr(layer, "_is_rmcompress_gate", False)}
    theirs = {layer.name: [tuple(w.shape) for w in layer.weights] for layer in ref.layers}
    if mine != theirs:
        diff = sorted(set(mine) ^ set(theirs)) or sorted(k for k in mine if mine[k] != theirs.get(k))
        raise ModelError(f"model {model.name!r} is not an rmcompress {cfg.arch} architecture "
                         f"(layers differ: {diff[:5]})")


def count(model: keras.Model) -> ComplexityReport:
    """Exact FLOPs per example and params of a functional tf_keras model (the conventions of
    :mod:`rmcompress.cost.registry`).

    A gated model is counted as the model ``shrink`` would make of it (its deterministic alive
    units); gate layers themselves cost nothing.
    """
    if is_gated(model):
        cost = gated_cost(model, mode="deterministic", table=True)
    else:
        cost = CostModel(model).evaluate(table=True)
    columns = ["layer", "type", "flops", "params"] + [f"flops_{k}" for k in PARTS]
    table = pd.DataFrame(cost.rows, columns=columns)
    return ComplexityReport(int(table["flops"].sum()), int(table["params"].sum()), table)


__all__ = ["infer_arch_config", "is_architecture", "structure_of", "with_arch", "cost_model", "gated_cost", "count"]
