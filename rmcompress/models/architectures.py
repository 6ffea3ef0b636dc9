"""Reward-model architectures: int32 token ids ``[B, seq_len]`` -> scalar reward ``[B, 1]``.

All three are functional tf_keras models built from named layers (so the complexity registry,
shrinking, pruning and quantisation can find every part by name):

``transformer``  token embedding + position embedding; ``depth`` pre-LN blocks
                 ``x += Attn(LN(x))``, ``x += W2 act(W1 LN(x))``; final LN; masked mean; Dense(1).
                 ``head_hidden`` > 0: a ReLU ``hidden`` layer of that many units between the pooling
                 and Dense(1) (gated: a ``hidden`` group), so a model whose blocks are all removed
                 is a bag of embeddings with a hidden layer, not a linear one. Gated: every gate
                 acts through a kernel, never on a ``[B, T, d]`` tensor: head gates scale ``Wo``'s
                 rows, FFN-unit gates ``ffn_out``'s rows, and each branch's block gate (times
                 ``any`` open unit, ``block{i}_attn_gating`` / ``block{i}_ffn_gating``) scales that
                 sub-layer's output kernel and bias.
``cnn``          token embedding (padding zeroed); parallel 'valid' Conv1D of each kernel size with
                 ReLU; masked max over time; concatenation; (``head_hidden``: a ReLU ``hidden`` layer,
                 as for the transformer); Dense(1). Gated: a filter's gate scales
                 its pooled feature (``relu(z a) = z relu(a)`` and the max commute for ``z >= 0``);
                 the embedding-column gate scales the convolution kernels' input channels
                 (``conv(x z, K) = conv(x, K z)``: ``InputGatedConv1D``, ``k C F`` multiplies per
                 step instead of ``B T C``).
``bow``          token embedding; masked mean; Dense(hidden, ReLU); Dense(1).
``bert``         BERT encoder (post-LN, what pretrained backbones are bridged into, see
                 ``rmcompress.models.backbones``): token embedding + position embedding (the
                 segment-0 token-type vector is folded into the position table); embedding LN;
                 ``depth`` blocks ``x = LN(x + Attn(x))``, ``x = LN(x + W2 act(W1 x))``; no final
                 LN; masked mean over every real token (incl. [CLS]/[SEP], as sentence-transformers
                 pools); Dense(1). ``activation`` "gelu" is the exact erf GELU, "gelu_tanh" the tanh
                 approximation. A block with 0 heads (or 0 FFN units) keeps its sub-layer's output
                 bias as ``BiasAdd`` (``block{i}_attn_bias`` / ``block{i}_ffn_bias``) before the LN.
                 Gated (``gated=True``): head gates inside the attention, unit gates after the FFN
                 activation, and a binary block gate ``z`` mixing the whole post-LN block with its
                 input, ``x = z * block(x) + (1 - z) * x`` (``block{i}_mix``; ``z = 0`` removes the
                 block exactly, LayerNorms included). No residual-width gates: LayerNorm normalises
                 over the width, so a removed column changes every other one.

Per-block/per-conv sizes may be lists (a shrunk model has uneven blocks). Layer names:
``token_embedding``, ``position_embedding``, ``block{i}_attn_norm``, ``block{i}_attn``,
``block{i}_attn_residual``, ``block{i}_ffn_norm``, ``block{i}_ffn_in``, ``block{i}_ffn_out``,
``block{i}_ffn_residual``, ``final_norm``, ``conv{k}``, ``pool``, ``hidden``, ``reward``; ``bert``
adds ``embedding_norm`` (its ``block{i}_attn_norm``/``block{i}_ffn_norm`` follow the residual add).

``input_vocab_size`` (set by ``shrink`` when vocabulary rows were removed) adds a ``token_remap``
layer that maps tokeniser ids onto the kept embedding rows. ``build_reward_model(config,
gated=True)`` inserts hard-concrete gates on every prunable group (``rmcompress.models.gating``);
the gated graph has the same named layers plus ``gate_<group>`` and ``*_gating`` layers.
"""
from __future__ import annotations

from rmcompress._keras import keras
from rmcompress.errors import ModelError
from rmcompress.layers import encoder as L
from rmcompress.models.archconfig import ArchConfig
from rmcompress.models.gating import GateBuilder


