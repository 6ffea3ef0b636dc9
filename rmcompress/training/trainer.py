"""``train()``: data file -> trained reward model directory (the first stage of the pipeline).

Steps: load and validate the file; deterministic validation split; train a WordPiece vocabulary
on the *training* texts; encode; build the architecture; fit ``RewardTrainingModel`` with AdamW,
early stopping on the validation metric (best weights restored); measure on the validation split;
write the model directory atomically with ``report.json``.

With an output directory, training keeps a backup beside it (``OUT.rmc-backup``, see
:mod:`rmcompress.training.resume`) that ``resume=True`` continues from after an interruption; it is
removed once ``OUT`` is complete.

Pretrained starts (``rmcompress.training.sources``): ``backbone`` bridges a keras-nlp backbone
(its vocabulary replaces the trained one, its weights the random init); ``init`` copies a model
directory. ``teacher`` adds distillation (``rmcompress.training.distill``): teacher rewards are
computed once over the training (and ``unlabeled``) texts with the teacher's tokenizer.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from rmcompress import faults
from rmcompress._keras import keras, tf
from rmcompress.config.choices import GATE_INITS, HEAD_HIDDEN_ARCHS, gate_schedule
from rmcompress.data.loaders import load_data
from rmcompress.data.pipeline import EncodedData, all_ids, encode
from rmcompress.data.split import split_data
from rmcompress.data.tokenizer import Tokenizer, TokenizerConfig
from rmcompress.errors import UsageError
from rmcompress.fileio import check_destination, write_json
from rmcompress.models.archconfig import ArchConfig
from rmcompress.models.architectures import build_reward_model
from rmcompress.models.modeldir import RewardModelBundle, save_model_dir, save_samples
from rmcompress.models.structure import count, infer_arch_config
from rmcompress.sizes import file_sizes
from rmcompress.structured.gating import gated_copy
from rmcompress.training import complexity_training as cx
from rmcompress.training.distill import DistillationPlan, DistillSettings
from rmcompress.training.model import RewardTrainingModel, monitor_metric
from rmcompress.training.resume import Backup, ResumableEarlyStopping, backup_supported, data_fingerprint
from rmcompress.training.schedule import warmup_cosine
from rmcompress.training.scoring import evaluate_encoded
from rmcompress.training.sources import scorer_source

DEFAULT_SEQ_LEN = {"pointwise": 64, "pairwise": 256}


@dataclass
class TrainConfig:
    """Every setting of a training run (CLI flags map 1:1 onto these fields)."""

    task: str = "pointwise"
    arch: str = "transformer"
    width: int = 64
    depth: int = 2
    heads: int = 4
    ffn: int = 128
    filters: int = 64
    kernel_sizes: list = field(default_factory=lambda: [3, 4, 5])  # cnn: one convolution branch per width
    hidden: int = 64
    head_hidden: int = 0                 # transformer/cnn: ReLU units between the pooling and the reward
    dropout: float = 0.1
    seq_len: int | None = None          # default: 64 pointwise, 256 pairwise
    truncate: str | None = None         # keep "start" (pointwise) or "end" (pairwise) of long texts
    vocab_size: int = 8000
    lowercase: bool = True
    loss: str | None = None             # pointwise: bce for 0/1 labels, else mse (or mae)
    center_coefficient: float = 0.0
    epochs: int = 3
    max_steps: int | None = None
    batch_size: int = 64
    learning_rate: float | None = None  # default 1e-3; 3e-5 with backbone/init
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05
    val_fraction: float = 0.1
    split_mode: str = "random"
    seed: int = 0
    patience: int = 2
    text_column: str | None = None
    label_column: str | None = None
    # complexity-aware training (rmcompress.training.complexity_training); any of these gates the run
    gated: bool = False
    flops_weight: float = 0.0
    params_weight: float = 0.0
    budget_flops: float | None = None    # fraction of the dense model's FLOPs
    budget_params: float | None = None   # fraction of the dense model's params
    budget_delay: float = 0.5            # fraction of the (gated) steps before the target starts moving
    budget_warmup: float = 0.3           # fraction of the steps over which the target moves 1.0 -> budget
    gate_learning_rate: float = 0.05
    multiplier_learning_rate: float = 0.01
    quadratic_init: float = 10.0         # initial lambda_2 of the quadratic budget term
    gate_init_log_alpha: float = 3.0     # initial gate log_alpha (P(open) = 0.99)
    gate_init: str = "uniform"           # with --init/--backbone: rank the starting gates by importance
    gate_init_spread: float | None = None  # ... over gate_init_log_alpha +- this (None: by gate_init)
    gate_vocab: bool | None = None       # gate vocabulary rows (default: when params are targeted)
    shrink: bool = True                  # shrink the gated model at the end
    finetune_fraction: float | None = None  # of the steps: fine-tune the shrunk model (None: by gate_init)
    backbone: str | None = None         # keras-nlp preset name or local folder (BERT family)
    backbone_match: str = "source"      # GELU/accents as the original checkpoint ("source") or keras-nlp
    init: str | None = None             # start from a copy of this model directory
    teacher: str | None = None          # distill from this model directory
    distill_weight: float = 0.5
    distill_loss: str = "mse"           # mse on rewards/margins, or ce (temperature-scaled)
    distill_temperature: float = 1.0
    distill_features: float = 0.0       # weight of matching the teacher's pooled features (pointwise)
    unlabeled: str | None = None        # extra texts scored only by the teacher
    augment: int = 0                    # word-replacement variants per text of >= 10 words (teacher-scored)

    def __post_init__(self):
        if self.learning_rate is None:  # fine-tuning a pretrained start wants a small rate
            self.learning_rate = 3e-5 if (self.backbone or self.init) else 1e-3
        if self.epochs < 1:
            raise UsageError(f"--epochs {self.epochs} must be >= 1")

        if self.gate_init not in GATE_INITS:
            raise UsageError(f"--gate-init {self.gate_init!r} unknown; allowed: {', '.join(GATE_INITS)}")
        self.gate_init_spread, self.finetune_fraction = gate_schedule(
            self.gate_init, self.gate_init_spread, self.finetune_fraction)
        if not 0.0 <= self.finetune_fraction < 1.0:
            raise UsageError(f"--finetune-fraction {self.finetune_fraction} must be in [0, 1)")
        if self.gate_init_spread < 0:
            raise UsageError(f"--gate-init-spread {self.gate_init_spread} must be >= 0")
        if self.gate_init != "uniform" and not (self.backbone or self.init):
            raise UsageError(f"--gate-init {self.gate_init} ranks the gates by a trained model's unit "
                             "importance: it needs --init MODEL_DIR (or --backbone)")
        if self.head_hidden and (self.arch not in HEAD_HIDDEN_ARCHS or self.backbone):
            raise UsageError(f"--head-hidden is for --arch transformer or cnn (got --arch {self.arch}"
                             f"{' with --backbone' if self.backbone else ''}); a bow has --hidden")
        if self.head_hidden < 0:
            raise UsageError(f"--head-hidden {self.head_hidden} must be >= 0")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size {self.batch_size} must be >= 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise UsageError(f"--max-steps {self.max_steps} must be >= 1")
        if self.learning_rate <= 0:
            raise UsageError(f"--learning-rate {self.learning_rate} must be > 0")
        if self.loss is not None and self.loss not in ("bce", "mse", "mae"):
            raise UsageError(f"--loss {self.loss!r} unknown; allowed: bce, mse, mae")
        for name in ("budget_flops", "budget_params"):
            v = getattr(self, name)
            if v is not None and not 0.0 < float(v) <= 1.0:
                raise UsageError(f"--{name.replace('_', '-')} {v} must be a fraction in (0, 1]")
        for name in ("flops_weight", "params_weight"):
            if getattr(self, name) < 0:
                raise UsageError(f"--{name.replace('_', '-')} {getattr(self, name)} must be >= 0")
        if not 0.0 <= self.budget_warmup <= 1.0:
            raise UsageError(f"--budget-warmup {self.budget_warmup} must be in [0, 1]")
        if not 0.0 <= self.budget_delay <= 1.0 - self.budget_warmup:
            raise UsageError(f"--budget-delay {self.budget_delay} must be in [0, 1 - budget_warmup]")
        if self.unlabeled and not self.teacher:
            raise UsageError("--unlabeled needs --teacher (only a teacher can score unlabeled texts)")
        if self.augment and not self.teacher:
            raise UsageError("--augment needs --teacher (only a teacher can score the variants)")
        if self.augment and self.task == "pairwise":
            raise UsageError("--augment is pointwise only: a pair's preference does not survive independent "
                             "word swaps")
        if self.teacher:
            DistillSettings(self.distill_weight, self.distill_loss, self.distill_temperature, self.distill_features,
                            augment=self.augment)
        elif self.distill_features:
            raise UsageError("--distill-features needs --teacher")

    def resolved_seq_len(self) -> int:
        return int(self.seq_len or DEFAULT_SEQ_LEN[self.task])

    def resolved_truncate(self) -> str:
        return self.truncate or ("end" if self.task == "pairwise" else "start")

    def arch_config(self, vocab_size: int) -> ArchConfig:
        return ArchConfig(arch=self.arch, vocab_size=vocab_size, seq_len=self.resolved_seq_len(),
                          width=self.width, depth=self.depth, heads=self.heads,
                          head_dim=max(1, self.width // max(1, self.heads)), ffn=self.ffn,
                          filters=self.filters, kernel_sizes=list(self.kernel_sizes), hidden=self.hidden,
                          dropout=self.dropout,
                          head_hidden=self.head_hidden)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class TrainResult:
    bundle: RewardModelBundle
    training_model: RewardTrainingModel
    history: dict
    report: dict
    train_data: EncodedData
    val_data: EncodedData
    out_dir: Path | None = None
    extra: dict = field(default_factory=dict)


def _build(model, enc: EncodedData) -> None:
    """Create the training model's variables by calling it on one example."""
    if not model.built and len(enc):
        x = enc.inputs()
        model(x[:1] if enc.task == "pointwise" else {k: v[:1] for k, v in x.items()}, training=False)


