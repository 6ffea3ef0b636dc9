"""Pretrained keras-nlp backbones (Keras 3) bridged into the project's tf_keras ``bert`` encoder.

The suite trains and compresses tf_keras models (tfmot needs them), so a keras-nlp backbone is
only *read*: its configuration becomes an :class:`ArchConfig` with ``arch="bert"``, its weights a
``{our layer name: [numpy arrays]}`` map, its WordPiece vocabulary a :class:`Tokenizer` in
``bert`` mode. :meth:`PretrainedScorer.build` then builds ``build_reward_model(arch)`` (the same
named layers as every shipped architecture: ``token_embedding``, ``block{i}_attn``,
``block{i}_ffn_in`` ...) and copies the weights in; the scalar ``reward`` head starts fresh.

Mapping (Keras 3 BERT -> ours)::

    token_embedding                          -> token_embedding
    position_embedding[:seq_len] + segment_embedding[0]   -> position_embedding  (segment 0 folded)
    embeddings_layer_norm                    -> embedding_norm
    transformer_layer_i/self_attention_layer -> block{i}_attn  (q/k/v kernels [d, H, dh] -> [d, H*dh],
                                                output kernel [H, dh, d] -> [H*dh, d])
    .../self_attention_layer_norm            -> block{i}_attn_norm
    .../feedforward_intermediate_dense       -> block{i}_ffn_in
    .../feedforward_output_dense             -> block{i}_ffn_out
    .../feedforward_layer_norm               -> block{i}_ffn_norm
    pooled_dense ([CLS] pooler)              -> not used: the reward pools the masked mean

Supported families: ``BertBackbone`` and ``DistilBertBackbone`` (post-LN encoders with [PAD] = 0).
Others (RoBERTa: padding id 1; ALBERT: shared layers; ELECTRA: embedding projection; decoders)
raise :class:`ModelError` naming the class.

``match`` chooses the GELU form and accent stripping: ``"keras"`` reproduces the Keras 3 backbone
exactly as keras-nlp builds it (its BERT uses the tanh-approximate GELU and does not strip
accents); ``"source"`` (default) follows the original checkpoint where a Hugging Face folder
states it (``config.json`` ``hidden_act``: ``gelu`` is the exact erf form; ``tokenizer_config.json``
``strip_accents: null`` means "as lowercase"), and keras-nlp otherwise. Attention masks padded keys
with a bounded score of -30 instead of keras-nlp's large negative: identical for padding.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rmcompress._keras import keras, keras3
from rmcompress.data.tokenizer import CLS, PAD, SEP, UNK, Tokenizer, TokenizerConfig
from rmcompress.errors import ModelError, UsageError
from rmcompress.models.archconfig import ArchConfig
from rmcompress.models.architectures import build_reward_model

SUPPORTED = ("BertBackbone", "DistilBertBackbone")
MATCH_MODES = ("source", "keras")
#: Hugging Face ``hidden_act`` -> our activation name
HF_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
                  "gelu_fast": "gelu_tanh", "relu": "relu"}


def _offline_env() -> None:
    """A local folder must never touch the network (huggingface_hub checks this variable)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def load_backbone(preset: str | os.PathLike):
    """``(backbone, tokenizer)``: keras-nlp (Keras 3) objects for a preset name or a local folder
    (a Keras preset saved with ``save_to_preset`` or a Hugging Face model folder)."""
    import keras_nlp

    preset = str(preset)
    local = Path(preset).expanduser()
    if local.is_dir():
        _offline_env()
        if not (local / "config.json").is_file():
            raise ModelError(f"{local}: no config.json; not a keras-nlp preset or Hugging Face model folder")
        preset = str(local.resolve())
    elif "://" not in preset and (os.sep in preset or preset.startswith(".")):
        raise ModelError(f"{preset}: no such backbone folder")
    try:
        backbone = keras_nlp.models.Backbone.from_preset(preset)
        tokenizer = keras_nlp.models.Tokenizer.from_preset(preset)
    except ModuleNotFoundError as e:
        raise ModelError(f"backbone {preset}: keras-nlp needs the missing package {e.name!r} to read it "
                         f"(pip install {e.name})") from None
    except Exception as e:  # keras-hub raises ValueError/FileNotFoundError/HTTP errors
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise ModelError(f"backbone {preset}: cannot load ({type(e).__name__}: {first}); offline, pass a "
                         "local preset or Hugging Face folder") from None
    return backbone, tokenizer