class _NoGates:
    """The gate hooks of a plain (ungated) model: identities (see ``rmcompress.models.gating``)."""

    def values(self, group, anchor, binary=False):
        return None

    def mix(self, x_in, x_out, block_z, name):
        return x_out

    def units(self, x, z, name):
        return x

    def branch_scale(self, block_z, units_z, name):
        return None

    def rows(self, x, ids, anchor):
        return x

    def conv1d(self, x, z, filters: int, kernel_size: int, name: str):
        return keras.layers.Conv1D(filters, kernel_size, padding="valid", activation="relu", name=name)(x)

    def dense(self, h, z, units: int, name: str, scale=None):
        return keras.layers.Dense(units, name=name)(h)


def build_reward_model(config: ArchConfig | dict, name: str | None = None, gated: bool = False,
                       gate_groups=None, gate_options: dict | None = None) -> keras.Model:
    """Build the untrained scorer for ``config`` (see module docstring for the graphs).

    ``gated``: insert gates on ``gate_groups`` (default: every prunable group but the vocabulary
    rows; see ``rmcompress.models.gating.GateBuilder``).
    """
    if isinstance(config, dict):
        config = ArchConfig.from_dict(config)
    gates = _NoGates()
    if gated:
        gates = GateBuilder(config, gate_groups, **(gate_options or {}))
    ids = keras.Input(shape=(config.seq_len,), dtype="int32", name="token_ids")
    mask = L.PaddingMask(name="padding_mask")(ids)
    rows = ids
    if config.input_vocab_size:
        rows = L.TokenRemap(config.input_vocab_size, name="token_remap")(ids)
    x = keras.layers.Embedding(config.vocab_size, config.width, name="token_embedding")(rows)
    x = gates.rows(x, rows, mask)
    builder = {"transformer": _transformer, "cnn": _cnn, "bow": _bow, "bert": _bert}[config.arch]
    pooled = builder(config, x, mask, gates)
    reward = keras.layers.Dense(1, name="reward")(pooled)
    return keras.Model(ids, reward, name=name or f"{config.arch}_reward_model")


def _transformer(c: ArchConfig, x, mask, gates):
    x = L.PositionEmbedding(c.seq_len, name="position_embedding")(x)
    if c.dropout:
        x = keras.layers.Dropout(c.dropout, name="embedding_dropout")(x)
    for i, (h, f, present) in enumerate(zip(c.per_block("heads"), c.per_block("ffn"), c.blocks_present())):
        if not present:
            continue
        zb = gates.values(f"block{i}", mask)
        if h > 0:
            y = keras.layers.LayerNormalization(epsilon=c.norm_epsilon, name=f"block{i}_attn_norm")(x)
            zh = gates.values(f"block{i}_heads", mask)
            g = gates.branch_scale(zb, zh, name=f"block{i}_attn_gating")  # through Wo and bo
            y = L.MultiHeadSelfAttention(h, c.head_dim, output_scale=g is not None, name=f"block{i}_attn")(
                [t for t in (y, mask, zh, g) if t is not None])
            if c.dropout:
                y = keras.layers.Dropout(c.dropout, name=f"block{i}_attn_dropout")(y)
            x = keras.layers.Add(name=f"block{i}_attn_residual")([x, y])
        if f > 0:
            y = keras.layers.LayerNormalization(epsilon=c.norm_epsilon, name=f"block{i}_ffn_norm")(x)
            y = keras.layers.Dense(f, activation=activation(c.activation), name=f"block{i}_ffn_in")(y)
            zf = gates.values(f"block{i}_ffn", mask)  # scales the rows of ffn_out's kernel
            g = gates.branch_scale(zb, zf, name=f"block{i}_ffn_gating")  # scales its kernel and bias
            y = gates.dense(y, zf, c.width, name=f"block{i}_ffn_out", scale=g)
            if c.dropout:
                y = keras.layers.Dropout(c.dropout, name=f"block{i}_ffn_dropout")(y)
            x = keras.layers.Add(name=f"block{i}_ffn_residual")([x, y])
    x = keras.layers.LayerNormalization(epsilon=c.norm_epsilon, name="final_norm")(x)
    y = L.MaskedMeanPooling(name="pool")([x, mask])
    return _hidden(c, y, mask, gates, c.head_hidden)


