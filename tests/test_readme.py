"""The README's Python example runs as written (on a small reviews file): a model written in Keras 3
goes through from_keras, budget training in its own fit, shrink, import, compress and export."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from rmcompress.data.synthetic import pointwise_frame
from tests.helpers import ROOT

MARKER = "<!-- readme-python: the test suite runs this block (tests/test_readme.py) -->"


def readme_python_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert MARKER in text
    block = re.search(r"```python\n(.*?)```", text[text.index(MARKER):], re.S)
    return block.group(1)


@pytest.mark.slow
def test_readme_python_example_runs(tmp_path):
    pointwise_frame(600, seed=3).to_csv(tmp_path / "reviews.tsv", sep="\t", index=False)
    code = readme_python_block()
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=900,
                         env={"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    groups = eval(next(x for x in lines if x.startswith("{'")))  # noqa: S307 (the example's own print)
    fraction = float(lines[-1])
    assert set(groups.values()) == {64, 128} and len(groups) == 3
    assert fraction <= 0.25
    for path in ("small.keras", "models/small/report.json", "models/small-light/report.json",
                 "models/small-export/model.tflite", "complexity.csv"):
        assert (tmp_path / path).exists(), path
