"""The settings of a training run: :class:`TrainConfig`, composed of one section per concern.

Sections (attribute of ``TrainConfig`` -> class): ``data`` -> :class:`DataOptions`, ``tokenizer``
-> :class:`TokenizerOptions`, ``arch`` -> :class:`ArchOptions`, ``optim`` -> :class:`OptimOptions`,
``gates`` -> :class:`GateOptions` (complexity-aware training), ``distill`` ->
:class:`DistillOptions`, ``source`` -> :class:`SourceOptions` (pretrained start); ``task``,
``loss`` and ``center_coefficient`` (what the task object is built from) sit on ``TrainConfig``.

Every field is declared with :func:`option`, whose ``metadata`` carries what the CLI needs: the
*flat name* (unique over all sections; the argparse ``dest`` and the key of the flat form), the
flag, the help text, allowed values and the rule a value must meet. ``rmcompress train`` builds its
arguments from these declarations (:func:`cli_fields`), so a default is written once, here.

Flat form: ``{flat name: value}``, what ``TrainConfig.from_flat(**kw)`` takes (an unknown name is
an error) and what :meth:`TrainConfig.flat_dict` returns -- the form model directories record
(``metadata["train_config"]``) and :meth:`TrainConfig.from_dict` reads back (it also accepts the
nested form of :meth:`TrainConfig.to_dict`).

Defaults that depend on other settings are resolved by ``TrainConfig.__post_init__``:
``learning_rate`` (1e-3; 3e-5 with a pretrained start), ``gate_init_spread`` and
``finetune_fraction`` (:data:`rmcompress.config.choices.GATE_SCHEDULES`). ``seq_len``, ``truncate`` and
``loss`` stay ``None`` until the task (and the data, for ``loss``) decide them.
"""
from __future__ import annotations

import argparse
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from typing import Any, Callable

from rmcompress.config.choices import (ARCHITECTURES, COLUMN_SETTINGS, DISTILL_LOSSES, GATE_INITS,
                                       HEAD_HIDDEN_ARCHS, KEEP_SIDES, POINTWISE_LOSSES, SPLIT_MODES, TASKS,
                                       gate_schedule)
from rmcompress.config import memory
from rmcompress.config.rules import (FRACTION, PATIENCE, SEED, Rule, above, at_least, check_value, closed,
                                     half_open, integer, number)
from rmcompress.config.validation import suggest
from rmcompress.errors import UsageError

#: the smallest ``vocab_size``: [PAD] and [UNK], and room for the letters, digits and punctuation that
#: WordPiece needs before it can learn any word (below it nearly every word becomes [UNK])
MIN_VOCAB_SIZE = 64
#: the smallest ``seq_len`` of a pretrained backbone's tokeniser: [CLS] text [SEP]
MIN_BACKBONE_SEQ_LEN = 3
#: tokens per text when ``seq_len`` is not given
DEFAULT_SEQ_LEN = {"pointwise": 64, "pairwise": 256}
BACKBONE_MATCHES = ("source", "keras")


# -- declaring a field ------------------------------------------------------------------------------
def int_list(text: str) -> list[int]:
    """``"1,2,3"`` -> ``[1, 2, 3]`` (argparse reports the error as a bad value of the flag)."""
    try:
        values = [int(k) for k in text.split(",") if k.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers, e.g. 3,4,5") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one width, e.g. 3,4,5")
    return values


def option(default: Any = None, help: str = "", *, flat: str | None = None, flag: str | None = None,
           type: Callable | None = None, choices: tuple | None = None, metavar: str | None = None,
           default_text: str | None = None, rule: Rule | None = None, cli: bool = True,
           negate: bool = False, required: bool = False, group: str | None = None,
           factory: Callable | None = None, from_data: bool = False):
    """A config field with its CLI metadata.

    ``flat``: the flat name (default: the field name); ``flag``: the CLI flag (default
    ``--flat-name``); ``type``: argparse's converter (default: the type of ``default``); booleans
    are switches (``negate``: the flag turns the default ``True`` off, ``--no-...``);
    ``default_text``: how ``--help`` names a default that depends on other settings; ``rule``:
    the value's check (``None`` always passes); ``cli=False``: Python only; ``group``: the help
    group (default: the section's ``TITLE``); ``from_data``: the flag's default is ``None``, and
    the command tells the value from the data when it is not given."""
    meta = {"flat": flat, "flag": flag, "help": help, "type": type, "choices": choices, "metavar": metavar,
            "default_text": default_text, "rule": rule, "cli": cli, "negate": negate,
            "required": required, "group": group, "from_data": from_data}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def flat_name(f) -> str:
    return f.metadata.get("flat") or f.name