def _hf_settings(preset: str) -> dict:
    """What a Hugging Face folder says about GELU and accent stripping (empty if not one)."""
    d = Path(preset)
    out = {}
    try:
        cfg = json.loads((d / "config.json").read_text())
    except (OSError, ValueError):
        return out
    if "model_type" not in cfg:
        return out
    act = cfg.get("hidden_act", cfg.get("activation"))
    if act is not None:
        if act not in HF_ACTIVATIONS:
            raise ModelError(f"{d / 'config.json'}: activation {act!r} not supported; "
                             f"supported: {', '.join(HF_ACTIVATIONS)}")
        out["activation"] = HF_ACTIVATIONS[act]
    try:
        tok = json.loads((d / "tokenizer_config.json").read_text())
    except (OSError, ValueError):
        tok = {}
    if "do_lower_case" in tok or "strip_accents" in tok:
        lower = bool(tok.get("do_lower_case", True))
        strip = tok.get("strip_accents")
        out["strip_accents"] = lower if strip is None else bool(strip)
    return out


def _keras_activation(fn) -> str:
    """keras-nlp's encoder activation -> our name (exact match only)."""
    keras = keras3()

    x = np.linspace(-6, 6, 1201).astype("float32")
    got = np.asarray(fn(keras.ops.convert_to_tensor(x)))
    for name, ref in (("gelu", keras.activations.gelu(x, approximate=False)),
                      ("gelu_tanh", keras.activations.gelu(x, approximate=True)),
                      ("relu", keras.activations.relu(x))):
        if np.allclose(got, np.asarray(ref), atol=1e-7):
            return name
    raise ModelError(f"backbone activation {getattr(fn, '__name__', fn)!r} is not GELU (erf or tanh) or ReLU")


@dataclass
class PretrainedScorer:
    """A backbone read into our terms; :meth:`build` makes the tf_keras scorer."""

    tokenizer: Tokenizer
    arch: ArchConfig
    weights: dict  # layer name -> list of numpy arrays (in the layer's weight order)
    info: dict = field(default_factory=dict)

    def build(self, name: str | None = None):
        """``build_reward_model(arch)`` with the backbone's weights copied in (call inside a
        ``tf.distribute`` scope if training is distributed)."""
        model = build_reward_model(self.arch, name=name)
        assign_weights(model, self.weights)
        return model


def assign_weights(model, weights: dict) -> None:
    """Copy ``{layer name: [arrays]}`` into ``model``; shapes must match exactly."""
    for layer_name, arrays in weights.items():
        try:
            layer = model.get_layer(layer_name)
        except ValueError:
            raise ModelError(f"bridge: the model has no layer {layer_name!r}") from None
        current = layer.get_weights()
        if len(current) != len(arrays) or any(c.shape != a.shape for c, a in zip(current, arrays)):
            raise ModelError(f"bridge: layer {layer_name!r} expects shapes {[c.shape for c in current]}, "
                             f"got {[a.shape for a in arrays]}")
        layer.set_weights(arrays)


def _np(v) -> np.ndarray:
    return np.asarray(v.numpy() if hasattr(v, "numpy") else v, dtype=np.float32)


def _encoder_weights(i: int, enc) -> tuple[dict, dict]:
    """Weights of one keras-nlp ``TransformerEncoder`` under our names, plus its settings."""
    if enc.normalize_first:
        raise ModelError(f"backbone layer {enc.name}: pre-LN encoders are not supported by the bert bridge")
    att = enc._self_attention_layer
    heads, head_dim = int(att.num_heads), int(att.key_dim)
    d = int(att.query_dense.kernel.shape[0])
    inner = heads * head_dim

    def qkv(dense):
        return [_np(dense.kernel).reshape(d, inner), _np(dense.bias).reshape(inner)]

    attn = [*qkv(att.query_dense), *qkv(att.key_dense), *qkv(att.value_dense),
            _np(att.output_dense.kernel).reshape(inner, -1), _np(att.output_dense.bias)]
    w = {f"block{i}_attn": attn,
         f"block{i}_attn_norm": [_np(enc._self_attention_layer_norm.gamma), _np(enc._self_attention_layer_norm.beta)],
         f"block{i}_ffn_in": [_np(enc._feedforward_intermediate_dense.kernel), _np(enc._feedforward_intermediate_dense.bias)],
         f"block{i}_ffn_out": [_np(enc._feedforward_output_dense.kernel), _np(enc._feedforward_output_dense.bias)],
         f"block{i}_ffn_norm": [_np(enc._feedforward_layer_norm.gamma), _np(enc._feedforward_layer_norm.beta)]}
    settings = {"heads": heads, "head_dim": head_dim, "ffn": int(enc.intermediate_dim),
                "epsilon": float(enc.layer_norm_epsilon), "activation": enc.activation}
    return w, settings


