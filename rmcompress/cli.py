"""``rmcompress`` command line: one subcommand per pipeline stage.

Exit codes: 0 on success; 2 on bad input or a path the system refuses (an ``OSError``), with one
line on stderr (a flag argparse refuses too: no usage block, :class:`Parser`; the numeric flags of
every command are checked against :mod:`rmcompress.config.rules` before the command runs) that names the file, line, key or layer (no traceback unless ``--debug``); 1 on an
unexpected internal error. TensorFlow's log noise is silenced unless ``--verbose``. Before a
command runs, its output (``--out``) is checked against its inputs and locked for the run
(:func:`rmcompress.ownership.claim`), unless the command's ``writes_outputs(args)`` says this
process writes none (a non-chief worker of a multi-worker ``train``). Each subcommand lives in ``rmcompress.commands.<name>`` and
provides ``add_parser(subparsers)`` and ``run(args) -> int`` (``import``, a Python keyword, lives
in ``rmcompress.commands.import_``).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

COMMANDS = ["train", "import", "shrink", "compress", "search", "sensitivity", "export", "evaluate", "score", "report", "demo"]
#: subcommands whose module name differs from the command (a Python keyword)
MODULES = {"import": "import_"}
#: flags (argparse ``dest``) naming what a command writes, and what it reads (see ``rmcompress.ownership``)
OUTPUT_ARGS = ("out", "tensorboard")
INPUT_ARGS = ("model", "data", "val_data", "test_data", "unlabeled", "init", "teacher", "backbone", "recipe", "dirs", "vocab")


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error: ``rmcompress train: error: argument --arch: invalid choice ...
    (see rmcompress train --help)``, exit 2, instead of the whole usage block (subcommand parsers
    are of this class too)."""

    def error(self, message: str):
        line = " ".join(str(message).split())
        self.exit(2, f"{self.prog}: error: {line} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="rmcompress", description="Train, shrink, compress and export reward models for edge devices.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    common = Parser(add_help=False)
    common.add_argument("--verbose", action="store_true", help="show TensorFlow's own log output")
    common.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"rmcompress.commands.{MODULES.get(name, name)}")
        p = module.add_parser(sub, [common])
        p.set_defaults(_module=module)
        _state_defaults(p)
    return parser


def _state_defaults(parser: argparse.ArgumentParser) -> None:
    """``--help`` names every option's default: ``[default: X]`` is appended to the help of each
    option that has a value as its default and does not state it already (``train``'s options
    state theirs, from :mod:`rmcompress.config.training`)."""
    for action in parser._actions:
        default = action.default
        if (not action.option_strings or default in (None, argparse.SUPPRESS)
                or isinstance(default, bool) or action.nargs == 0):
            continue
        text = action.help or ""
        if "[default:" in text or "%(default)" in text:
            continue
        action.help = f"{text} [default: %(default)s]".strip()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse itself exits 2 on bad flags
    if args.version:
        from rmcompress._version import __version__

        print(__version__)
        return 0
    if args.command is None:
        parser.print_help()
        print(f"rmcompress: error: no command given; choose one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    from rmcompress import _quiet

    if not args.verbose:
        _quiet.silence()
    from rmcompress import ownership
    from rmcompress.config.rules import check_args
    from rmcompress.errors import RMCompressError

    try:
        if not args.verbose:
            _quiet.quiet_python_loggers()
        check_args(args.command, vars(args))
        writes = getattr(args._module, "writes_outputs", lambda a: True)(args)  # a non-chief worker does not
        with ownership.claim([getattr(args, a, None) for a in OUTPUT_ARGS] if writes else [],
                             [getattr(args, a, None) for a in INPUT_ARGS]):
            return int(args._module.run(args) or 0)
    except (RMCompressError, OSError) as e:  # an OSError names the path the system refused
        if args.debug:
            traceback.print_exc()
        msg = f"{e.filename}: {e.strerror}" if isinstance(e, OSError) and e.filename and e.strerror else e
        print(f"rmcompress {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = getattr(args._module, "interrupt_hint", lambda a: None)(args)
        print(f"rmcompress {args.command}: interrupted{'; ' + hint if hint else ''}", file=sys.stderr)
        return INTERRUPTED
    except Exception as e:  # a bug: say so, one line unless --debug
        if args.debug:
            traceback.print_exc()
        print(f"rmcompress {args.command}: internal error: {type(e).__name__}: {e} "
              f"(run with --debug for the traceback)", file=sys.stderr)
        return 1


#: exit status of an interrupted command (128 + SIGINT)
INTERRUPTED = 130


def entry() -> None:
    """The ``rmcompress`` executable (console script and ``python -m rmcompress``): :func:`main`,
    and after Ctrl-C an immediate exit. By then the interrupted command has unwound (its backup and
    atomic writes are finished, temporary files removed, the hint printed); skipping interpreter
    shutdown keeps TensorFlow's background threads (``tf.data`` prefetch, a ``fit`` cut mid-epoch)
    from holding the exit up. ``main`` itself never exits, so tests can call it in-process."""
    rc = main()
    if rc == INTERRUPTED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(INTERRUPTED)
    raise SystemExit(rc)


if __name__ == "__main__":
    entry()
