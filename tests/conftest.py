"""Shared fixtures: tiny generated data, tiny trained models, the real-data locator.

Real data lives in ``../shared/data`` beside the project (CI has it); tests that need it call
:func:`shared_data`, which skips with a clear reason when it is absent.
"""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest  # noqa: E402

from rmcompress._keras import tf  # noqa: E402

# Two logical CPU devices for the tf.distribute tests; must happen before TF initialises devices.
_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
except RuntimeError:
    pass

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (ROOT / ".." / "shared" / "data").resolve()


def shared_data(relative: str) -> Path:
    """Path of a real data file, or skip the test with the reason."""
    p = SHARED_DATA / relative
    if not p.exists():
        pytest.skip(f"real data {p} not found (CI provides ../shared/data beside the project)")
    return p


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    from rmcompress.data.synthetic import pairwise_frame, pointwise_frame

    d = tmp_path_factory.mktemp("data")
    pointwise_frame(400, seed=1).to_csv(d / "sentiment.tsv", sep="\t", index=False)
    pairwise_frame(200, seed=1).to_json(d / "pairs.jsonl", orient="records", lines=True)
    return d


@pytest.fixture(scope="session")
def pointwise_file(data_dir) -> Path:
    return data_dir / "sentiment.tsv"


@pytest.fixture(scope="session")
def pairwise_file(data_dir) -> Path:
    return data_dir / "pairs.jsonl"


TINY = dict(width=16, depth=1, heads=2, ffn=32, filters=8, hidden=16, seq_len=16, vocab_size=300,
            epochs=1, max_steps=6, batch_size=32, patience=0)


@pytest.fixture
def default_sigint():
    """SIGINT as in an interactive terminal (Python's ``default_int_handler``) for one test.

    A suite started in the background by a non-interactive shell (``pytest &``, ``nohup ... &``)
    inherits SIGINT *ignored*, and so would every process it starts: a Ctrl-C test there would
    wait forever. While a Python handler is installed, a child's exec resets SIGINT to the default,
    so children get a normal Ctrl-C too."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler if previous is None else previous)


def tiny_config(**overrides):
    from rmcompress.training.trainer import TrainConfig

    return TrainConfig.from_flat(**{**TINY, **overrides})


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory, pointwise_file, pairwise_file):
    """``{name: TrainResult}`` for tiny transformer/cnn/bow pointwise models and a pairwise one,
    each saved to a model directory (``result.out_dir``)."""
    from rmcompress.training.trainer import train

    root = tmp_path_factory.mktemp("models")
    out = {}
    for arch in ("transformer", "cnn", "bow"):
        out[arch] = train(pointwise_file, tiny_config(arch=arch), root / arch, verbose=0)
    out["pairwise"] = train(pairwise_file, tiny_config(task="pairwise", arch="transformer"),
                            root / "pairwise", verbose=0)
    return out


# -- the CLI in-process (tests/test_errors_*.py) ---------------------------------------------------
TINY_TRAIN_FLAGS = ["--width", "16", "--depth", "1", "--heads", "2", "--ffn", "32", "--filters", "8",
                    "--hidden", "16", "--seq-len", "16", "--vocab-size", "300", "--epochs", "1",
                    "--max-steps", "6", "--batch-size", "32", "--patience", "0"]


@pytest.fixture
def cli(monkeypatch, capsys):
    """``cli(*args) -> (exit_code, stdout, stderr)``: ``rmcompress.cli.main`` in this process.

    The CLI's fd-level silencing of TensorFlow is turned off here (it would move stderr away from
    capsys); everything else runs as on the command line.
    """
    from rmcompress import _quiet
    from rmcompress.cli import main

    monkeypatch.setattr(_quiet, "silence", lambda: None)

    def run(*args):
        capsys.readouterr()
        rc = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return rc, out, err

    return run


def rmcompress_subprocess(*args, kill_at: str | None = None, timeout: float = 240, env=None):
    """Run ``python -m rmcompress ARGS`` in a fresh process; ``kill_at`` sets ``RMCOMPRESS_KILL_AT``
    (see ``rmcompress.faults``). Returns the ``CompletedProcess`` (returncode -9 when killed)."""
    import subprocess
    import sys

    e = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    e.pop("RMCOMPRESS_KILL_AT", None)
    if kill_at:
        e["RMCOMPRESS_KILL_AT"] = kill_at
    return subprocess.run([sys.executable, "-m", "rmcompress", *[str(a) for a in args]], env=e,
                          capture_output=True, text=True, timeout=timeout, cwd=str(ROOT))