def _embedding_tables(backbone) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    family = type(backbone).__name__
    token = _np(backbone.token_embedding.embeddings)
    if family == "BertBackbone":
        pos = _np(backbone.get_layer("position_embedding").position_embeddings)
        seg = _np(backbone.get_layer("segment_embedding").embeddings)[0]
    else:  # DistilBertBackbone: TokenAndPositionEmbedding, no token types
        pos = _np(backbone.embeddings.position_embedding.position_embeddings)
        seg = None
    return token, pos, seg


def bridge(backbone, keras_tokenizer, seq_len: int, keep: str = "start", dropout: float = 0.1,
           activation: str | None = None, strip_accents: bool | None = None,
           source: str | None = None) -> PretrainedScorer:
    """Read a keras-nlp ``backbone`` + ``keras_tokenizer`` into a :class:`PretrainedScorer`.

    ``activation``/``strip_accents`` override what the Keras 3 objects use (see module docstring).
    """
    family = type(backbone).__name__
    if family not in SUPPORTED:
        raise ModelError(f"backbone {source or backbone.name}: {family} is not supported by the bridge; "
                         f"supported: {', '.join(SUPPORTED)}")
    blocks = list(backbone.transformer_layers)
    weights, settings = {}, []
    for i, enc in enumerate(blocks):
        w, s = _encoder_weights(i, enc)
        weights.update(w)
        settings.append(s)
    token, pos, seg = _embedding_tables(backbone)
    max_positions = int(pos.shape[0])
    if seq_len > max_positions:
        raise UsageError(f"--seq-len {seq_len} exceeds the backbone's {pos.shape[0]} positions")
    pos = pos[:seq_len] + (seg if seg is not None else 0.0)
    norm = backbone.embeddings_layer_norm
    weights["token_embedding"] = [token]
    weights["position_embedding"] = [pos]
    weights["embedding_norm"] = [_np(norm.gamma), _np(norm.beta)]

    s0 = settings[0] if settings else {"head_dim": 1, "epsilon": float(norm.epsilon), "activation": None}
    if any(s["head_dim"] != s0["head_dim"] or s["epsilon"] != s0["epsilon"] for s in settings):
        raise ModelError(f"backbone {source or backbone.name}: blocks differ in head size or LayerNorm epsilon")
    if float(norm.epsilon) != s0["epsilon"]:
        raise ModelError(f"backbone {source or backbone.name}: embedding and block LayerNorm epsilons differ")
    act = activation or (_keras_activation(s0["activation"]) if settings else "gelu")
    arch = ArchConfig(arch="bert", vocab_size=int(token.shape[0]), seq_len=int(seq_len),
                      width=int(token.shape[1]), depth=len(blocks),
                      heads=[s["heads"] for s in settings], head_dim=int(s0["head_dim"]),
                      ffn=[s["ffn"] for s in settings], activation=act, dropout=float(dropout),
                      norm_epsilon=float(s0["epsilon"]))

    tokenizer = bert_tokenizer(keras_tokenizer, seq_len, keep, strip_accents, source)
    if tokenizer.vocab_size != arch.vocab_size:
        raise ModelError(f"backbone {source or backbone.name}: vocabulary has {tokenizer.vocab_size} tokens "
                         f"but the embedding table {arch.vocab_size} rows")
    info = {"backbone": str(source) if source is not None else backbone.name, "family": family,
            "backbone_params": int(backbone.count_params()), "activation": act,
            "strip_accents": tokenizer.config.strip_accents,
            "max_positions": max_positions}
    return PretrainedScorer(tokenizer, arch, weights, info)


def bert_tokenizer(keras_tokenizer, seq_len: int, keep: str = "start", strip_accents: bool | None = None,
                   source: str | None = None) -> Tokenizer:
    """Our ``bert``-mode :class:`Tokenizer` with a keras-nlp WordPiece tokenizer's vocabulary."""
    import keras_nlp

    if not isinstance(keras_tokenizer, keras_nlp.tokenizers.WordPieceTokenizer):
        raise ModelError(f"backbone {source}: tokenizer {type(keras_tokenizer).__name__} is not WordPiece; "
                         "the bridge supports WordPiece (BERT-family) tokenizers")
    if keras_tokenizer.suffix_indicator != "##" or not keras_tokenizer.split:
        raise ModelError(f"backbone {source}: WordPiece settings (split, '##' suffixes) not supported")
    vocab = list(keras_tokenizer.get_vocabulary())
    cfg = TokenizerConfig(seq_len=int(seq_len), keep=keep, lowercase=bool(keras_tokenizer.lowercase),
                          strip_accents=bool(keras_tokenizer.strip_accents if strip_accents is None
                                             else strip_accents), mode="bert")
    return Tokenizer(vocab, cfg)