def flag_of(f) -> str:
    return f.metadata.get("flag") or "--" + flat_name(f).replace("_", "-")


def _default(f):
    return f.default_factory() if f.default is MISSING else f.default


def numeric_kind(f) -> type | None:
    """``int`` or ``float`` for a numeric setting (from its annotation), else ``None``."""
    first = str(f.type).split("|")[0].strip()
    return {"int": int, "float": float}.get(first)


def check_field(f, value) -> None:
    """Raise a one-line :class:`UsageError` unless ``value`` is allowed for the field ``f``: one of
    its choices; a number of its kind, finite and within its rule (:mod:`rmcompress.config.rules`)."""
    rule, choices = f.metadata.get("rule"), f.metadata.get("choices")
    if value is None:
        return
    if choices is not None and value not in choices:
        raise UsageError(f"{flag_of(f)} {value!r} unknown; allowed: {', '.join(map(str, choices))}"
                         f"{suggest(value, choices) if isinstance(value, str) else ''}")
    check_value(flag_of(f), value, rule, numeric_kind(f))


def _check_rules(section) -> None:
    for f in fields(section):
        value = getattr(section, f.name)
        if not is_dataclass(value):  # a section checks its own fields
            check_field(f, value)


# -- the sections -----------------------------------------------------------------------------------
@dataclass
class DataOptions:
    """Which columns to read and how to split off the validation rows."""

    TITLE = "data"
    text_column: str | None = option(None, "pointwise: the text column", default_text="detected from the header")
    label_column: str | None = option(None, "pointwise: the label column", default_text="detected from the header")
    prompt_column: str | None = option(None, "pairwise: the prompt column (optional; prepended to both texts)",
                                       default_text="prompt, if present")
    chosen_column: str | None = option(None, "pairwise: the column of the preferred texts", default_text="chosen")
    rejected_column: str | None = option(None, "pairwise: the column of the other texts", default_text="rejected")
    val_fraction: float = option(0.1, "share of the rows held out for validation (split sentences: of the "
                                      "full texts)",
                                 rule=half_open(0, 1))
    split_mode: str = option("auto", "disjoint: drop training texts contained in a validation text (SST-2 "
                             "phrases); sentences: also draw validation only from full texts (not part of another); "
                             "hash: by a stable hash of the text (streamed data); auto: hash for streamed data, "
                             "else sentences when some texts occur inside others (or twice), else random",
                             flag="--split", choices=SPLIT_MODES)
    seed: int = option(0, "seed of the split, the initialisation, the shuffling and the gates", rule=SEED)

    def __post_init__(self):
        _check_rules(self)
        for name in COLUMN_SETTINGS:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise UsageError(f"--{name.replace('_', '-')} {value!r}: expected a column name (a non-empty string)")


@dataclass
class TokenizerOptions:
    """The WordPiece vocabulary trained on the training texts (unused with a pretrained start)."""

    TITLE = "tokeniser"
    seq_len: int | None = option(None, "tokens per text (at most what one training step fits in this machine's "
                                 "memory)", type=int, default_text="64 pointwise, 256 pairwise", rule=at_least(1))
    truncate: str | None = option(None, "which part of a long text to keep", choices=KEEP_SIDES,
                                  default_text="start pointwise, end pairwise")
    vocab_size: int = option(8000, f"WordPiece vocabulary size (>= {MIN_VOCAB_SIZE}: the special tokens and "
                             "the characters words are spelt from)", rule=at_least(MIN_VOCAB_SIZE))
    lowercase: bool = option(True, "keep the case of the texts (the vocabulary is lowercase by default)",
                             flag="--no-lowercase", negate=True, default_text="lowercase")

    def __post_init__(self):
        _check_rules(self)


