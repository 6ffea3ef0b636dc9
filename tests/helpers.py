"""Helpers the tests share (the fixtures are in ``conftest.py``): tiny training settings, the
real-data locator, the CLI in a subprocess, a compression state to run passes on.

Real data lives in ``../shared/data`` beside the project (CI has it); tests that need it call
:func:`shared_data`, which skips with a clear reason when it is absent.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (ROOT / ".." / "shared" / "data").resolve()


def shared_data(relative: str) -> Path:
    """Path of a real data file, or skip the test with the reason."""
    p = SHARED_DATA / relative
    if not p.exists():
        pytest.skip(f"real data {p} not found (CI provides ../shared/data beside the project)")
    return p


TINY = dict(width=16, depth=1, heads=2, ffn=32, filters=8, hidden=16, seq_len=16, vocab_size=300,
            epochs=1, max_steps=6, batch_size=32, patience=0)


def tiny_config(**overrides):
    from rmcompress.training.trainer import TrainConfig

    return TrainConfig.from_flat(**{**TINY, **overrides})


TINY_TRAIN_FLAGS = ["--width", "16", "--depth", "1", "--heads", "2", "--ffn", "32", "--filters", "8",
                    "--hidden", "16", "--seq-len", "16", "--vocab-size", "300", "--epochs", "1",
                    "--max-steps", "6", "--batch-size", "32", "--patience", "0"]


def rmcompress_subprocess(*args, kill_at: str | None = None, timeout: float = 240, env=None):
    """Run ``python -m rmcompress ARGS`` in a fresh process; ``kill_at`` sets ``RMCOMPRESS_KILL_AT``
    (see ``rmcompress.faults``). Returns the ``CompletedProcess`` (returncode -9 when killed)."""
    e = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    e.pop("RMCOMPRESS_KILL_AT", None)
    if kill_at:
        e["RMCOMPRESS_KILL_AT"] = kill_at
    return subprocess.run([sys.executable, "-m", "rmcompress", *[str(a) for a in args]], env=e,
                          capture_output=True, text=True, timeout=timeout, cwd=str(ROOT))


def transformer_state(tmp_path_factory, data_file, max_steps: int = 4):
    """A tiny transformer trained ``max_steps`` steps on ``data_file``, as the
    :class:`~rmcompress.compression.state.CompressState` a pass receives."""
    from rmcompress.compression.state import prepare_state
    from rmcompress.training.trainer import train

    r = train(data_file, tiny_config(arch="transformer", max_steps=max_steps), tmp_path_factory.mktemp("m") / "m",
              verbose=0)
    return prepare_state(r.bundle, data_file)


def run_pass(name: str, state, **settings):
    """Run the registered pass ``name`` on ``state`` with ``settings`` (the rest: defaults);
    return ``(state, notes)``."""
    from rmcompress.compression.passes import PASSES

    cls = PASSES[name]
    result = cls()(state, cls.Settings(**settings))
    return result.state, result.notes
