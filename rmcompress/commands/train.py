"""``rmcompress train``: data file -> trained reward model directory with report.json."""
from __future__ import annotations

import argparse
import sys

from rmcompress.commands._common import add_progress_args, progress_of
from rmcompress.config.choices import STRATEGIES
from rmcompress.config.streaming import STREAM_FILE_BYTES
from rmcompress.config.training import cli_fields, flat_index


def add_parser(sub, parents):
    """The ``train`` subcommand: the run's own flags here, every setting of :class:`TrainConfig`
    from its declaration (:func:`rmcompress.config.training.cli_fields`: flag, default, help)."""
    p = sub.add_parser("train", parents=parents, help="train a reward model on a data file",
                       description="Train a reward model; writes a model directory with report.json.")
    p.add_argument("--data", required=True,
                   help="CSV, TSV, JSONL or Parquet file (optionally .gz); a directory or a glob of shards (also "
                        f"TFRecord), or a file over {STREAM_FILE_BYTES // 2 ** 20} MiB, is streamed (docs/data.md)")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out if it exists (and discard an interrupted run's backup)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from its last completed epoch (backup in OUT.rmc-backup)")
    p.add_argument("--val-data", default=None,
                   help="validation file (replaces the split of --data) [default: split off --data]")
    p.add_argument("--strategy", default="auto", choices=STRATEGIES,
                   help="tf.distribute strategy: none (one device, a GPU when present), mirrored (the local "
                        "GPUs), multiworker (the cluster of TF_CONFIG; --batch-size stays the global batch), "
                        "auto: multiworker when TF_CONFIG names several workers, mirrored with several GPUs, "
                        "else none [default: auto]")
    add_progress_args(p)
    groups = {None: p}
    for title, flag, kwargs in cli_fields():
        if title not in groups:
            groups[title] = p.add_argument_group(title)
        groups[title].add_argument(flag, **kwargs)
    return p


def writes_outputs(args) -> bool:
    """Whether this process writes ``--out`` (and so locks it): not a non-chief worker of a
    multi-worker run (:func:`rmcompress.config.cluster.writes_artifacts`)."""
    from rmcompress.config.cluster import writes_artifacts

    return writes_artifacts(args.strategy)


def interrupt_hint(args) -> str | None:
    """What the CLI says after Ctrl-C: how to continue (the backup survives an interruption)."""
    from rmcompress.fileio import backup_dir_for

    backup = backup_dir_for(args.out)
    if (backup / "manifest.json").is_file():
        return f"continue from the last completed epoch with the same command and --resume (backup in {backup})"
    return None


def train_config_from_args(args):
    from rmcompress.config.training import TrainConfig

    index = flat_index()
    return TrainConfig.from_flat(**{k: v for k, v in vars(args).items() if k in index})


def _infer_task(args):
    """``(table of --data, note)``: ``args.task`` set from its columns (or the column flags given);
    the note saying so is printed after the run, so bad input stays one line."""
    from rmcompress.commands._common import columns_of
    from rmcompress.data.loaders import infer_task
    from rmcompress.data.shards import is_streamed
    from rmcompress.data.tables import as_table

    if is_streamed(args.data):  # told from the first rows; the shards are read while training
        from rmcompress.data.stream import first_table

        args.task = infer_task(first_table(args.data), **columns_of(args))
        return args.data, f"{args.data}: task {args.task}, told from the columns of its first rows"
    table = as_table(args.data)
    args.task = infer_task(table, **columns_of(args))
    return table, f"{args.data}: task {args.task}, told from its columns"


def run(args: argparse.Namespace) -> int:
    from rmcompress.config.cluster import read_cluster
    from rmcompress.data.loaders import data_notes, load_training_data

    read_cluster()  # a bad TF_CONFIG is one line, before anything loads
    data, task_note = args.data, None
    if args.task is None:  # told from the columns; the file is read once
        data, task_note = _infer_task(args)
    cfg = train_config_from_args(args)  # settings and data are checked before TensorFlow loads
    data, validation = load_training_data(data, cfg, args.val_data)
    from rmcompress.evaluation.table import format_table
    from rmcompress.training.strategy import make_strategy
    from rmcompress.training.trainer import train

    strategy = make_strategy(args.strategy)  # before TensorFlow runs anything (multiworker needs it)
    result = train(data, cfg, args.out, overwrite=args.overwrite, resume=args.resume, validation=validation,
                   strategy=strategy, **progress_of(args))
    if result.out_dir is None:  # a worker of a multi-worker run: the chief writes and reports
        return 0
    notes = [task_note] + data_notes(args.data, result.report.get("skipped_rows"),
                                     result.report.get("truncated_texts", 0))
    if validation is None and cfg.data.val_fraction:
        from rmcompress.data.split import resolve_mode

        notes.append(resolve_mode(data, cfg.data.split_mode)[1])
    for note in filter(None, notes):
        print(f"rmcompress train: note: {note}", file=sys.stderr)
    print(format_table([{"name": str(args.out), **result.report}]))
    print(f"wrote {args.out}")
    return 0