@dataclass
class ArchOptions:
    """The architecture trained from scratch (:func:`rmcompress.models.architectures.build_reward_model`)."""

    TITLE = "architecture"
    name: str = option("transformer", "architecture", flat="arch", choices=ARCHITECTURES)
    width: int = option(64, "embedding/model width", rule=at_least(1))
    depth: int = option(2, "transformer blocks", rule=at_least(1))
    heads: int = option(4, "attention heads per block (they divide --width)", rule=at_least(1))
    ffn: int = option(128, "feed-forward units per block", rule=at_least(1))
    filters: int = option(64, "cnn filters per kernel size", rule=at_least(1))
    kernel_sizes: list = option(help="cnn convolution widths, one parallel branch each (narrow widths such as "
                                "1,2 give complexity-aware training cheaper filters to keep)",
                                type=int_list, metavar="K,K,...", default_text="3,4,5",
                                factory=lambda: [3, 4, 5])
    hidden: int = option(64, "bow hidden units", rule=at_least(1))
    head_hidden: int = option(0, "transformer/cnn: ReLU units between the pooling and the reward (gated like "
                              "any group: a pruned model can become a bag of embeddings with a hidden layer)",
                              rule=at_least(0))
    dropout: float = option(0.1, "dropout rate", rule=half_open(0, 1))

    def __post_init__(self):
        self.kernel_sizes = list(self.kernel_sizes)
        _check_rules(self)


@dataclass
class OptimOptions:
    """AdamW with linear warm-up and cosine decay; early stopping on the validation metric."""

    TITLE = "optimisation"
    epochs: int = option(3, "passes over the training split", rule=at_least(1))
    max_steps: int | None = option(None, "train exactly this many steps (in place of --epochs)", type=int,
                                   default_text="no limit", rule=at_least(1))
    batch_size: int = option(64, "examples (pairs) per step", rule=at_least(1))
    learning_rate: float | None = option(None, "peak AdamW rate after warm-up", type=float,
                                         default_text="1e-3; 3e-5 with --backbone/--init", rule=above(0))
    warmup_fraction: float = option(0.05, "linear warm-up share of the steps", rule=closed(0, 1))
    weight_decay: float = option(0.01, "AdamW weight decay", rule=at_least(0))
    patience: int = option(2, "early-stopping patience in epochs (0: off)", rule=PATIENCE)
    group_by_length: bool = option(False, "batch texts of similar length together and cut each batch's padding "
                                   "(at most 8 lengths): a step costs the tokens its texts have, not --seq-len. "
                                   "The model must score cut rows as padded ones (checked before training)")
    mixed_precision: bool = option(False, "compute in bfloat16 (Keras' mixed_bfloat16 policy; meant for GPUs, "
                                   "no faster on a CPU): the weights, the reward, the loss and the complexity "
                                   "term stay float32, and the saved model is float32")

    def __post_init__(self):
        _check_rules(self)


