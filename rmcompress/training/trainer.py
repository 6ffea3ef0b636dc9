"""``train()``: data file -> trained reward model directory (the first stage of the pipeline).

Steps (each a function below): load and validate the file and split off validation rows
(:func:`_load_and_split`); the task object (:func:`_task_for`); teacher targets
(:func:`_teacher_plan`); a WordPiece vocabulary trained on the *training* texts
(:func:`_fit_tokenizer`); encode; the step schedule (:func:`_schedule`); the scorer and its
training model (:func:`_build_scorer`, :func:`_training_model`); fit with AdamW, early stopping on
the validation metric (best weights restored) (:func:`_fit`); shrink a gated model and fine-tune it
(:func:`_shrink_if_gated`); measure on the validation split (:func:`_report`); write the model
directory atomically with ``report.json`` (:func:`_save`). Settings: :class:`TrainConfig`
(:mod:`rmcompress.config.training`).

With an output directory, training keeps a backup beside it (``OUT.rmc-backup``, see
:mod:`rmcompress.training.resume`) that ``resume=True`` continues from after an interruption; it is
removed once ``OUT`` is complete.

Progress (:mod:`rmcompress.config.progress`): ``verbose`` is Keras' (0 by default: nothing shown);
``tensorboard=DIR`` logs the fit with Keras' ``TensorBoard`` callback in ``DIR`` (``train/``,
``validation/``; a gated run also ``complexity/``, the complexity logger's values at each step, and
the shrunk model's fine-tuning in ``finetune/``). ``DIR`` is written in place while the run trains
(:func:`rmcompress.fileio.live_dir`: never an input or ``OUT``; an existing one needs ``overwrite``,
or ``resume``, and rmcompress having written it).

Distribution (:mod:`rmcompress.training.strategy`): ``strategy`` is a choice of
``none``/``mirrored``/``multiworker``/``auto`` or a ``tf.distribute.Strategy``; the global batch is
``batch_size`` whatever the number of workers. Every worker of a multi-worker run computes the
same run; only the chief writes ``OUT``, its backup and the TensorBoard logs.

Mixed precision (``cfg.optim.mixed_precision``, :mod:`rmcompress.training.precision`): the scorer
and training model are built under Keras' ``mixed_bfloat16`` policy (the global policy is restored
right after), the shrunk model's fine-tuning too; the trained scorer is then rebuilt as a float32
model with the same weights, which the report measures and ``OUT`` holds (``report.json``:
``"mixed_precision": true``).

Pretrained starts (``rmcompress.training.sources``): ``backbone`` bridges a keras-nlp backbone
(its vocabulary replaces the trained one, its weights the random init); ``init`` copies a model
directory. ``teacher`` adds distillation (``rmcompress.training.distill``): teacher rewards are
computed once over the training (and ``unlabeled``) texts with the teacher's tokenizer.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from rmcompress import faults
from rmcompress._keras import keras, tf
from rmcompress.config.choices import COLUMN_SETTINGS
from rmcompress.config.progress import Progress
from rmcompress.config.schedule import split_finetune, step_plan
from rmcompress.config.training import DEFAULT_SEQ_LEN, TrainConfig
from rmcompress.data.loaders import load_training_data
from rmcompress.data.pipeline import EncodedData, all_ids, encode
from rmcompress.data.shards import is_streamed
from rmcompress.data.split import resolve_mode, split_data
from rmcompress.data.stream import split_streamed
from rmcompress.data.tokenizer import Tokenizer, TokenizerConfig
from rmcompress.errors import UsageError
from rmcompress.fileio import check_destination, live_dir, write_json
from rmcompress.models.architectures import ArchConfig, build_reward_model
from rmcompress.models.modeldir import RewardModelBundle, save_model_dir, save_samples
from rmcompress.models.structure import count, infer_arch_config, is_architecture
from rmcompress.sizes import file_sizes
from rmcompress.structured.gating import gated_copy
from rmcompress.training import complexity_training as cx
from rmcompress.training.distill import DistillationPlan, DistillSettings
from rmcompress.training.finetune import finetune, fit_model, make_optimizer, warmup_cosine
from rmcompress.training.lengths import find_slack
from rmcompress.training.model import RewardTrainingModel
from rmcompress.training.precision import FLOAT32, MIXED, is_mixed, policy_scope, recast
from rmcompress.training.resume import Backup, ResumableEarlyStopping, backup_supported, data_fingerprint
from rmcompress.training.scoring import evaluate_encoded
from rmcompress.training.sources import scorer_source
from rmcompress.training.strategy import is_chief, make_strategy, replica_batch, shard_by_data
from rmcompress.training.tasks import Task, make_task

__all__ = ["TrainConfig", "TrainResult", "train", "arch_config", "evaluate_encoded", "warmup_cosine",
           "DEFAULT_SEQ_LEN"]


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


def arch_config(cfg: TrainConfig, vocab_size: int) -> ArchConfig:
    """The architecture ``cfg.arch`` asks for, at the tokenizer's vocabulary and length."""
    a = cfg.arch
    return ArchConfig(arch=a.name, vocab_size=vocab_size, seq_len=cfg.resolved_seq_len(), width=a.width,
                      depth=a.depth, heads=a.heads, head_dim=max(1, a.width // max(1, a.heads)), ffn=a.ffn,
                      filters=a.filters, kernel_sizes=list(a.kernel_sizes), hidden=a.hidden, dropout=a.dropout,
                      head_hidden=a.head_hidden)


def _merge_history(before: list[dict], after: dict) -> dict:
    """Per-epoch logs saved in the backup + the resumed ``fit``'s history -> one history dict."""
    keys = list(dict.fromkeys(list(after) + [k for row in before for k in row]))
    return {k: [row.get(k, float("nan")) for row in before] + list(after.get(k, [])) for k in keys}


def make_training_model(scorer, cfg: TrainConfig, loss: str) -> RewardTrainingModel:
    """The plain training model of ``cfg``'s task (``train(build_training_model=...)`` may replace it)."""
    return RewardTrainingModel(scorer, task=cfg.task, loss=loss, center_coefficient=cfg.center_coefficient)


@dataclass
class Schedule:
    """How many steps a run takes: ``epochs`` x ``steps_per_epoch`` fitting, then ``finetune_steps``
    fine-tuning the shrunk model (gated runs)."""

    steps_per_epoch: int
    epochs: int
    finetune_steps: int = 0

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs


# -- the steps of train() ---------------------------------------------------------------------------
def _prepare_output(out_dir, overwrite: bool, resume: bool, backup: bool, strategy, inputs) -> bool:
    """Check the destination (never one of the ``inputs``); whether this run keeps a backup to
    resume from."""
    if out_dir is not None:
        check_destination(out_dir, overwrite, inputs=inputs)
    use_backup = out_dir is not None and backup and backup_supported(strategy)
    if resume and not use_backup:
        raise UsageError(f"--resume needs an output directory and a strategy Keras can back up "
                         f"(none, mirrored, multiworker or TPU); got {type(strategy).__name__}")
    if use_backup:
        Backup.check(out_dir, resume, overwrite, writer=is_chief(strategy))
    return use_backup


def _load_and_split(data, cfg: TrainConfig, validation):
    """``(data, train_data, val_data)``: ``data`` loaded (a path) and checked against the task,
    its validation rows split off, or ``validation`` (a path or data) used instead. Streamed data
    (a directory, a glob, a large file) is scanned once; ``data`` and ``train_data`` are then its
    :class:`~rmcompress.data.stream.StreamedData` (:func:`_encode` reads it)."""
    data, validation = load_training_data(data, cfg, validation)
    if is_streamed(data):
        return split_streamed(data, cfg, validation)
    if validation is None:
        d = cfg.data
        return (data, *split_data(data, d.val_fraction, d.seed, d.split_mode))
    return data, data, validation


def _task_for(cfg: TrainConfig, data) -> Task:
    """The task object: ``cfg.loss``, by default ``bce`` for 0/1 labels, else ``mse``."""
    task = make_task(cfg.task, cfg.loss, cfg.center_coefficient, getattr(data, "label_kind", None))
    if task.loss == "bce" and data.label_kind != "binary":
        raise UsageError(f"{data.source}: --loss bce needs 0/1 labels; these are real-valued (use mse or mae)")
    return task


def _teacher_plan(cfg: TrainConfig, task: Task, train_data, val_data, split_given: bool):
    """The teacher's targets for the training (and unlabeled) rows, or None without a teacher."""
    dc = cfg.distill
    if not dc.teacher:
        return None
    d = cfg.data
    return DistillationPlan.prepare(
        dc.teacher, cfg.task, task.loss, train_data, val_data,
        DistillSettings(dc.weight, dc.loss, dc.temperature, dc.features, augment=dc.augment, blocks=dc.blocks,
                        block_layers=dc.block_layer_list),
        dc.unlabeled, {k: getattr(d, k) for k in COLUMN_SETTINGS},
        split_settings=None if split_given else (d.val_fraction, d.seed, d.split_mode))


def _fit_tokenizer(cfg: TrainConfig, train_data, distill, source, bk, given: Tokenizer | None) -> Tokenizer:
    """The run's tokenizer: an interrupted run's, a given one, the pretrained source's, or a
    WordPiece vocabulary trained on the training (and unlabeled) texts."""
    if bk is not None and bk.tokenizer is not None:  # resuming: the interrupted run's vocabulary
        return bk.tokenizer
    if given is not None:  # a given tokenizer (e.g. shared by benchmark runs) is used as is
        return given
    if source is not None:
        return source.tokenizer
    t = cfg.tokenizer
    texts = train_data.vocab_sample if is_streamed(train_data) else train_data.all_texts  # streamed: a sample
    return Tokenizer.train(texts + (distill.extra_texts if distill else []), t.vocab_size,
                           TokenizerConfig(cfg.resolved_seq_len(), cfg.resolved_truncate(), t.lowercase))


def _encode(train_data, val_data, tokenizer: Tokenizer) -> tuple[EncodedData, EncodedData]:
    """``(enc_train, enc_val)``: token ids of both splits. Streamed training rows stay a stream:
    a :class:`~rmcompress.data.stream.StreamedEncoded` (``len``: every training row; ``dataset``:
    the tokenised ``tf.data`` stream :func:`_fit` fits on; arrays: a sample of the first rows)."""
    enc_train = train_data.encode(tokenizer) if is_streamed(train_data) else encode(train_data, tokenizer)
    return enc_train, encode(val_data, tokenizer)


def _schedule(cfg: TrainConfig, n_train: int) -> Schedule:
    """Steps per epoch and epochs (``max_steps`` caps them); a gated run leaves
    ``finetune_fraction`` of the steps to fine-tuning the shrunk model."""
    o = cfg.optim
    steps_per_epoch, epochs = step_plan(n_train, o.batch_size, o.epochs, o.max_steps)  # exactly max_steps
    ft_steps = cx.finetune_steps(cfg, steps_per_epoch * epochs) if cfg.gates.active else 0
    steps_per_epoch, ft_steps = split_finetune(steps_per_epoch, epochs, ft_steps)  # the gated phase: the rest
    return Schedule(steps_per_epoch, epochs, ft_steps)


def _build_scorer(cfg: TrainConfig, task: Task, source, arch, enc_train: EncodedData):
    """The scorer (call in the strategy's scope): the source's copy or a fresh ``arch``; gated when
    the run is (gates on a copied start open, optionally ranked by unit importance)."""
    scorer = build_reward_model(arch) if source is None else source.build()
    if not cfg.gates.active:
        return scorer
    gated = gated_copy(scorer, **cx.gate_options(cfg))
    if source is not None and cfg.gates.init != "uniform":
        cx.rank_gates(gated, scorer, cfg, enc_train, task.loss)
    return gated


def _training_model(scorer, cfg: TrainConfig, task: Task, distill, builder, schedule: Schedule):
    """The training model (plain, complexity-aware when gated, or ``builder``'s) with the
    distillation term when there is a teacher, compiled with AdamW on the warm-up/cosine schedule."""
    builder = builder or (cx.make_complexity_model if cfg.gates.active else make_training_model)
    if distill is not None:
        builder = distill.wrap(builder)
    model = builder(scorer, cfg, task.loss)
    o = cfg.optim
    model.compile(optimizer=make_optimizer(o.learning_rate, schedule.total_steps, "cosine", o.warmup_fraction,
                                           o.weight_decay))
    return model


def _length_checked(scorer, distill) -> list:
    """The models a run grouped by length feeds cut batches: the scorer, and the teacher whose
    hidden states block distillation computes on every batch."""
    teacher = getattr(distill.settings, "block_teacher", None) if distill is not None else None
    return [scorer] + ([teacher] if teacher is not None else [])


def _build(model, enc: EncodedData) -> None:
    """Create the training model's variables by calling it on one example."""
    if not model.built and len(enc):
        model(model.task_object.first_example(enc.inputs()), training=False)


def _callbacks(cfg: TrainConfig, task: Task, model, enc_train, has_val: bool, schedule: Schedule, bk, given,
               progress: Progress):
    """``(callbacks, complexity logger or None)``: the caller's, the complexity ones (gated) or
    early stopping, and the backup's (in the order they must run)."""
    cbs = list(given)
    monitor, mode = task.monitor()
    early = cx_logger = None
    if cfg.gates.active:  # budget-aware early stopping etc. come with the complexity callbacks
        cx_cbs, cx_logger = cx.complexity_callbacks(cfg, schedule.total_steps, monitor if has_val else None, mode,
                                                    tensorboard_dir=progress.child("complexity").tensorboard)
        cbs.extend(cx_cbs)
    elif has_val and cfg.optim.patience > 0:
        early = ResumableEarlyStopping(monitor=monitor, mode=mode, patience=cfg.optim.patience,
                                       restore_best_weights=True)
    if bk is not None:
        _build(model, enc_train)  # BackupAndRestore restores into built variables
        cbs.extend(bk.callbacks(early))
    elif early is not None:
        cbs.append(early)
    return cbs, cx_logger


def _fit(model, cfg: TrainConfig, enc_train, enc_val, schedule: Schedule, callbacks, bk, progress: Progress,
         slack: int = 0):
    """``(ds_train, history, seconds)``: fit over the shuffled, repeated training stream (after a
    resume: from where the interrupted run stopped; grouped by length with ``slack`` when asked),
    each global batch shared out by element."""
    ds_train = enc_train.dataset(cfg.optim.batch_size, shuffle=True, seed=cfg.data.seed, repeat=True,
                                 group_by_length=cfg.optim.group_by_length, slack=slack)
    fit_epochs = schedule.epochs
    if bk is not None and bk.initial_epoch:
        # the shuffled batch stream is a function of the seed: skip what the completed epochs used
        ds_train = ds_train.skip(bk.initial_epoch * schedule.steps_per_epoch)
        if bk.state.get("early_stopping", {}).get("stopped_epoch"):
            fit_epochs = bk.initial_epoch  # it had stopped early: nothing left to run
    ds_train = shard_by_data(ds_train)
    ds_val = shard_by_data(enc_val.dataset(256)) if len(enc_val) else None
    t = time.time()
    try:
        history = fit_model(model, ds_train, schedule.steps_per_epoch, fit_epochs, ds_val, callbacks, progress)
    except BaseException:
        if bk is not None:
            bk.discard_if_empty()  # nothing to resume before the first completed epoch
        raise
    seconds = time.time() - t
    faults.point("train:after_fit")
    if bk is not None and bk.initial_epoch:  # the epochs run before the interruption come first
        history = _merge_history(bk.history, history)
    return ds_train, history, seconds


def _shrink_if_gated(model, cfg: TrainConfig, task: Task, arch, enc_val, ds_train, schedule: Schedule,
                     distill, strategy, progress: Progress):
    """``(scorer, arch, report entries)``: a gated run's model with the budget held, shrunk and
    fine-tuned ``schedule.finetune_steps`` (distilled like the gated phase); others unchanged."""
    if not cfg.gates.active:
        return model.scorer, arch, {}
    scorer, info = cx.finish_gated(model, all_ids(enc_val) if len(enc_val) else None, cfg.gates.shrink)
    if cfg.gates.shrink:

        arch = infer_arch_config(scorer) if is_architecture(scorer) else {}
    if schedule.finetune_steps:
        o = cfg.optim
        scorer, _ = finetune(scorer, task, ds_train, schedule.finetune_steps, learning_rate=o.learning_rate,
                             warmup_fraction=o.warmup_fraction, weight_decay=o.weight_decay,
                             distill=distill.settings if distill is not None else None,
                             progress=progress.child("finetune"),
                             copy=True, strategy=strategy)
        info["finetune_steps"] = schedule.finetune_steps
    return scorer, arch, info


def _report(cfg, task, scorer, arch_dict, data, enc_train, enc_val, tokenizer, history, fit_seconds,
            schedule, cx_info, bk, distill, val_given: bool, slack: int = 0) -> dict:
    """``report.json``: what was trained, on what, for how long, and how well. ``split``: how the
    validation rows were chosen (``given``: a validation file; ``none``: no validation rows);
    ``length_slack``: with ``group_by_length``, the padding kept after each row's last token."""
    if val_given or not cfg.data.val_fraction:
        split = "given" if val_given else "none"
    else:
        split = resolve_mode(data, cfg.data.split_mode)[0]
    epochs_run = len(next(iter(history.values()))) if history else 0
    report = {"task": cfg.task, "stage": "train", "arch": arch_dict.get("arch", cfg.arch.name), "loss": task.loss,
              "n_train": len(enc_train), "n_examples": len(enc_val),
              "train_seconds": round(fit_seconds, 2), "epochs_run": epochs_run,
              "steps": epochs_run * schedule.steps_per_epoch, "skipped_rows": data.skipped,
              "split": split,
              "truncated_texts": int(getattr(data, "truncated", 0)),
              "vocab_size": tokenizer.vocab_size, "seq_len": tokenizer.seq_len}
    if len(enc_val):
        report.update(evaluate_encoded(scorer, enc_val, cfg.task, task.loss))
    report.update(getattr(data, "report", {}))  # streamed data: its shards and row counts
    report.update(count(scorer).as_dict())
    report.update(cx_info)
    if bk is not None and bk.resumed:
        report["resumed_after_epoch"] = bk.initial_epoch
    if distill is not None:
        report.update({k: v for k, v in distill.info.items() if k != "teacher"})
    if cfg.optim.mixed_precision:
        report["mixed_precision"] = True
    if cfg.optim.group_by_length:
        report["length_slack"] = int(slack)
    return report


def _metadata(cfg, task, data, val_data, arch_dict, source, distill, validation_given, extra) -> dict:
    """The model directory's metadata: task, loss, architecture, the flat config, provenance."""
    provenance = {}
    if source is not None:
        provenance.update(source.info if "init" in source.info else {"backbone": source.info})
    if distill is not None:
        provenance["distillation"] = distill.info
    if validation_given:
        provenance["validation"] = str(getattr(val_data, "source", "given"))
    return {"task": cfg.task, "loss": task.loss, "label_kind": getattr(data, "label_kind", None),
            "arch": arch_dict, "train_config": cfg.flat_dict(), "data": str(data.source), **provenance,
            **(extra or {})}


def _save(out_dir, bundle, report, history, cx_logger, enc_train, enc_val, cfg, overwrite, t0, bk,
          chief: bool = True) -> Path | None:
    """Write the model directory (atomically) with history, complexity log, samples and
    ``report.json``; then drop the backup. A non-chief worker writes nothing (None)."""
    report["total_seconds"] = round(time.time() - t0, 2)
    if not chief:
        return None

    def extra(tmp: Path):
        import pandas as pd


        pd.DataFrame(history).rename_axis("epoch").to_csv(tmp / "history.csv")
        if cx_logger is not None:
            cx_logger.write(tmp / "complexity_log.csv")
        save_samples(tmp, all_ids(enc_val), all_ids(enc_train), cfg.data.seed)
        report.update(file_sizes(tmp / "model.keras"))
        write_json(tmp / "report.json", report)

    path = save_model_dir(out_dir, bundle.model, bundle.tokenizer, bundle.metadata, None, overwrite, extra)
    if bk is not None:
        bk.remove()  # only now: OUT is complete
    return path


def train(data, cfg: TrainConfig, out_dir: str | Path | None = None, overwrite: bool = False,
          callbacks=(), verbose: int = 0, strategy: str | tf.distribute.Strategy | None = None,
          build_training_model=None, metadata_extra: dict | None = None, resume: bool = False,
          backup: bool = True, validation=None, tokenizer: Tokenizer | None = None,
          tensorboard: str | Path | None = None) -> TrainResult:
    """Train a reward model on ``data`` and optionally save it to ``out_dir``. ``data`` (and
    ``validation``) is a file path, a pandas ``DataFrame``, a ``datasets.Dataset``, a list of dicts
    (:func:`rmcompress.data.tables.as_table`) or data from ``load_data``; ``cfg`` a
    :class:`TrainConfig` whose task and columns say how to read it.

    ``build_training_model(scorer, cfg, loss)`` may replace the default training wrapper (used by
    complexity-aware and distillation training). With ``out_dir`` and ``backup``, progress is backed
    up after every epoch and ``resume=True`` continues an interrupted run (module docstring).
    ``validation`` (a path or loaded data of the same task) replaces the split of ``data``: all of
    ``data`` trains. ``verbose``: Keras' progress (0 none, 1 a bar, 2 a line per epoch);
    ``tensorboard``: a directory for TensorBoard logs (module docstring). ``strategy``: ``"auto"``,
    ``"none"``, ``"mirrored"``, ``"multiworker"`` or a ``tf.distribute.Strategy`` (None: the one in
    scope; :mod:`rmcompress.training.strategy`); under a multi-worker strategy only the chief writes
    (the others' ``out_dir`` is None in the result). Returns the bundle, history and report.
    """
    if not isinstance(cfg, TrainConfig):
        raise UsageError(f"train: cfg is a {type(cfg).__name__}, expected a TrainConfig "
                         "(e.g. TrainConfig.from_flat(task='pairwise', epochs=2))")
    strategy = make_strategy(strategy) if isinstance(strategy, str) else strategy
    if not is_chief(strategy):  # the chief alone logs
        tensorboard = None
    progress = Progress(verbose, tensorboard)
    inputs = [data, validation, cfg.source.init, cfg.source.backbone, cfg.distill.teacher, cfg.distill.unlabeled]
    if tensorboard is not None and out_dir is not None:  # OUT is checked before old logs are replaced
        check_destination(out_dir, overwrite, inputs=inputs)
    with live_dir(tensorboard, overwrite, inputs=inputs, outputs=[out_dir], keep=resume, kind="tensorboard"):
        return _train(data, cfg, out_dir, overwrite, callbacks, progress, strategy, build_training_model,
                      metadata_extra, resume, backup, validation, tokenizer, inputs)


def _train(data, cfg: TrainConfig, out_dir, overwrite: bool, callbacks, progress: Progress, strategy,
           build_training_model, metadata_extra, resume: bool, backup: bool, validation, tokenizer,
           inputs) -> TrainResult:
    """:func:`train` (its arguments, the run's ``progress`` and the ``inputs`` its outputs must avoid)."""
    strategy = strategy or tf.distribute.get_strategy()
    use_backup = _prepare_output(out_dir, overwrite, resume, backup, strategy, inputs)
    t0 = time.time()
    data, train_data, val_data = _load_and_split(data, cfg, validation)
    task = _task_for(cfg, data)
    keras.utils.set_random_seed(cfg.data.seed)
    source = scorer_source(cfg, cfg.task)
    distill = _teacher_plan(cfg, task, train_data, val_data, validation is not None)
    settings = {**cfg.flat_dict(), "metadata_extra": metadata_extra or {},
                "training_model": getattr(build_training_model, "__qualname__", None)}
    fingerprint = (data.fingerprint if is_streamed(data) else data_fingerprint(data)) if use_backup else None
    chief = is_chief(strategy)
    bk = Backup.open(out_dir, settings, fingerprint, resume, writer=chief) if use_backup else None
    tokenizer = _fit_tokenizer(cfg, train_data, distill, source, bk, tokenizer)
    if distill is not None:
        distill.check_student(tokenizer)
    enc_train, enc_val = _encode(train_data, val_data, tokenizer)
    if distill is not None:
        enc_train, enc_val = distill.attach(enc_train, tokenizer, "train"), distill.attach(enc_val, tokenizer, "val")
    arch = source.arch if source is not None else arch_config(cfg, tokenizer.vocab_size)
    schedule = _schedule(cfg, len(enc_train))
    replica_batch(cfg.optim.batch_size, strategy)
    mixed = cfg.optim.mixed_precision
    with strategy.scope(), policy_scope(mixed):
        scorer = _build_scorer(cfg, task, source, arch, enc_train)
        if mixed and not is_mixed(scorer):  # a start copied from a float32 model directory
            scorer = recast(scorer, MIXED)
        model = _training_model(scorer, cfg, task, distill, build_training_model, schedule)
    slack = find_slack(_length_checked(scorer, distill), enc_train) if cfg.optim.group_by_length else 0
    cbs, cx_logger = _callbacks(cfg, task, model, enc_train, len(enc_val) > 0, schedule, bk, callbacks, progress)
    if bk is not None:  # only now: a run that fails to start leaves no backup
        bk.start(tokenizer, settings, fingerprint, str(data.source))
    ds_train, history, fit_seconds = _fit(model, cfg, enc_train, enc_val, schedule, cbs, bk, progress, slack)
    with policy_scope(mixed):  # the shrunk model's fine-tuning trains in mixed precision too
        scorer, arch, cx_info = _shrink_if_gated(model, cfg, task, arch, enc_val, ds_train, schedule, distill,
                                                 strategy, progress)
    if mixed:  # measured and saved as a float32 model, the same weights
        scorer = recast(scorer, FLOAT32)
    arch_dict = arch.to_dict() if isinstance(arch, ArchConfig) else dict(arch)
    report = _report(cfg, task, scorer, arch_dict, data, enc_train, enc_val, tokenizer, history, fit_seconds,
                     schedule, cx_info, bk, distill, validation is not None, slack)
    metadata = _metadata(cfg, task, data, val_data, arch_dict, source, distill, validation is not None,
                         metadata_extra)
    bundle = RewardModelBundle(scorer, tokenizer, metadata, None, report)
    if out_dir is not None:
        bundle.path = _save(out_dir, bundle, report, history, cx_logger, enc_train, enc_val, cfg, overwrite, t0, bk,
                            chief)
    return TrainResult(bundle, model, history, report, enc_train, enc_val, bundle.path,
                       {"complexity_log": cx_logger.rows} if cx_logger is not None else {})
