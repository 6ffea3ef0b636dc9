"""Reward-model architectures: int32 token ids ``[B, seq_len]`` -> scalar reward ``[B, 1]``.

All three are functional tf_keras models built from named layers (so the complexity registry,
shrinking, pruning and quantisation can find every part by name):

``transformer``  token embedding + position embedding; ``depth`` pre-LN blocks
                 ``x += Attn(LN(x))``, ``x += W2 act(W1 LN(x))``; final LN; masked mean; Dense(1).
                 ``head_hidden`` > 0: a ReLU ``hidden`` layer of that many units between the pooling
                 and Dense(1) (gated: a ``hidden`` group), so a model whose blocks are all removed
                 is a bag of embeddings with a hidden layer, not a linear one.
``cnn``          token embedding (padding zeroed); parallel 'valid' Conv1D of each kernel size with
                 ReLU; masked max over time; concatenation; (``head_hidden``: a ReLU ``hidden`` layer,
                 as for the transformer); Dense(1).
``bow``          token embedding; masked mean; Dense(hidden, ReLU); Dense(1).
``bert``         BERT encoder (post-LN, what pretrained backbones are bridged into, see
                 ``rmcompress.models.backbones``): token embedding + position embedding (the
                 segment-0 token-type vector is folded into the position table); embedding LN;
                 ``depth`` blocks ``x = LN(x + Attn(x))``, ``x = LN(x + W2 act(W1 x))``; no final
                 LN; masked mean over every real token (incl. [CLS]/[SEP], as sentence-transformers
                 pools); Dense(1). ``activation`` "gelu" is the exact erf GELU, "gelu_tanh" the tanh
                 approximation. A block with 0 heads (or 0 FFN units) has that sub-layer's
                 LayerNorm only (``shrink`` folds the output bias it still added into the layer
                 before).

Per-block/per-conv sizes may be lists (a shrunk model has uneven blocks). Layer names:
``token_embedding``, ``position_embedding``, ``block{i}_attn_norm``, ``block{i}_attn``,
``block{i}_attn_residual``, ``block{i}_ffn_norm``, ``block{i}_ffn_in``, ``block{i}_ffn_out``,
``block{i}_ffn_residual``, ``final_norm``, ``conv{k}``, ``pool``, ``hidden``, ``reward``; ``bert``
adds ``embedding_norm`` (its ``block{i}_attn_norm``/``block{i}_ffn_norm`` follow the residual add).

``input_vocab_size`` (set by ``shrink`` when vocabulary rows were removed) adds a ``token_remap``
layer that maps tokeniser ids onto the kept embedding rows (int16 ids where ``vocab_size`` allows).
Nothing here knows about gates: the
prunable groups of these graphs are found like any user model's
(:func:`rmcompress.models.dependency.discover`) and ``rmcompress.structured.gating.gated_copy``
gates them.
"""
from __future__ import annotations

from rmcompress._keras import keras
from rmcompress.errors import ModelError
from rmcompress.layers import encoder as L
from rmcompress.models.archconfig import ArchConfig


def build_reward_model(config: ArchConfig | dict, name: str | None = None) -> keras.Model:
    """Build the untrained scorer for ``config`` (see module docstring for the graphs)."""
    if isinstance(config, dict):
        config = ArchConfig.from_dict(config)
    ids = keras.Input(shape=(config.seq_len,), dtype="int32", name="token_ids")
    mask = L.PaddingMask(name="padding_mask")(ids)
    rows = ids
    if config.input_vocab_size:
        rows = L.TokenRemap(config.input_vocab_size, table_dtype=L.remap_dtype(config.vocab_size),
                            name="token_remap")(ids)
    x = keras.layers.Embedding(config.vocab_size, config.width, name="token_embedding")(rows)
    builder = {"transformer": _transformer, "cnn": _cnn, "bow": _bow, "bert": _bert}[config.arch]
    pooled = builder(config, x, mask)
    reward = keras.layers.Dense(1, name="reward")(pooled)
    return keras.Model(ids, reward, name=name or f"{config.arch}_reward_model")


