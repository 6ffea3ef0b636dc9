"""docs/cli.md from the argparse definitions: ``python -m rmcompress.clidoc > docs/cli.md``.

The page is rendered from :func:`rmcompress.cli.build_parser`, the parser the ``rmcompress``
command itself uses, so it cannot drift from the code: for every subcommand its usage line, its
description and every option (flags, metavar or choices, whether it is required, its help and its
default), grouped as ``--help`` groups them. Building the parser imports no TensorFlow, so neither
does this module. ``tests/test_clidoc.py`` checks that docs/cli.md equals :func:`render`.

Output is deterministic: usage lines are wrapped at a fixed width (:data:`WIDTH`), whatever the
terminal.
"""
from __future__ import annotations

import argparse
import sys

from rmcompress.cli import build_parser

#: column at which usage lines wrap (fixed, so the page does not depend on the terminal)
WIDTH = 100

HEADER = """\
# Command-line reference

<!-- Generated from the argparse definitions by `python -m rmcompress.clidoc > docs/cli.md`
     (or `make docs`); tests/test_clidoc.py fails when this file is out of date. Do not edit. -->

`rmcompress COMMAND [options]`; `rmcompress COMMAND --help` prints the same information.
Exit status: 0 on success; 2 on bad input, with one line on stderr naming the file, line, key or
layer (`--debug` adds the traceback); 1 on an internal error; 130 after Ctrl-C. Every command
accepts `--verbose` (TensorFlow's own log output) and `--debug`.
"""


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.HelpFormatter(prog, width=WIDTH)


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """``{name: parser}`` of the subcommands, in the order ``--help`` lists them."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _invocation(action: argparse.Action) -> str:
    """``--flag METAVAR`` / ``--flag {a,b}`` / ``NAME`` as the help screen writes it."""
    fmt = _formatter("rmcompress")
    if not action.option_strings:
        return fmt._format_args(action, fmt._get_default_metavar_for_positional(action))
    if action.nargs == 0:
        return ", ".join(action.option_strings)
    args = fmt._format_args(action, fmt._get_default_metavar_for_optional(action))
    return ", ".join(f"{s} {args}" for s in action.option_strings)


def _default(action: argparse.Action) -> str | None:
    """The default worth printing: not for flags (``nargs == 0``), ``None`` or suppressed ones."""
    if action.nargs == 0 or action.default is None or action.default is argparse.SUPPRESS:
        return None
    value = action.default
    if isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    return str(value)


def _help(action: argparse.Action) -> str:
    if not action.help:
        return ""
    text = _formatter("rmcompress")._expand_help(action)
    return " ".join(text.split())


def _option_line(action: argparse.Action) -> str:
    parts = [f"`{_invocation(action)}`"]
    if action.required:
        parts.append("(required)")
    line = "- " + " ".join(parts)
    text = _help(action)
    if text:
        line += f": {text}" + ("" if text.endswith(".") else ".")
    default = _default(action)
    if default is not None and "[default:" not in text:  # train's help states its defaults itself
        line += f" Default: `{default}`."
    return line


def render_command(name: str, parser: argparse.ArgumentParser) -> str:
    """The markdown section of one subcommand."""
    parser.formatter_class = _formatter
    first, *rest = parser.format_usage().strip().splitlines()
    indent = len("usage: ")
    usage = "\n".join([first.removeprefix("usage: ")] + [line[indent:] for line in rest])
    lines = [f"## `rmcompress {name}`", ""]
    if parser.description:
        lines += [" ".join(parser.description.split()), ""]
    lines += ["```", usage, "```", ""]
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if not isinstance(a, argparse._HelpAction)]
        if not actions:
            continue
        title = group.title or "options"
        lines.append(f"**{title}**")
        if group.description:
            lines += ["", " ".join(group.description.split())]
        lines.append("")
        lines += [_option_line(a) for a in actions]
        lines.append("")
    return "\n".join(lines)


def render(parser: argparse.ArgumentParser | None = None) -> str:
    """The whole page (what docs/cli.md must hold)."""
    if parser is None:
        parser = build_parser()
    commands = subparsers(parser)
    out = [HEADER]
    out.append("Commands: " + ", ".join(f"[`{n}`](#rmcompress-{n})" for n in commands) + ".\n")
    for name, sub in commands.items():
        out.append(render_command(name, sub))
    return "\n".join(out).rstrip("\n") + "\n"


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