@dataclass
class GateOptions:
    """Complexity-aware training (:mod:`rmcompress.training.complexity_model`): any of ``gated``, a
    penalty weight or a budget gates the run."""

    TITLE = "complexity-aware training (any of these gates the model; it is shrunk at the end)"
    gated: bool = option(False, "put hard-concrete gates on every prunable group (heads, FFN units, filters, "
                         "hidden units, embedding width, whole blocks)")
    flops_weight: float = option(0.0, "penalty mode: loss += W * E[FLOPs] / FLOPs_dense", rule=at_least(0))
    params_weight: float = option(0.0, "penalty mode: loss += W * E[params] / params_dense (also gates "
                                  "vocabulary rows)", rule=at_least(0))
    budget_flops: float | None = option(None, "budget mode: end at this fraction of the dense model's FLOPs "
                                        "(e.g. 0.25)", type=float, metavar="F", default_text="none", rule=FRACTION)
    budget_params: float | None = option(None, "budget mode: end at this fraction of the dense model's params",
                                         type=float, metavar="F", default_text="none", rule=FRACTION)
    budget_warmup: float = option(0.3, "fraction of the gated steps over which the budget target moves from "
                                  "1.0 to F", rule=closed(0, 1))
    budget_delay: float = option(0.5, "fraction of the gated steps trained dense before the target starts "
                                 "moving (at most 1 - budget_warmup)", rule=closed(0, 1))
    finetune_fraction: float | None = option(None, "fraction of all steps spent fine-tuning the shrunk model",
                                             type=float, default_text="0.3 with uniform gates, 0.8 with "
                                             "--gate-init magnitude/taylor",
                                             rule=half_open(0, 1))
    learning_rate: float = option(0.05, "Adam rate of the gates", flat="gate_learning_rate", rule=above(0))
    init: str = option("uniform", "with --init/--backbone: start the gates alike (uniform) or ranked by the "
                       "starting model's unit importance, so the least important units close first",
                       flat="gate_init", choices=GATE_INITS)
    init_spread: float | None = option(None, "half-width of the ranked starting log_alpha range (around 3.0)",
                                       flat="gate_init_spread", type=float,
                                       default_text="2 with uniform gates, 4 ranked", rule=at_least(0))
    shrink: bool = option(True, "keep the gated model (shrink it later with `rmcompress shrink`)",
                          flag="--no-shrink", negate=True, default_text="shrink")
    multiplier_learning_rate: float = option(0.01, "SGD rate of the Lagrange multipliers", cli=False,
                                             rule=above(0))
    quadratic_init: float = option(10.0, "initial lambda_2 of the quadratic budget term", cli=False,
                                   rule=at_least(0))
    init_log_alpha: float = option(3.0, "initial gate log_alpha (P(open) = 0.99)", flat="gate_init_log_alpha",
                                   cli=False)
    vocab: bool | None = option(None, "gate vocabulary rows (default: when params are targeted)",
                                flat="gate_vocab", cli=False)
    width: bool = option(False, "gate the residual width too (a transformer's embedding columns, every norm "
                         "and branch output: LayerNorm over the kept channels), chosen against heads, FFN "
                         "units and blocks by cost", flat="gate_width")

    def __post_init__(self):
        _check_rules(self)
        if not 0.0 <= self.budget_delay <= 1.0 - self.budget_warmup:
            raise UsageError(f"--budget-delay {self.budget_delay} must be in [0, 1 - budget_warmup]")

    @property
    def active(self) -> bool:
        """A run is gated with ``gated``, any penalty weight or any budget."""
        return bool(self.gated or self.flops_weight or self.params_weight or self.budget_flops is not None
                    or self.budget_params is not None)

    @property
    def targets_params(self) -> bool:
        return bool(self.params_weight or self.budget_params is not None)

    @property
    def budgeted(self) -> bool:
        return self.budget_flops is not None or self.budget_params is not None


@dataclass
class DistillOptions:
    """Distillation from a teacher model directory (:mod:`rmcompress.training.distill`)."""

    TITLE = "pretrained start and distillation"
    teacher: str | None = option(None, "distill: also match this model's rewards (pairwise: its margins)",
                                 metavar="MODEL_DIR", default_text="none")
    weight: float = option(0.5, "a in (1-a)*label_loss + a*distill_loss", flat="distill_weight",
                           rule=closed(0, 1))
    loss: str = option("mse", "mse on rewards/margins, or ce: temperature-scaled cross-entropy (KL)",
                       flat="distill_loss", choices=DISTILL_LOSSES)
    temperature: float = option(1.0, "temperature T of the ce distillation loss", flat="distill_temperature",
                                rule=above(0))
    features: float = option(0.0, "pointwise: + B * mean_j ((u_j - v_j) / sigma_j)^2, the student's pooled "
                             "features u matching the teacher's v (same width, e.g. a pruned copy of the "
                             "teacher)", flat="distill_features", metavar="B", rule=at_least(0))
    blocks: float = option(0.0, "pointwise: + C * mean over blocks of the student's residual stream after each "
                           "block matching the teacher's after the same block (through a learned projection, "
                           "per channel in units of the teacher's spread; the teacher runs on every batch). The "
                           "student reads the teacher's token ids and keeps its layer names: a copy of it "
                           "(--init TEACHER, e.g. under a budget) or the same --backbone",
                           flat="distill_blocks", metavar="C", rule=at_least(0))
    block_layers: str | None = option(None, "the layers the block term compares: comma-separated names or "
                                      "patterns with {i} for the block index", flat="distill_block_layers",
                                      metavar="NAMES", default_text="the residual stream after each block")
    unlabeled: str | None = option(None, "extra texts scored only by the teacher (pointwise: a text column; "
                                   "pairwise: chosen/rejected columns)", metavar="PATH", default_text="none")
    augment: int = option(0, "pointwise: also distill on K word-replacement variants of every training and "
                          "unlabeled text of >= 10 words (each word replaced with probability 0.3 by one of "
                          "its 8 nearest words in the teacher's input embedding), scored by the teacher",
                          metavar="K", rule=at_least(0))

    def __post_init__(self):
        if not self.teacher:  # the distillation values are checked only when they are used
            for name in ("unlabeled", "augment", "features", "blocks", "block_layers"):
                if getattr(self, name):
                    what = {"features": "--distill-features", "blocks": "--distill-blocks",
                            "block_layers": "--distill-block-layers"}.get(name, f"--{name}")
                    why = {"unlabeled": " (only a teacher can score unlabeled texts)",
                           "augment": " (only a teacher can score the variants)"}.get(name, "")
                    raise UsageError(f"{what} needs --teacher{why}")
        if self.block_layers is not None and not self.blocks:
            raise UsageError("--distill-block-layers names the layers of the block term; set --distill-blocks > 0 too")
        if self.block_layers is not None and not self.block_layer_list:
            raise UsageError(f"--distill-block-layers {self.block_layers!r} names no layer")
        _check_rules(self)

    @property
    def block_layer_list(self) -> tuple | None:
        """``block_layers`` as names (None: the graph's default)."""
        names = tuple(n.strip() for n in (self.block_layers or "").split(",") if n.strip())
        return names or None