def _cnn(c: ArchConfig, x, mask, gates):
    z_embed = gates.values("embed", mask)  # scales the convolutions' input channels, not x
    x = L.ApplyMask(name="embedding_mask")([x, mask])
    pooled = []
    for k, n in zip(c.kernel_sizes, c.per_conv()):
        if n <= 0:
            continue
        y = gates.conv1d(x, z_embed, n, k, name=f"conv{k}")
        y = L.MaskedMaxPooling(name=f"pool{k}")([y, mask])
        # a filter's gate z >= 0 commutes with ReLU and the max (floor 0): gating the pooled
        # [B, filters] is exact and far cheaper per training step than gating [B, T', filters]
        pooled.append(gates.units(y, gates.values(f"conv{k}", mask), name=f"conv{k}_gating"))
    if not pooled:
        raise ModelError("cnn: every convolution has 0 filters")
    y = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate(name="pool")(pooled)
    if c.dropout:
        y = keras.layers.Dropout(c.dropout, name="pool_dropout")(y)
    return _hidden(c, y, mask, gates, c.head_hidden)


def _bow(c: ArchConfig, x, mask, gates):
    x = gates.units(x, gates.values("embed", mask), name="embed_gating")
    y = L.MaskedMeanPooling(name="pool")([x, mask])
    y = _hidden(c, y, mask, gates, c.hidden)
    if c.dropout and not c.hidden:
        y = keras.layers.Dropout(c.dropout, name="hidden_dropout")(y)
    return y


def _hidden(c: ArchConfig, y, mask, gates, units: int):
    """The pooled features through ``units`` ReLU units (``hidden``, gated per unit), then dropout
    (``hidden_dropout``); ``units`` 0: unchanged."""
    if units <= 0:
        return y
    y = keras.layers.Dense(units, activation="relu", name="hidden")(y)
    y = gates.units(y, gates.values("hidden", mask), name="hidden_gating")
    if c.dropout:
        y = keras.layers.Dropout(c.dropout, name="hidden_dropout")(y)
    return y


def activation(name: str):
    """An ``ArchConfig.activation`` name -> what ``Dense(activation=...)`` takes."""
    return L.gelu_tanh if name == "gelu_tanh" else name


def _bert(c: ArchConfig, x, mask, gates):
    x = L.PositionEmbedding(c.seq_len, name="position_embedding")(x)
    x = keras.layers.LayerNormalization(epsilon=c.norm_epsilon, name="embedding_norm")(x)
    if c.dropout:
        x = keras.layers.Dropout(c.dropout, name="embedding_dropout")(x)
    for i, (h, f, present) in enumerate(zip(c.per_block("heads"), c.per_block("ffn"), c.blocks_present())):
        if not present:
            continue
        x_in = x
        zb = gates.values(f"block{i}", mask, binary=True)
        if h > 0:
            zh = gates.values(f"block{i}_heads", mask)
            y = L.MultiHeadSelfAttention(h, c.head_dim, output_dim=c.width, name=f"block{i}_attn")(
                [x, mask] if zh is None else [x, mask, zh])
            if c.dropout:
                y = keras.layers.Dropout(c.dropout, name=f"block{i}_attn_dropout")(y)
            x = keras.layers.Add(name=f"block{i}_attn_residual")([x, y])
        else:
            x = L.BiasAdd(name=f"block{i}_attn_bias")(x)
        x = keras.layers.LayerNormalization(epsilon=c.norm_epsilon, name=f"block{i}_attn_norm")(x)
        if f > 0:
            y = keras.layers.Dense(f, activation=activation(c.activation), name=f"block{i}_ffn_in")(x)
            y = gates.dense(y, gates.values(f"block{i}_ffn", mask), c.width, name=f"block{i}_ffn_out")
            if c.dropout:
                y = keras.layers.Dropout(c.dropout, name=f"block{i}_ffn_dropout")(y)
            x = keras.layers.Add(name=f"block{i}_ffn_residual")([x, y])
        else:
            x = L.BiasAdd(name=f"block{i}_ffn_bias")(x)
        x = keras.layers.LayerNormalization(epsilon=c.norm_epsilon, name=f"block{i}_ffn_norm")(x)
        x = gates.mix(x_in, x, zb, name=f"block{i}_mix")
    return L.MaskedMeanPooling(name="pool")([x, mask])
