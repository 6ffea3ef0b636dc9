"""docs/cli.md is the page ``rmcompress.clidoc`` renders from the argparse definitions."""
import argparse
import subprocess
import sys
from pathlib import Path

from rmcompress import clidoc
from rmcompress.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[1]
CLI_MD = ROOT / "docs" / "cli.md"
REGENERATE = "python -m rmcompress.clidoc > docs/cli.md"


def test_docs_cli_md_is_current():
    assert CLI_MD.exists(), f"docs/cli.md is missing; run `{REGENERATE}`"
    assert CLI_MD.read_text(encoding="utf-8") == clidoc.render(), (
        f"docs/cli.md is out of date with the argparse definitions; run `{REGENERATE}` (or `make docs`)")


def test_every_subcommand_and_option_is_documented():
    text = clidoc.render()
    parser = build_parser()
    subs = clidoc.subparsers(parser)
    assert list(subs) == COMMANDS
    for name, sub in subs.items():
        assert f"## `rmcompress {name}`" in text, name
        section = text.split(f"## `rmcompress {name}`", 1)[1].split("\n## ", 1)[0]
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            for flag in action.option_strings or [action.metavar or action.dest]:
                assert f"`{flag}" in section, f"{name}: {flag} missing from its section"


def test_defaults_are_shown_and_flags_have_none():
    text = clidoc.render()
    train = text.split("## `rmcompress train`", 1)[1].split("\n## ", 1)[0]
    assert "- `--width WIDTH`: embedding/model width [default: 64]." in train  # stated once, by the help
    assert "[default: 3,4,5]." in train and "Default: `3,4,5`" not in train
    export = text.split("## `rmcompress export`", 1)[1].split("\n## ", 1)[0]
    assert "[default: savedmodel,tflite]." in export  # every command's --help states its defaults
    no_lower = next(line for line in train.splitlines() if "`--no-lowercase`" in line)
    assert "Default" not in no_lower  # a flag's stored default (True for store_false) is not a value


def test_render_is_independent_of_the_terminal_width(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    narrow = clidoc.render()
    monkeypatch.setenv("COLUMNS", "300")
    assert clidoc.render() == narrow


def test_rendering_imports_no_tensorflow():
    code = ("import sys; from rmcompress import clidoc; clidoc.render(); "
            "bad = [m for m in ('tensorflow', 'tf_keras', 'keras') if m in sys.modules]; "
            "assert not bad, bad")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_module_entry_point_prints_the_page():
    done = subprocess.run([sys.executable, "-m", "rmcompress.clidoc"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == clidoc.render()
