"""The tests mirror the package: ``tests/PKG/`` exists only for ``rmcompress/PKG/`` (or ``PKG.py``), and
tests share code only through ``tests/helpers.py`` (no test imports conftest or another test module)."""
from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
PACKAGE = TESTS.parent / "rmcompress"


def test_test_folders_mirror_packages():
    folders = {p.name for p in TESTS.iterdir() if p.is_dir() and list(p.glob("test_*.py"))}
    strays = [n for n in folders if not (PACKAGE / n / "__init__.py").is_file() and not (PACKAGE / f"{n}.py").is_file()]
    assert folders and not strays, strays


def test_tests_share_code_only_through_helpers():
    found = []
    for path in TESTS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                last = name.split(".")[-1]
                if last == "conftest" or last.startswith("test_") or last.startswith("_compress"):
                    found.append(f"{path.relative_to(TESTS)}:{node.lineno} imports {name}")
    assert not found, found
