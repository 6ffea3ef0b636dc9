"""Every pass's settings: one frozen dataclass per pass, which is also its recipe schema
(:mod:`rmcompress.compression.passbase`), and :data:`SETTINGS`, the pass names a recipe may use.

Order of passes in a recipe (:data:`PASS_RANK`): a pass may not follow a pass of higher rank;
``length`` (rank ``None``) may stand anywhere. No TensorFlow import here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from rmcompress.config.choices import BUDGET_METHODS, GATE_INITS
from rmcompress.compression.passbase import PassSettings, setting
from rmcompress.config.validation import Field

QUANT_MODES = ("float16", "dynamic", "int4", "int8", "int16x8", "qat")
#: bounds of every fine-tuning learning rate (the default differs per pass)
_RATE = dict(min=0, min_exclusive=True)
_FRACTION = dict(min=0, max=1, min_exclusive=True)
#: the ``layers`` selection of prune and cluster
LAYERS_SCHEMA = {"include": Field(list, None, nullable=True, items=Field(str)),
                 "exclude": Field(list, None, nullable=True, items=Field(str))}


def _m_by_n(v) -> str | None:
    return None if len(v) == 2 and v[0] < v[1] else "must be [m, n] with 0 < m < n, e.g. [2, 4]"


def _layer_clusters(v) -> str | None:
    """``{layer-name regex: clusters}`` with valid regexes and integer counts >= 2."""
    for pat, n in v.items():
        try:
            re.compile(str(pat))
        except re.error as e:
            return f"has an invalid regular expression {pat!r} ({e})"
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            return f"must map layer-name regexes to integers >= 2 (got {pat!r}: {n!r})"
    return None


def _auto_or_list(example: str):
    def check(v) -> str | None:
        return None if v == "auto" or isinstance(v, list) else f"must be 'auto' or {example}"
    return check


@dataclass(frozen=True)
class BudgetSettings(PassSettings):
    flops_fraction: float | None = setting(None, **_FRACTION)
    params_fraction: float | None = setting(None, **_FRACTION)
    distill: float = setting(0.0, min=0, max=1, max_exclusive=True,
                             help="weight of self-distillation from the source model (0: labels only)")
    distill_features: float = setting(0.0, min=0, help="weight of matching the source model's pooled "
                                                        "features (representation distillation; pointwise)")
    distill_blocks: float = setting(0.0, min=0, help="weight of matching the source model's hidden state after "
                                                     "every kept block, through a learned projection "
                                                     "(block-wise distillation; pointwise)")
    distill_block_layers: list | None = setting(None, items=Field(str), min_items=1,
                                                help="layers the block term compares: names or patterns with "
                                                     "{i} (null: block{i}_ffn_norm for bert, "
                                                     "block{i}_ffn_residual for transformer)")
    max_epochs: float | None = setting(10.0, min=0, min_exclusive=True,
                                       help="cap on passes over the training split (null: no cap)")
    method: str = setting("gates", choices=BUDGET_METHODS,
                          help="gates: budget training; taylor/magnitude: prune by unit importance, then fine-tune")
    stages: int = setting(1, min=1, help="taylor/magnitude: prune-and-fine-tune rounds to reach the budget")
    final_steps: int = setting(0, min=0, help="more fine-tuning of the final, smaller model "
                                              "(distilled like the rest) after the steps")
    augment: int = setting(0, min=0, help="distill on this many word-replacement variants of every training "
                                          "and unlabeled text of >= augment_min_words words, scored by the "
                                          "source model (rmcompress.data.augment; pointwise; needs distill)")
    augment_replace: float = setting(0.3, min=0, max=1, min_exclusive=True,
                                     help="probability that a word is replaced by an embedding neighbour")
    augment_min_words: int = setting(10, min=1, help="only texts this long are varied")
    width: bool = setting(False, help="prune the residual width too (a transformer's embedding columns, every "
                                      "norm and branch output; norms then run over the kept channels), "
                                      "chosen against heads, FFN units and blocks by cost")
    gate_init: str = setting("uniform", choices=GATE_INITS,
                             help="gates: start every gate alike, or ranked by the source model's "
                                  "unit importance (the least important close first)")
    finetune_fraction: float | None = setting(None, min=0, max=1, max_exclusive=True,
                                              help="gates: share of the steps fine-tuning the shrunk model "
                                                   "(null: 0.3 for uniform gates, 0.8 for ranked ones)")
    steps: int = setting(1000, min=1)
    learning_rate: float | None = setting(None, **_RATE,
                                          help="null: 1e-3, or 1e-4 for a bridged pretrained encoder")
    batch_size: int = setting(64, min=1)

    def problem(self):
        if self.flops_fraction is None and self.params_fraction is None:
            return "", "needs flops_fraction or params_fraction (a fraction 0 < f <= 1)"
        if self.width and self.distill_features:
            return "width", ("narrows the pooled features that distill_features compares channel by channel "
                             "with the source model's; use one of them")
        if self.distill_block_layers and not self.distill_blocks:
            return "distill_block_layers", "names the layers of the block term; set distill_blocks > 0 too"
        if self.augment and not (self.distill or self.distill_features or self.distill_blocks):
            return "augment", ("augmented texts carry no labels, only the source model's scores; "
                               "set distill > 0 too")
        return None


@dataclass(frozen=True)
class FuseSettings(PassSettings):
    dropout: bool = setting(True)
    batchnorm: bool = setting(True)
    layernorm: bool = setting(True)
    qkv: bool = setting(True)
    dense_chain: bool = setting(True)
    matmul: bool = setting(True)
    positions: bool = setting(True)
    tolerance: float = setting(1e-5, min=0, min_exclusive=True)


@dataclass(frozen=True)
class FactoriseSettings(PassSettings):
    vocab_prune: bool = setting(True)
    min_count: int = setting(1, min=1)
    rank: int | None = setting(None, min=1)
    max_error: float | None = setting(None, min=0, max=1, min_exclusive=True, max_exclusive=True)
    weighting: str = setting("frequency", choices=("frequency", "uniform"))
    steps: int = setting(0, min=0)
    learning_rate: float = setting(1e-4, **_RATE)
    batch_size: int = setting(64, min=1)
    full_rows: int = setting(0, min=0, help="the most used tokens keep this many exact rows; only the others "
                                            "are factorised (two tiers; needs rank or max_error)")
    unseen_tokens: str = setting("split", choices=("split", "unk", "nearest"),
                                 help="tokens no counted text uses: leave the vocabulary (split), or stay in the "
                                      "tokenizer and read the [UNK] row (unk) or the nearest kept row by cosine "
                                      "(nearest), through an id table of 2 bytes a token (4 past 32,768 kept rows); "
                                      "needs min_count 1")
    distill: float = setting(0.0, min=0, max=1,
                             help="fine-tuning steps distill from the model before factorisation "
                                  "with this weight (on the training, unlabeled and augmented "
                                  "texts; 0: labels only)")

    def problem(self):
        if self.rank is not None and self.max_error is not None:
            return "", "give rank or max_error, not both"
        if self.full_rows and self.rank is None and self.max_error is None:
            return "full_rows", "only the other rows are factorised; give rank or max_error"
        if self.distill and not self.steps:
            return "distill", "distillation happens in the fine-tuning steps; set steps >= 1"
        if self.unseen_tokens != "split" and not self.vocab_prune:
            return "unseen_tokens", "only vocabulary pruning drops tokens; set vocab_prune: true"
        if self.unseen_tokens != "split" and self.min_count > 1:
            return "unseen_tokens", ("with min_count > 1 training texts would read remapped rows; "
                                     "use min_count 1 or unseen_tokens split")
        return None


@dataclass(frozen=True)
class PruneSettings(PassSettings):
    sparsity: float = setting(0.5, min=0, max=1, max_exclusive=True)
    schedule: str = setting("polynomial", choices=("polynomial", "constant"))
    initial_sparsity: float = setting(0.0, min=0, max=1, max_exclusive=True)
    m_by_n: list | None = setting(None, items=Field(int, min=1), check=_m_by_n)
    frequency: int = setting(10, min=1)
    embedding: bool = setting(True)
    layers: dict | None = setting(None, schema=LAYERS_SCHEMA)
    summaries_dir: str | None = setting(None)
    steps: int = setting(300, min=0)
    learning_rate: float = setting(1e-4, **_RATE)
    batch_size: int = setting(64, min=1)

    def problem(self):
        if self.schedule == "polynomial" and self.initial_sparsity >= self.sparsity and self.sparsity > 0:
            return "initial_sparsity", f"{self.initial_sparsity} must be below sparsity {self.sparsity}"
        if self.schedule == "polynomial" and self.steps == 0 and self.sparsity > 0:
            return "steps", "a polynomial schedule needs steps >= 1 (or use schedule: constant)"
        return None


@dataclass(frozen=True)
class ClusterSettings(PassSettings):
    clusters: int = setting(16, min=2)
    embedding_clusters: int | None = setting(None, min=2, help="clusters of the token table (the "
                                             "Embedding the token ids read, whatever its name); "
                                             "null: clusters")
    layer_clusters: dict | None = setting(None, check=_layer_clusters, help="per-layer counts: "
                                          "{layer-name regex: clusters}, first match wins")
    init: str = setting("kmeans++", choices=("kmeans++", "linear", "density", "random"))
    preserve_sparsity: bool | str = setting("auto", choices=(True, False, "auto"))
    embedding: bool = setting(True)
    layers: dict | None = setting(None, schema=LAYERS_SCHEMA)
    steps: int = setting(200, min=0)
    learning_rate: float = setting(1e-4, **_RATE)
    batch_size: int = setting(64, min=1)


@dataclass(frozen=True)
class QuantiseSettings(PassSettings):
    mode: str = setting("dynamic", choices=QUANT_MODES)
    calibration_samples: int = setting(300, min=1)
    keep_float_ops: list | str | None = setting(None, items=Field(str), check=_auto_or_list(
        "a list of TFLite op names, e.g. [BATCH_MATMUL, SOFTMAX]"))
    max_layer_error: float | None = setting(None, min=0, min_exclusive=True)
    min_layer_agreement: float | None = setting(None, min=0, max=1, help="int8: a layer whose int8 alone "
                                                "orders the debug rows' rewards like the float file for fewer "
                                                "than this share of row pairs stays float; int4: a layer whose "
                                                "4-bit weights alone do so keeps int8 weights (null: none)")
    debug_samples: int = setting(64, min=1)
    embedding_bits: int = setting(8, choices=(8, 4), help="int8 / qat: bits of every embedding table the file "
                                  "looks rows up in (4: per-column 4-bit values, the rows put back to int8 "
                                  "after the lookup; mode int4 makes its tables 4-bit anyway)")
    steps: int = setting(300, min=0)
    learning_rate: float = setting(1e-4, **_RATE)
    batch_size: int = setting(64, min=1)

    def problem(self):
        if self.embedding_bits != 8 and self.mode not in ("int8", "qat"):
            return "embedding_bits", "applies to mode int8 or qat only (int4 makes its tables 4-bit anyway)"
        if self.mode not in ("int8", "int16x8") and (self.keep_float_ops is not None
                                                     or self.max_layer_error is not None):
            return "", "keep_float_ops/max_layer_error apply to mode int8 or int16x8 only"
        if self.mode not in ("int8", "int16x8", "int4") and self.min_layer_agreement is not None:
            return "min_layer_agreement", "applies to mode int8, int16x8 or int4 only"
        return None


@dataclass(frozen=True)
class LengthSettings(PassSettings):
    mode: str = setting("buckets", choices=("buckets", "dynamic"))
    buckets: list | str | None = setting("auto", items=Field(int, min=1), min_items=1, check=_auto_or_list(
        "a list of positive lengths, e.g. [16, 32, 64]"))
    quantiles: list = setting([0.5, 0.9], items=Field(float, min=0, max=1, min_exclusive=True,
                                                       max_exclusive=True))


ATTENTION_ALTERNATIVES = ("keep", "drop", "length")


@dataclass(frozen=True)
class AttentionSettings(PassSettings):
    alternatives: list = setting(["keep", "drop", "length"], items=Field(str, choices=ATTENTION_ALTERNATIVES),
                                 min_items=1, unique=True,
                                 help="what to try when at most max_heads heads are left: keep them, drop "
                                      "attention (pooled FFN stack, fine-tuned), shorter length buckets")
    max_heads: int = setting(1, min=1, help="act only when the model has 1..max_heads attention heads in all")
    max_drop: float = setting(0.0, min=0, help="validation points below the best an alternative may be and "
                                               "still win by being cheaper (0: the best; ties: the cheaper)")
    quantiles: list = setting([0.25, 0.5, 0.75, 0.9], items=Field(float, min=0, max=1, min_exclusive=True,
                                                                  max_exclusive=True),
                              help="length: bucket quantiles of the training lengths")
    tolerance: float = setting(1e-5, min=0, min_exclusive=True,
                               help="drop: shrunk vs closed-gate model; length: bucketed vs full length")
    steps: int = setting(600, min=0, help="drop: fine-tuning steps of the model without attention")
    learning_rate: float = setting(1e-3, **_RATE)
    batch_size: int = setting(64, min=1)


#: pass name -> its settings, in the order of the recipe ranks
SETTINGS: dict[str, type[PassSettings]] = {
    "budget": BudgetSettings, "attention": AttentionSettings, "fuse": FuseSettings, "factorise": FactoriseSettings, "prune": PruneSettings,
    "cluster": ClusterSettings, "quantise": QuantiseSettings, "length": LengthSettings}
#: pass -> rank; a pass may not follow a pass of higher rank (None: anywhere)
PASS_RANK = {"budget": 0, "attention": 1, "fuse": 1, "factorise": 1, "prune": 2, "cluster": 3, "quantise": 4, "length": None}