@dataclass
class SourceOptions:
    """Where the scorer starts when not from scratch (:mod:`rmcompress.training.sources`)."""

    TITLE = "pretrained start and distillation"
    backbone: str | None = option(None, "fine-tune a keras-nlp backbone (BERT family): a preset name or a local "
                                  "preset / Hugging Face folder; its own vocabulary is used "
                                  "(--arch/--width/... are ignored)", metavar="PRESET_OR_DIR", default_text="none")
    backbone_match: str = option("source", "GELU form and accent stripping: as the original checkpoint says "
                                 "(Hugging Face config) or exactly as keras-nlp builds the backbone",
                                 choices=BACKBONE_MATCHES)
    init: str | None = option(None, "start from a copy of this model directory (graph, weights, tokenizer)",
                              metavar="MODEL_DIR", default_text="none")

    def __post_init__(self):
        _check_rules(self)
        if self.backbone and self.init:
            raise UsageError("--backbone and --init are exclusive (--init already holds a backbone's weights)")

    @property
    def pretrained(self) -> bool:
        return bool(self.backbone or self.init)


SECTIONS = {"data": DataOptions, "tokenizer": TokenizerOptions, "arch": ArchOptions, "optim": OptimOptions,
            "gates": GateOptions, "distill": DistillOptions, "source": SourceOptions}


