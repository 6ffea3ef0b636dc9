"""The package a user installs: a wheel built from this checkout, installed non-editable into a
fresh virtual environment, imports its whole public API and runs train -> compress (``light``)
-> export -> evaluate end to end on generated data, from a folder outside the checkout.

This is the one test that proves the wheel (not the editable checkout the rest of the suite
imports) works. It needs pip to reach the package index (or its cache) for the dependencies.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _run(cmd, cwd, env=None, timeout=900):
    p = subprocess.run([str(c) for c in cmd], cwd=str(cwd), env=env, capture_output=True, text=True,
                       timeout=timeout)
    assert p.returncode == 0, f"{' '.join(map(str, cmd))} exited {p.returncode}:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


def _package_dirs() -> set[str]:
    """Every folder of Python code under rmcompress/, as a dotted package name."""
    out = set()
    for py in (ROOT / "rmcompress").rglob("*.py"):
        if "__pycache__" not in py.parts:
            out.add(".".join(py.parent.relative_to(ROOT).parts))
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", dist, ROOT], cwd=dist)
    wheels = list(dist.glob("rmcompress-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_holds_every_package_and_the_recipes(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    packaged = {".".join(Path(n).parent.parts) for n in names if n.endswith("/__init__.py")}
    missing = sorted(_package_dirs() - packaged)
    assert not missing, f"folders of Python code missing from the wheel (no __init__.py?): {missing}"
    recipe_files = {Path(n).name for n in names if "/recipes/" in n}
    assert {"light.yaml", "medium.yaml", "aggressive.yaml", "README.md"} <= recipe_files, recipe_files


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh virtual environment with the wheel installed (non-editable); returns its bin/."""
    env_dir = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    bin_dir = env_dir / "bin"
    _run([bin_dir / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheel],
         cwd=env_dir, timeout=1800)
    return bin_dir


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env["CUDA_VISIBLE_DEVICES"] = ""
    return env


IMPORT_CHECK = r"""
import importlib, json, pkgutil, sys
import rmcompress
assert "site-packages" in rmcompress.__file__, rmcompress.__file__
def callables():
    return {n: callable(getattr(rmcompress, n)) for n in rmcompress.__all__ if n != "__version__"}
before = callables()
for m in pkgutil.walk_packages(rmcompress.__path__, "rmcompress."):
    if not m.name.endswith("__main__"):  # __main__ runs the CLI
        importlib.import_module(m.name)
after = callables()
print(json.dumps({"file": rmcompress.__file__, "before": before, "after": after}))
"""


def test_installed_wheel_public_api_is_callable(installed, tmp_path):
    out = _run([installed / "python", "-c", IMPORT_CHECK], cwd=tmp_path, env=_clean_env())
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert str(installed.parent) in got["file"]
    for when in ("before", "after"):
        not_callable = sorted(n for n, ok in got[when].items() if not ok)
        assert not not_callable, f"not callable {when} importing every module: {not_callable}"
    assert {"train", "evaluate", "compress", "export_model", "count"} <= set(got["after"])


def test_installed_wheel_runs_end_to_end(installed, tmp_path):
    env = _clean_env()
    py, cli = installed / "python", installed / "rmcompress"
    _run([py, "-c", "from rmcompress.data.synthetic import pointwise_frame; "
                    "pointwise_frame(300, seed=3).to_csv('data.tsv', sep='\\t', index=False)"], tmp_path, env)
    tiny = ["--arch", "transformer", "--width", "16", "--depth", "1", "--heads", "2", "--ffn", "32",
            "--seq-len", "16", "--vocab-size", "300", "--epochs", "1", "--max-steps", "6",
            "--batch-size", "32", "--patience", "0"]
    _run([cli, "train", "--task", "pointwise", "--data", "data.tsv", "--out", "model", *tiny], tmp_path, env)
    _run([cli, "compress", "--model", "model", "--recipe", "light", "--data", "data.tsv", "--out", "light"],
         tmp_path, env)
    _run([cli, "export", "--model", "model", "--out", "export", "--format", "savedmodel,tflite"], tmp_path, env)
    tflite = sorted((tmp_path / "light").rglob("*.tflite"))
    assert tflite, "the light recipe wrote no .tflite file"
    for artifact in (tmp_path / "export" / "model.tflite", tflite[0]):
        out = _run([cli, "evaluate", "--model", artifact, "--data", "data.tsv", "--json"], tmp_path, env)
        report = json.loads(out.stdout)
        assert report["n_examples"] > 0
        assert 0.0 <= report["accuracy"] <= 1.0
    for d in ("model", "light", "export"):
        assert (tmp_path / d / "report.json").is_file(), d