def _transformer(c: ArchConfig, x, mask):
    x = L.PositionEmbedding(c.seq_len, name="position_embedding")(x)
    if c.dropout:
        x = keras.layers.Dropout(c.dropout, name="embedding_dropout")(x)
    for i, (h, f, present) in enumerate(zip(c.per_block("heads"), c.per_block("ffn"), c.blocks_present())):
        if not present:
            continue
        if h > 0:
            y = keras.layers.LayerNormalization(epsilon=c.norm_epsilon, name=f"block{i}_attn_norm")(x)
            y = L.MultiHeadSelfAttention(h, c.head_dim, name=f"block{i}_attn")([y, mask])
            if c.dropout:
                y = keras.layers.Dropout(c.dropout, name=f"block{i}_attn_dropout")(y)
            x = keras.layers.Add(name=f"block{i}_attn_residual")([x, y])
        if f > 0:
            y = keras.layers.LayerNormalization(epsilon=c.norm_epsilon, name=f"block{i}_ffn_norm")(x)
            y = keras.layers.Dense(f, activation=activation(c.activation), name=f"block{i}_ffn_in")(y)
            y = keras.layers.Dense(c.width, name=f"block{i}_ffn_out")(y)
            if c.dropout:
                y = keras.layers.Dropout(c.dropout, name=f"block{i}_ffn_dropout")(y)
            x = keras.layers.Add(name=f"block{i}_ffn_residual")([x, y])
    x = keras.layers.LayerNormalization(epsilon=c.norm_epsilon, name="final_norm")(x)
    y = L.MaskedMeanPooling(name="pool")([x, mask])
    return _hidden(c, y, c.head_hidden)


def _cnn(c: ArchConfig, x, mask):
    x = L.ApplyMask(name="embedding_mask")([x, mask])
    pooled = []
    for k, n in zip(c.kernel_sizes, c.per_conv()):
        if n <= 0:
            continue
        y = keras.layers.Conv1D(n, k, padding="valid", activation="relu", name=f"conv{k}")(x)
        pooled.append(L.MaskedMaxPooling(name=f"pool{k}")([y, mask]))
    if not pooled:
        raise ModelError("cnn: every convolution has 0 filters")
    y = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate(name="pool")(pooled)
    if c.dropout:
        y = keras.layers.Dropout(c.dropout, name="pool_dropout")(y)
    return _hidden(c, y, c.head_hidden)


def _bow(c: ArchConfig, x, mask):
    y = L.MaskedMeanPooling(name="pool")([x, mask])
    y = _hidden(c, y, c.hidden)
    if c.dropout and not c.hidden:
        y = keras.layers.Dropout(c.dropout, name="hidden_dropout")(y)
    return y


def _hidden(c: ArchConfig, y, units: int):
    """The pooled features through ``units`` ReLU units (``hidden``), then dropout
    (``hidden_dropout``); ``units`` 0: unchanged."""
    if units <= 0:
        return y
    y = keras.layers.Dense(units, activation="relu", name="hidden")(y)
    if c.dropout:
        y = keras.layers.Dropout(c.dropout, name="hidden_dropout")(y)
    return y


def activation(name: str):
    """An ``ArchConfig.activation`` name -> what ``Dense(activation=...)`` takes."""
    return L.gelu_tanh if name == "gelu_tanh" else name


def _bert(c: ArchConfig, x, mask):
    x = L.PositionEmbedding(c.seq_len, name="position_embedding")(x)
    x = keras.layers.LayerNormalization(epsilon=c.norm_epsilon, name="embedding_norm")(x)
    if c.dropout:
        x = keras.layers.Dropout(c.dropout, name="embedding_dropout")(x)
    for i, (h, f, present) in enumerate(zip(c.per_block("heads"), c.per_block("ffn"), c.blocks_present())):
        if not present:
            continue
        if h > 0:
            y = L.MultiHeadSelfAttention(h, c.head_dim, output_dim=c.width, name=f"block{i}_attn")([x, mask])
            if c.dropout:
                y = keras.layers.Dropout(c.dropout, name=f"block{i}_attn_dropout")(y)
            x = keras.layers.Add(name=f"block{i}_attn_residual")([x, y])
        x = keras.layers.LayerNormalization(epsilon=c.norm_epsilon, name=f"block{i}_attn_norm")(x)
        if f > 0:
            y = keras.layers.Dense(f, activation=activation(c.activation), name=f"block{i}_ffn_in")(x)
            y = keras.layers.Dense(c.width, name=f"block{i}_ffn_out")(y)
            if c.dropout:
                y = keras.layers.Dropout(c.dropout, name=f"block{i}_ffn_dropout")(y)
            x = keras.layers.Add(name=f"block{i}_ffn_residual")([x, y])
        x = keras.layers.LayerNormalization(epsilon=c.norm_epsilon, name=f"block{i}_ffn_norm")(x)
    return L.MaskedMeanPooling(name="pool")([x, mask])