@dataclass
class TrainConfig:
    """Every setting of a training run (module docstring)."""

    task: str = option("pointwise", "pointwise: one score per text; pairwise: chosen > rejected",
                       choices=TASKS, from_data=True,
                       default_text="told from the data's columns: chosen and rejected pairwise, a text and "
                                    "a label column pointwise")
    loss: str | None = option(None, "pointwise loss", choices=POINTWISE_LOSSES,
                              default_text="bce for 0/1 labels, else mse", group="optimisation")
    center_coefficient: float = option(0.0, "pairwise reward centering c", group="optimisation",
                                       rule=at_least(0))
    data: DataOptions = field(default_factory=DataOptions)
    tokenizer: TokenizerOptions = field(default_factory=TokenizerOptions)
    arch: ArchOptions = field(default_factory=ArchOptions)
    optim: OptimOptions = field(default_factory=OptimOptions)
    gates: GateOptions = field(default_factory=GateOptions)
    distill: DistillOptions = field(default_factory=DistillOptions)
    source: SourceOptions = field(default_factory=SourceOptions)

    def __post_init__(self):
        for name, cls in SECTIONS.items():
            if isinstance(getattr(self, name), dict):
                setattr(self, name, cls(**getattr(self, name)))
        if self.task is None:
            raise UsageError(f"TrainConfig: task is needed ({' or '.join(TASKS)}); load_data(data).task tells it "
                             "from the data's columns")
        _check_rules(self)
        pretrained = self.source.pretrained
        if self.optim.learning_rate is None:  # fine-tuning a pretrained start wants a small rate
            self.optim.learning_rate = 3e-5 if pretrained else 1e-3
        g = self.gates
        g.init_spread, g.finetune_fraction = gate_schedule(g.init, g.init_spread, g.finetune_fraction)
        _check_rules(g)
        if g.init != "uniform" and not pretrained:
            raise UsageError(f"--gate-init {g.init} ranks the gates by a trained model's unit "
                             "importance: it needs --init MODEL_DIR (or --backbone)")
        a = self.arch
        if a.head_hidden and (a.name not in HEAD_HIDDEN_ARCHS or self.source.backbone):
            raise UsageError(f"--head-hidden is for --arch transformer or cnn (got --arch {a.name}"
                             f"{' with --backbone' if self.source.backbone else ''}); a bow has --hidden")
        if g.width and self.distill.features:
            raise UsageError("--gate-width narrows the pooled features that --distill-features compares channel "
                             "by channel with the teacher's; use one of them")
        if self.distill.blocks and self.task == "pairwise":
            raise UsageError("--distill-blocks is pointwise only; pairwise students distill the teacher's margins")
        if self.distill.augment and self.task == "pairwise":
            raise UsageError("--augment is pointwise only: a pair's preference does not survive independent "
                             "word swaps")
        self._check_consistency()

    def _check_consistency(self, memory_limit: int | None = None) -> None:
        """Settings that must agree with each other: heads divide the width, kernel widths fit the
        sequence, a backbone's sequence holds [CLS] and [SEP], and one training step fits in
        ``memory_limit`` bytes (default: this machine's memory, :mod:`rmcompress.config.memory`)."""
        a, t = self.arch, self.tokenizer
        backbone = bool(self.source.backbone)
        seq_len = self.resolved_seq_len()
        if backbone and seq_len < MIN_BACKBONE_SEQ_LEN:
            raise UsageError(f"--seq-len {seq_len} must be >= {MIN_BACKBONE_SEQ_LEN} with --backbone "
                             "([CLS] text [SEP])")
        if backbone or self.source.init:
            a_name = "bert" if backbone else None
        else:
            a_name = a.name
        if a_name in ("transformer", "bert") and not backbone and a.width % a.heads:
            raise UsageError(f"--heads {a.heads} must divide --width {a.width} (each head gets width / heads "
                             f"dimensions); e.g. --heads {_divisor_near(a.width, a.heads)}")
        if a_name == "cnn":
            for k in a.kernel_sizes:
                check_value("--kernel-sizes", k, at_least(1), int)
            flag = f"--kernel-sizes {','.join(map(str, a.kernel_sizes))}: kernel_sizes={a.kernel_sizes}"
            if max(a.kernel_sizes) > seq_len:
                raise UsageError(f"{flag} has a width above --seq-len {seq_len} (it sees no full window)")
            if len(set(a.kernel_sizes)) != len(a.kernel_sizes):
                raise UsageError(f"{flag} must be distinct widths (one convolution branch per width)")
        if a_name is None:  # --init: the starting model's sizes are not in these settings
            return
        sizes = dict(width=a.width, depth=a.depth, heads=a.heads, ffn=a.ffn)
        if backbone:
            sizes = dict(memory.BACKBONE_SIZES)
        texts = self.optim.batch_size * (2 if self.task == "pairwise" else 1)
        need = memory.estimate(a_name, texts, seq_len, t.vocab_size, filters=a.filters,
                               kernel_sizes=a.kernel_sizes, hidden=a.hidden, **sizes)
        limit = memory.physical_memory() if memory_limit is None else memory_limit
        if limit is not None and need.total > limit:
            flags = f"--seq-len {seq_len}, --batch-size {self.optim.batch_size}"
            if not backbone:
                flags += f", --width {a.width}, --vocab-size {t.vocab_size}"
            raise UsageError(f"too large for this machine's {memory.human(limit)} of memory: one training step "
                             f"with {flags} needs {need.explain(texts, seq_len)}; lower the largest")

    # -- derived settings ---------------------------------------------------------------------------
    def resolved_seq_len(self) -> int:
        return int(self.tokenizer.seq_len or DEFAULT_SEQ_LEN[self.task])

    def resolved_truncate(self) -> str:
        return self.tokenizer.truncate or ("end" if self.task == "pairwise" else "start")

    # -- the flat form ------------------------------------------------------------------------------
    @classmethod
    def from_flat(cls, **flat) -> "TrainConfig":
        """A config from flat names (``arch="cnn", width=16, budget_flops=0.5``); an unknown name is
        a :class:`UsageError` naming it."""
        index = flat_index()
        unknown = [k for k in flat if k not in index]
        if unknown:
            raise UsageError(f"TrainConfig: unknown setting {unknown[0]!r}{suggest(unknown[0], index)}; "
                             f"allowed: {', '.join(index)}")
        top, sections = {}, {name: {} for name in SECTIONS}
        for key, value in flat.items():
            section, name = index[key]
            (top if section is None else sections[section])[name] = value
        return cls(**top, **{name: SECTIONS[name](**kw) for name, kw in sections.items()})

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """A config from a saved flat or nested dict (keys this version does not know are ignored:
        model directories written by other versions stay readable)."""
        flat = {}
        for key, value in d.items():
            if key in SECTIONS and isinstance(value, dict):
                known = {f.name: flat_name(f) for f in fields(SECTIONS[key])}
                flat.update({known[k]: v for k, v in value.items() if k in known})
            else:
                flat[key] = value
        index = flat_index()
        return cls.from_flat(**{k: v for k, v in flat.items() if k in index})

    def flat_dict(self) -> dict:
        """``{flat name: value}`` (the form saved in model directories)."""
        out = {}
        for section, f in _all_fields():
            value = getattr(self if section is None else getattr(self, section), f.name)
            out[flat_name(f)] = list(value) if isinstance(value, list) else value
        return out

    def to_dict(self) -> dict:
        """The nested form: ``{"task": ..., "data": {...}, ...}``."""
        return asdict(self)


