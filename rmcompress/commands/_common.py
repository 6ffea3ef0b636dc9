"""Argument boilerplate shared by the subcommands (no heavy imports: the CLI reads this before TF)."""
from __future__ import annotations


def model_to_out_parser(sub, parents, name: str, *, help: str, description: str, model_help: str,
                        out_help: str):
    """A subcommand that reads the model directory ``--model`` and writes the directory ``--out``
    (``--overwrite`` replaces an existing one); returns the parser for the command's own options."""
    p = sub.add_parser(name, parents=parents, help=help, description=description)
    p.add_argument("--model", required=True, help=model_help)
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    return p


def add_column_flags(p, names=None, title: str = "data columns"):
    """The flags naming the data's columns (``--text-column``, ``--chosen-column``, ...), declared
    once with the training settings (:func:`rmcompress.config.training.column_fields`), in the
    help group ``title``."""
    from rmcompress.config.training import COLUMN_SETTINGS, column_fields

    group = p.add_argument_group(title)
    for flag, kwargs in column_fields(names or COLUMN_SETTINGS):
        group.add_argument(flag, **kwargs)


def columns_of(args) -> dict:
    """``{setting: column}`` of the column flags given on the command line."""
    from rmcompress.config.training import COLUMN_SETTINGS

    return {k: getattr(args, k) for k in COLUMN_SETTINGS if getattr(args, k, None) is not None}


def add_progress_args(p) -> None:
    """``--quiet`` and ``--tensorboard DIR`` of a command that trains (what it shows and logs:
    :mod:`rmcompress.config.progress`)."""
    p.add_argument("--quiet", action="store_true",
                   help="show no progress: no Keras progress bar (on a terminal) or line per epoch (otherwise), "
                        "no pass lines; results, notes and errors still print")
    p.add_argument("--tensorboard", default=None, metavar="DIR",
                   help="write TensorBoard logs of every training pass to DIR (a new directory per run; "
                        "--overwrite replaces one rmcompress wrote); view with: tensorboard --logdir DIR")


def progress_of(args) -> dict:
    """``verbose`` and ``tensorboard`` for ``train()`` / ``compress()`` from the flags of
    :func:`add_progress_args`."""
    from rmcompress.config.progress import fit_verbosity

    return {"verbose": fit_verbosity(args.quiet), "tensorboard": args.tensorboard}


def model_data_parser(sub, parents, name: str, *, help: str, description: str, model_help: str):
    """A subcommand that reads a model directory ``--model`` and a data file ``--data`` of its task
    (split as its training run split it); returns the parser for the command's own options."""
    p = sub.add_parser(name, parents=parents, help=help, description=description)
    p.add_argument("--model", required=True, help=model_help)
    p.add_argument("--data", required=True, help="data file of the model's task (split like training)")
    return p


def read_model_data(args, path=None):
    """``(metadata, data)``: the model directory ``args.model`` checked and ``path`` (default
    ``args.data``) read with its training run's columns (a column flag names another), before
    TensorFlow loads."""
    from rmcompress.data.loaders import load_for_model
    from rmcompress.data.vocab_fit import check_vocab_fits
    from rmcompress.models.layout import check_model_dir

    metadata = check_model_dir(args.model)
    check_vocab_fits(args.model, metadata)
    data = load_for_model(args.data if path is None else path, metadata, training_columns=True,
                          columns=columns_of(args))
    return metadata, data