def load_pretrained(preset: str | os.PathLike, seq_len: int, keep: str = "start", dropout: float = 0.1,
                    match: str = "source") -> PretrainedScorer:
    """Load ``preset`` (name or folder) and bridge it (see module docstring for ``match``)."""
    if match not in MATCH_MODES:
        raise UsageError(f"match {match!r} unknown; allowed: {', '.join(MATCH_MODES)}")
    backbone, keras_tokenizer = load_backbone(preset)
    overrides = _hf_settings(str(Path(preset).expanduser().resolve())) \
        if match == "source" and Path(preset).expanduser().is_dir() else {}
    return bridge(backbone, keras_tokenizer, seq_len, keep, dropout, overrides.get("activation"),
                  overrides.get("strip_accents"), source=str(preset))


# -- checks -----------------------------------------------------------------------------------------
def keras3_pooled(backbone, ids: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The Keras 3 backbone's masked mean of its last hidden states over real tokens (id != 0),
    segment ids 0: what the bridged encoder's ``pool`` layer must reproduce."""
    ids = np.asarray(ids, np.int32)
    out = []
    for i in range(0, len(ids), batch_size):
        chunk = ids[i:i + batch_size]
        mask = (chunk != 0)
        inputs = {"token_ids": chunk, "padding_mask": mask}
        if type(backbone).__name__ == "BertBackbone":
            inputs["segment_ids"] = np.zeros_like(chunk)
        h = backbone(inputs, training=False)
        h = np.asarray(h["sequence_output"] if isinstance(h, dict) else h, np.float64)
        m = mask[..., None].astype(np.float64)
        out.append((h * m).sum(1) / np.maximum(m.sum(1), 1.0))
    return np.concatenate(out, 0) if out else np.zeros((0, 0))


def pooled_model(scorer):
    """``ids -> pooled encoder output`` of a bridged scorer (the input of its ``reward`` head)."""

    return keras.Model(scorer.input, scorer.get_layer("pool").output)


__all__ = ["load_backbone", "bridge", "load_pretrained", "PretrainedScorer", "assign_weights",
           "bert_tokenizer", "keras3_pooled", "pooled_model", "SUPPORTED", "PAD", "UNK", "CLS", "SEP"]


# -- tiny random backbones (tests, demos) -----------------------------------------------------------
SPECIAL_LAYOUT = [PAD, "[unused0]", "[unused1]", "[unused2]", UNK, CLS, SEP, "[MASK]"]


def save_random_preset(directory: str | os.PathLike, words, family: str = "bert", num_layers: int = 2,
                       num_heads: int = 2, hidden_dim: int = 16, intermediate_dim: int = 32,
                       max_sequence_length: int = 64, seed: int = 0, scale: float = 0.3) -> Path:
    """Write a randomly initialised keras-nlp ``BertBackbone`` (``family="bert"``) or
    ``DistilBertBackbone`` (``"distil_bert"``) preset with its WordPiece tokenizer to ``directory``.

    Vocabulary: :data:`SPECIAL_LAYOUT` ([PAD] = 0 but [UNK] = 4, like BERT's non-1 [UNK]) then the
    unique ``words``. Every weight, biases and LayerNorm parameters included, is drawn at random
    (kernels N(0, scale), biases/beta N(0, scale/2), gamma 1 + N(0, scale/2)) so an equivalence
    test exercises all of them."""
    import keras_nlp

    keras = keras3()
    vocab = list(SPECIAL_LAYOUT) + sorted(set(words) - set(SPECIAL_LAYOUT))
    keras.utils.set_random_seed(seed)
    kwargs = dict(vocabulary_size=len(vocab), num_layers=num_layers, num_heads=num_heads,
                  hidden_dim=hidden_dim, intermediate_dim=intermediate_dim,
                  max_sequence_length=max_sequence_length)
    if family == "bert":
        backbone = keras_nlp.models.BertBackbone(**kwargs)
        tokenizer = keras_nlp.models.BertTokenizer(vocabulary=vocab, lowercase=True)
    elif family == "distil_bert":
        backbone = keras_nlp.models.DistilBertBackbone(**kwargs)
        tokenizer = keras_nlp.models.DistilBertTokenizer(vocabulary=vocab, lowercase=True)
    else:
        raise UsageError(f"family {family!r} unknown; allowed: bert, distil_bert")
    rng = np.random.RandomState(seed)
    for w in backbone.weights:
        name = w.path.split("/")[-1]
        if name == "gamma":
            value = 1.0 + rng.normal(0, scale / 2, w.shape)
        elif name in ("beta", "bias"):
            value = rng.normal(0, scale / 2, w.shape)
        else:
            value = rng.normal(0, scale, w.shape)
        w.assign(value.astype("float32"))
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    backbone.save_to_preset(str(d))
    tokenizer.save_to_preset(str(d))
    return d