def _divisor_near(width: int, heads: int) -> int:
    """The divisor of ``width`` closest to ``heads`` (a suggestion for a bad ``--heads``)."""
    top = min(heads, width)
    return next((h for h in range(top, max(0, top - 10_000), -1) if width % h == 0), 1)


def _all_fields():
    """``(section name or None, field)`` for every setting, top-level ones first."""
    for f in fields(TrainConfig):
        if f.name not in SECTIONS:
            yield None, f
    for name, cls in SECTIONS.items():
        for f in fields(cls):
            yield name, f


def flat_index() -> dict:
    """``{flat name: (section name or None, field name)}``."""
    return {flat_name(f): (section, f.name) for section, f in _all_fields()}


def cli_fields():
    """``(group title, flag, argparse keyword arguments)`` of every CLI setting, in declaration
    order, each help text ending with its default."""
    for section, f in _all_fields():
        m = f.metadata
        if not m.get("cli", True):
            continue
        title = m.get("group") or (SECTIONS[section].TITLE if section else None)
        default = _default(f)
        shown = m.get("default_text") or ("none" if default is None else
                                          ",".join(map(str, default)) if isinstance(default, list) else default)
        kwargs = {"dest": flat_name(f)}
        if isinstance(default, bool):
            kwargs["action"] = "store_false" if m.get("negate") else "store_true"
            shown = m.get("default_text") or ("on" if default else "off")
            if m.get("negate"):
                kwargs["default"] = True
        else:
            kwargs["default"] = None if m.get("from_data") else default
            kind = m.get("type") or (str if default is None else type(default))
            kwargs["type"] = {float: number, int: integer}.get(kind, kind)  # nan/inf refused by name
            if m.get("choices") is not None:
                kwargs["choices"] = m["choices"]
            if m.get("metavar"):
                kwargs["metavar"] = m["metavar"]
        if m.get("required"):
            kwargs["required"] = True
            kwargs.pop("default", None)
            kwargs["help"] = m["help"]
        else:
            kwargs["help"] = f"{m['help']} [default: {shown}]".replace("%", "%%")
        yield title, flag_of(f), kwargs


def column_fields(names=COLUMN_SETTINGS):
    """``(flag, argparse keyword arguments)`` of the column settings ``names``, as ``train`` declares
    them (:func:`cli_fields`), for the other commands that read data."""
    wanted = {"--" + n.replace("_", "-") for n in names}
    for title, flag, kwargs in cli_fields():
        if title == DataOptions.TITLE and flag in wanted:
            yield flag, kwargs
