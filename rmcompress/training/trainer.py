"""``train()``: data file -> trained reward model directory (the first stage of the pipeline).

Steps: load and validate the file; deterministic validation split; train a WordPiece vocabulary
on the *training* texts; encode; build the architecture; fit ``RewardTrainingModel`` with AdamW,
early stopping on the validation metric (best weights restored); measure on the validation split;
write the model directory atomically with ``report.json``.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from rmcompress._keras import keras, tf
from rmcompress.complexity import count
from rmcompress.data.loaders import load_data
from rmcompress.data.pipeline import EncodedData, all_ids, encode
from rmcompress.data.split import split_data
from rmcompress.data.tokenizer import Tokenizer, TokenizerConfig
from rmcompress.errors import UsageError
from rmcompress.models.architectures import ArchConfig, build_reward_model
from rmcompress.models.modeldir import RewardModelBundle, save_model_dir, save_samples
from rmcompress.training.model import RewardTrainingModel, monitor_metric

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
    hidden: int = 64
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
    learning_rate: float = 1e-3
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
    gate_vocab: bool | None = None       # gate vocabulary rows (default: when params are targeted)
    shrink: bool = True                  # shrink the gated model at the end
    finetune_fraction: float = 0.3       # of the steps: fine-tune the shrunk model (gated runs)

    def __post_init__(self):
        if self.epochs < 1:
            raise UsageError(f"--epochs {self.epochs} must be >= 1")
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

    def resolved_seq_len(self) -> int:
        return int(self.seq_len or DEFAULT_SEQ_LEN[self.task])

    def resolved_truncate(self) -> str:
        return self.truncate or ("end" if self.task == "pairwise" else "start")

    def arch_config(self, vocab_size: int) -> ArchConfig:
        return ArchConfig(arch=self.arch, vocab_size=vocab_size, seq_len=self.resolved_seq_len(),
                          width=self.width, depth=self.depth, heads=self.heads,
                          head_dim=max(1, self.width // max(1, self.heads)), ffn=self.ffn,
                          filters=self.filters, hidden=self.hidden, dropout=self.dropout)

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


def warmup_cosine(learning_rate: float, total_steps: int, warmup_fraction: float):
    """Linear warm-up to ``learning_rate`` over ``warmup_fraction`` of steps, then cosine to 0."""
    warmup = max(1, int(total_steps * warmup_fraction))
    decay = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(1, total_steps - warmup), warmup_target=learning_rate,
        warmup_steps=warmup)
    return decay


def evaluate_encoded(model: keras.Model, data: EncodedData, task: str, loss: str = "bce",
                     batch_size: int = 256) -> dict:
    """Quality of a scorer on encoded data: the keys ``report.json`` uses."""
    from rmcompress.evaluate.metrics import quality_metrics

    if task == "pairwise":
        rc = model.predict(data.chosen, batch_size=batch_size, verbose=0).reshape(-1)
        rr = model.predict(data.rejected, batch_size=batch_size, verbose=0).reshape(-1)
        return quality_metrics(task, (rc, rr), None, loss)
    r = model.predict(data.ids, batch_size=batch_size, verbose=0).reshape(-1)
    return quality_metrics(task, r, data.labels, loss)


def make_training_model(scorer, cfg: TrainConfig, loss: str) -> RewardTrainingModel:
    """The training wrapper; a hook so complexity-aware training can substitute its own."""
    return RewardTrainingModel(scorer, task=cfg.task, loss=loss, center_coefficient=cfg.center_coefficient)


def train(data, cfg: TrainConfig, out_dir: str | Path | None = None, overwrite: bool = False,
          callbacks=(), verbose: int = 1, strategy: tf.distribute.Strategy | None = None,
          build_training_model=None, metadata_extra: dict | None = None,
          tokenizer: Tokenizer | None = None) -> TrainResult:
    """Train a reward model on ``data`` (a path or loaded data) and optionally save it to ``out_dir``.

    ``build_training_model(scorer, cfg, loss)`` may replace the default training wrapper (used by
    complexity-aware and distillation training). Returns the bundle, history and report.
    """
    if out_dir is not None and Path(out_dir).exists() and not overwrite:
        raise UsageError(f"{out_dir}: already exists; pass --overwrite to replace it")
    t0 = time.time()
    if isinstance(data, (str, Path)):
        data = load_data(data, cfg.task, text_column=cfg.text_column, label_column=cfg.label_column)
    if data.task != cfg.task:
        raise UsageError(f"data is {data.task} but the task is {cfg.task}")
    loss = "pairwise" if cfg.task == "pairwise" else (cfg.loss or ("bce" if data.label_kind == "binary" else "mse"))
    if cfg.task == "pointwise" and loss == "bce" and data.label_kind != "binary":
        raise UsageError(f"{data.source}: --loss bce needs 0/1 labels; these are real-valued (use mse or mae)")
    train_data, val_data = split_data(data, cfg.val_fraction, cfg.seed, cfg.split_mode)
    keras.utils.set_random_seed(cfg.seed)

    if tokenizer is None:  # a given tokenizer (e.g. shared by benchmark runs) is used as is
        tokenizer = Tokenizer.train(train_data.all_texts, cfg.vocab_size,
                                    TokenizerConfig(cfg.resolved_seq_len(), cfg.resolved_truncate(), cfg.lowercase))
    enc_train, enc_val = encode(train_data, tokenizer), encode(val_data, tokenizer)
    arch = cfg.arch_config(tokenizer.vocab_size)

    steps_per_epoch = max(1, math.ceil(len(enc_train) / cfg.batch_size))
    epochs = cfg.epochs
    if cfg.max_steps is not None:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps)
        epochs = max(1, math.ceil(cfg.max_steps / steps_per_epoch))
    total_steps = steps_per_epoch * epochs

    from rmcompress.training import complexity_training as cx

    gated = cx.is_gated_config(cfg)
    ft_steps = cx.finetune_steps(cfg, total_steps) if gated else 0
    if ft_steps:  # the gated phase gets the rest of the steps
        steps_per_epoch = max(1, (total_steps - ft_steps) // epochs)
        total_steps = steps_per_epoch * epochs
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        scorer = build_reward_model(arch, **cx.gate_options(cfg))
        builder = build_training_model or (cx.make_complexity_model if gated else make_training_model)
        model = builder(scorer, cfg, loss)
        optimizer = keras.optimizers.AdamW(
            learning_rate=warmup_cosine(cfg.learning_rate, total_steps, cfg.warmup_fraction),
            weight_decay=cfg.weight_decay)
        model.compile(optimizer=optimizer)

    ds_train = enc_train.dataset(cfg.batch_size, shuffle=True, seed=cfg.seed, repeat=True)
    ds_val = enc_val.dataset(256) if len(enc_val) else None
    cbs = list(callbacks)
    monitor, mode = monitor_metric(cfg.task, loss)
    cx_logger = None
    if gated:
        cx_cbs, cx_logger = cx.complexity_callbacks(cfg, total_steps, monitor if ds_val is not None else None, mode)
        cbs.extend(cx_cbs)
    elif ds_val is not None and cfg.patience > 0:
        cbs.append(keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=cfg.patience,
                                                 restore_best_weights=True))
    t_fit = time.time()
    hist = model.fit(ds_train, validation_data=ds_val, epochs=epochs, steps_per_epoch=steps_per_epoch,
                     callbacks=cbs, verbose=verbose)
    fit_seconds = time.time() - t_fit
    scorer = model.scorer
    cx_info = {}
    if gated:
        scorer, cx_info = cx.finish_gated(model, all_ids(enc_val) if len(enc_val) else None, cfg.shrink)
        from rmcompress.complexity.structure import infer_arch_config

        arch = infer_arch_config(scorer) if cfg.shrink else arch
        if ft_steps:
            scorer = cx.finetune(scorer, cfg, loss, ds_train, ft_steps, strategy, verbose)
            cx_info["finetune_steps"] = ft_steps

    report = {"task": cfg.task, "stage": "train", "arch": cfg.arch, "loss": loss,
              "n_train": len(enc_train), "n_examples": len(enc_val),
              "train_seconds": round(fit_seconds, 2), "epochs_run": len(hist.epoch),
              "steps": len(hist.epoch) * steps_per_epoch, "skipped_rows": data.skipped,
              "vocab_size": tokenizer.vocab_size, "seq_len": tokenizer.seq_len}
    if len(enc_val):
        report.update(evaluate_encoded(scorer, enc_val, cfg.task, loss))
    report.update(count(scorer).as_dict())
    report.update(cx_info)
    metadata = {"task": cfg.task, "loss": loss,
                "label_kind": getattr(data, "label_kind", None), "arch": arch.to_dict(),
                "train_config": asdict(cfg), "data": str(data.source), **(metadata_extra or {})}
    bundle = RewardModelBundle(scorer, tokenizer, metadata, None, report)
    history = {k: [float(v) for v in vs] for k, vs in hist.history.items()}
    if out_dir is not None:
        report["total_seconds"] = round(time.time() - t0, 2)

        def extra(tmp: Path):
            import pandas as pd

            from rmcompress.evaluate.size import file_sizes
            from rmcompress.fileio import write_json

            pd.DataFrame(history).rename_axis("epoch").to_csv(tmp / "history.csv")
            if cx_logger is not None:
                cx_logger.write(tmp / "complexity_log.csv")
            save_samples(tmp, all_ids(enc_val), all_ids(enc_train), cfg.seed)
            report.update(file_sizes(tmp / "model.keras"))
            write_json(tmp / "report.json", report)

        bundle.path = save_model_dir(out_dir, scorer, tokenizer, metadata, None, overwrite, extra)
    return TrainResult(bundle, model, history, report, enc_train, enc_val, bundle.path,
                       {"complexity_log": cx_logger.rows} if cx_logger is not None else {})