def _merge_history(before: list[dict], after: dict) -> dict:
    """Per-epoch logs saved in the backup + the resumed ``fit``'s history -> one history dict."""
    keys = list(dict.fromkeys(list(after) + [k for row in before for k in row]))
    return {k: [row.get(k, float("nan")) for row in before] + list(after.get(k, [])) for k in keys}


def make_training_model(scorer, cfg: TrainConfig, loss: str) -> RewardTrainingModel:
    """The training wrapper; a hook so complexity-aware training can substitute its own."""
    return RewardTrainingModel(scorer, task=cfg.task, loss=loss, center_coefficient=cfg.center_coefficient)


def train(data, cfg: TrainConfig, out_dir: str | Path | None = None, overwrite: bool = False,
          callbacks=(), verbose: int = 1, strategy: tf.distribute.Strategy | None = None,
          build_training_model=None, metadata_extra: dict | None = None, resume: bool = False,
          backup: bool = True, validation=None, tokenizer: Tokenizer | None = None) -> TrainResult:
    """Train a reward model on ``data`` (a path or loaded data) and optionally save it to ``out_dir``.

    ``build_training_model(scorer, cfg, loss)`` may replace the default training wrapper (used by
    complexity-aware and distillation training). With ``out_dir`` and ``backup``, progress is backed
    up after every epoch and ``resume=True`` continues an interrupted run (module docstring).
    ``validation`` (a path or loaded data of the same task) replaces the split of ``data``: all of
    ``data`` trains. Returns the bundle, history and report.
    """

    if out_dir is not None:
        check_destination(out_dir, overwrite, inputs=[data, validation, cfg.init, cfg.teacher, cfg.unlabeled,
                                                      cfg.backbone])
    strategy = strategy or tf.distribute.get_strategy()
    use_backup = out_dir is not None and backup and backup_supported(strategy)
    if resume and not use_backup:
        raise UsageError(f"--resume needs an output directory and a strategy Keras can back up "
                         f"(none, mirrored or TPU); got {type(strategy).__name__}")
    if use_backup:
        Backup.check(out_dir, resume, overwrite)
    t0 = time.time()
    if isinstance(data, (str, Path)):
        kwargs = {"label_kind": "binary"} if cfg.task == "pointwise" and cfg.loss == "bce" else {}
        data = load_data(data, cfg.task, text_column=cfg.text_column, label_column=cfg.label_column, **kwargs)
    if data.task != cfg.task:
        raise UsageError(f"data is {data.task} but the task is {cfg.task}")
    loss = "pairwise" if cfg.task == "pairwise" else (cfg.loss or ("bce" if data.label_kind == "binary" else "mse"))
    if cfg.task == "pointwise" and loss == "bce" and data.label_kind != "binary":
        raise UsageError(f"{data.source}: --loss bce needs 0/1 labels; these are real-valued (use mse or mae)")
    if validation is not None:
        if isinstance(validation, (str, Path)):
            validation = load_data(validation, cfg.task, text_column=cfg.text_column,
                                   label_column=cfg.label_column)
        if validation.task != cfg.task:
            raise UsageError(f"validation data is {validation.task} but the task is {cfg.task}")
        train_data, val_data = data, validation
    else:
        train_data, val_data = split_data(data, cfg.val_fraction, cfg.seed, cfg.split_mode)
    keras.utils.set_random_seed(cfg.seed)


    source = scorer_source(cfg, cfg.task)
    distill = None
    if cfg.teacher:
        distill = DistillationPlan.prepare(
            cfg.teacher, cfg.task, loss, train_data, val_data,
            DistillSettings(cfg.distill_weight, cfg.distill_loss, cfg.distill_temperature, cfg.distill_features,
                            augment=cfg.augment),
            cfg.unlabeled, cfg.text_column,
            split_settings=None if validation is not None else (cfg.val_fraction, cfg.seed, cfg.split_mode))
    settings = {**asdict(cfg), "metadata_extra": metadata_extra or {},
                "training_model": getattr(build_training_model, "__qualname__", None)}
    bk = None
    if use_backup:
        fingerprint = data_fingerprint(data)
        bk = Backup.open(out_dir, settings, fingerprint, resume)
    if bk is not None and bk.tokenizer is not None:  # resuming: the interrupted run's vocabulary
        tokenizer = bk.tokenizer
    elif tokenizer is not None:  # a given tokenizer (e.g. shared by benchmark runs) is used as is
        pass
    elif source is not None:
        tokenizer = source.tokenizer
    else:
        tokenizer = Tokenizer.train(train_data.all_texts + (distill.extra_texts if distill else []),
                                    cfg.vocab_size, TokenizerConfig(cfg.resolved_seq_len(),
                                                                    cfg.resolved_truncate(), cfg.lowercase))
    enc_train, enc_val = encode(train_data, tokenizer), encode(val_data, tokenizer)
    if distill is not None:
        enc_train = distill.attach(enc_train, tokenizer, "train")
        enc_val = distill.attach(enc_val, tokenizer, "val")
    arch = source.arch if source is not None else cfg.arch_config(tokenizer.vocab_size)

    steps_per_epoch = max(1, math.ceil(len(enc_train) / cfg.batch_size))
    epochs = cfg.epochs
    if cfg.max_steps is not None:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps)
        epochs = max(1, math.ceil(cfg.max_steps / steps_per_epoch))
    total_steps = steps_per_epoch * epochs


    gated = cx.is_gated_config(cfg)
    ft_steps = cx.finetune_steps(cfg, total_steps) if gated else 0
    if ft_steps:  # the gated phase gets the rest of the steps
        steps_per_epoch = max(1, (total_steps - ft_steps) // epochs)
        total_steps = steps_per_epoch * epochs
    with strategy.scope():
        if source is not None:
            scorer = source.build()
            if gated:  # gates on the copied weights (all open at the start)

                opts = cx.gate_options(cfg)["gate_options"]
                plain = scorer
                scorer = gated_copy(plain, gate_vocab=opts["gate_vocab"], seed=opts["seed"],
                                    init_log_alpha=opts["init_log_alpha"])
                if cfg.gate_init != "uniform":
                    cx.rank_gates(scorer, plain, cfg, enc_train, loss)
        else:
            scorer = build_reward_model(arch, **cx.gate_options(cfg))
        builder = build_training_model or (cx.make_complexity_model if gated else make_training_model)
        if distill is not None:
            builder = distill.wrap(builder)
        model = builder(scorer, cfg, loss)
        optimizer = keras.optimizers.AdamW(
            learning_rate=warmup_cosine(cfg.learning_rate, total_steps, cfg.warmup_fraction),
            weight_decay=cfg.weight_decay)
        model.compile(optimizer=optimizer)

    ds_train = enc_train.dataset(cfg.batch_size, shuffle=True, seed=cfg.seed, repeat=True)
    fit_epochs = epochs
    if bk is not None and bk.initial_epoch:
        # the shuffled batch stream is a function of the seed: skip what the completed epochs used
        ds_train = ds_train.skip(bk.initial_epoch * steps_per_epoch)
        if bk.state.get("early_stopping", {}).get("stopped_epoch"):
            fit_epochs = bk.initial_epoch  # it had stopped early: nothing left to run
    ds_val = enc_val.dataset(256) if len(enc_val) else None
    cbs = list(callbacks)
    monitor, mode = monitor_metric(cfg.task, loss)
    early = None
    cx_logger = None
    if gated:  # budget-aware early stopping etc. come with the complexity callbacks
        cx_cbs, cx_logger = cx.complexity_callbacks(cfg, total_steps, monitor if ds_val is not None else None, mode)
        cbs.extend(cx_cbs)
    elif ds_val is not None and cfg.patience > 0:
        early = ResumableEarlyStopping(monitor=monitor, mode=mode, patience=cfg.patience,
                                       restore_best_weights=True)
    if bk is not None:
        _build(model, enc_train)  # BackupAndRestore restores into built variables
        cbs.extend(bk.callbacks(early))
    elif early is not None:
        cbs.append(early)
    if bk is not None:  # only now: a run that fails to start leaves no backup
        bk.start(tokenizer, settings, fingerprint, str(data.source))
    t_fit = time.time()
    try:
        hist = model.fit(ds_train, validation_data=ds_val, epochs=fit_epochs, steps_per_epoch=steps_per_epoch,
                         callbacks=cbs, verbose=verbose)
    except BaseException:
        if bk is not None:
            bk.discard_if_empty()  # nothing to resume before the first completed epoch
        raise
    fit_seconds = time.time() - t_fit
    faults.point("train:after_fit")
    scorer = model.scorer
    history = {k: [float(v) for v in vs] for k, vs in hist.history.items()}
    if bk is not None and bk.initial_epoch:  # the epochs run before the interruption come first
        history = _merge_history(bk.history, history)
    epochs_run = len(next(iter(history.values()))) if history else 0
    cx_info = {}
    if gated:
        scorer, cx_info = cx.finish_gated(model, all_ids(enc_val) if len(enc_val) else None, cfg.shrink)

        arch = infer_arch_config(scorer) if cfg.shrink else arch
        if ft_steps:
            scorer = cx.finetune(scorer, cfg, loss, ds_train, ft_steps, strategy, verbose,
                                 build=distill.wrap(make_training_model) if distill is not None else None)
            cx_info["finetune_steps"] = ft_steps

    arch_dict = arch.to_dict() if isinstance(arch, ArchConfig) else dict(arch)
    report = {"task": cfg.task, "stage": "train", "arch": arch_dict.get("arch", cfg.arch), "loss": loss,
              "n_train": len(enc_train), "n_examples": len(enc_val),
              "train_seconds": round(fit_seconds, 2), "epochs_run": epochs_run,
              "steps": epochs_run * steps_per_epoch, "skipped_rows": data.skipped,
              "truncated_texts": int(getattr(data, "truncated", 0)),
              "vocab_size": tokenizer.vocab_size, "seq_len": tokenizer.seq_len}
    if len(enc_val):
        report.update(evaluate_encoded(scorer, enc_val, cfg.task, loss))
    report.update(count(scorer).as_dict())
    report.update(cx_info)
    if bk is not None and bk.resumed:
        report["resumed_after_epoch"] = bk.initial_epoch
    provenance = {}
    if source is not None:
        provenance.update(source.info if "init" in source.info else {"backbone": source.info})
    if distill is not None:
        provenance["distillation"] = distill.info
        report.update({k: v for k, v in distill.info.items() if k != "teacher"})
    if validation is not None:
        provenance["validation"] = str(getattr(val_data, "source", "given"))
    metadata = {"task": cfg.task, "loss": loss,
                "label_kind": getattr(data, "label_kind", None), "arch": arch_dict,
                "train_config": asdict(cfg), "data": str(data.source), **provenance,
                **(metadata_extra or {})}
    bundle = RewardModelBundle(scorer, tokenizer, metadata, None, report)
    if out_dir is not None:
        report["total_seconds"] = round(time.time() - t0, 2)

        def extra(tmp: Path):
            import pandas as pd


            pd.DataFrame(history).rename_axis("epoch").to_csv(tmp / "history.csv")
            if cx_logger is not None:
                cx_logger.write(tmp / "complexity_log.csv")
            save_samples(tmp, all_ids(enc_val), all_ids(enc_train), cfg.seed)
            report.update(file_sizes(tmp / "model.keras"))
            write_json(tmp / "report.json", report)

        bundle.path = save_model_dir(out_dir, scorer, tokenizer, metadata, None, overwrite, extra)
        if bk is not None:
            bk.remove()  # only now: OUT is complete
    return TrainResult(bundle, model, history, report, enc_train, enc_val, bundle.path,
                       {"complexity_log": cx_logger.rows} if cx_logger is not None else {})
