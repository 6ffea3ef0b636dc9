"""An existing output is never replaced without ``--overwrite``, and never one that is not an
rmcompress output (a folder of the user's, a file, an output holding a file rmcompress did not
write) even with it. Every command that writes is checked: ``train``, ``export``, ``demo``
(``evaluate`` writes nothing); ``tests/test_ownership.py`` covers the manifest, lock and paths."""
from __future__ import annotations

import shutil

import pytest

from tests.helpers import TINY_TRAIN_FLAGS


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


def _snapshot(d):
    return {p.relative_to(d): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture
def model_dir(tmp_path, trained_models):
    return shutil.copytree(trained_models["bow"].out_dir, tmp_path / "model")


def _commands(model_dir, pointwise_file, out):
    return {
        "train": ["train", "--data", pointwise_file, "--task", "pointwise", "--out", out, *TINY_TRAIN_FLAGS],
        "export": ["export", "--model", model_dir, "--out", out, "--format", "tflite", "--latency-runs", "0"],
        "demo": ["demo", "--out", out],
    }


@pytest.mark.parametrize("command", ["train", "export", "demo"])
def test_existing_output_needs_overwrite(cli, tmp_path, model_dir, pointwise_file, command):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("{}")
    before = _snapshot(out)
    rc, _, err = cli(*_commands(model_dir, pointwise_file, out)[command])
    assert rc == 2
    assert _one_line(err) == (f"rmcompress {command}: error: {out}: already exists; pass --overwrite "
                              "(overwrite=True) to replace it")
    assert _snapshot(out) == before


@pytest.mark.parametrize("command", ["train", "export", "demo"])
def test_overwrite_refuses_what_rmcompress_did_not_write(cli, tmp_path, model_dir, pointwise_file, command):
    mine = tmp_path / "my_documents"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    rc, _, err = cli(*_commands(model_dir, pointwise_file, mine)[command], "--overwrite")
    assert rc == 2 and "does not look like an rmcompress output" in _one_line(err)
    assert (mine / "thesis.tex").read_text() == "years of work"

    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    rc, _, err = cli(*_commands(model_dir, pointwise_file, a_file)[command], "--overwrite")
    assert rc == 2 and "is not a directory" in _one_line(err)
    assert a_file.read_text() == "keep me"


def test_overwrite_replaces_train_and_export_outputs(cli, tmp_path, model_dir, pointwise_file):
    for command in ("train", "export"):
        out = tmp_path / f"{command}-out"
        rc, _, err = cli(*_commands(model_dir, pointwise_file, out)[command])
        assert rc == 0, err
        (out / "added-by-the-user.txt").write_text("x")  # not rmcompress's: the overwrite is refused
        before = _snapshot(out)
        rc, _, err = cli(*_commands(model_dir, pointwise_file, out)[command], "--overwrite")
        assert rc == 2 and "(added-by-the-user.txt)" in _one_line(err)
        assert _snapshot(out) == before
        (out / "added-by-the-user.txt").unlink()
        rc, _, err = cli(*_commands(model_dir, pointwise_file, out)[command], "--overwrite")
        assert rc == 0, err
        assert (out / "report.json").is_file() and _snapshot(out) != before
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".rmc-tmp-") or p.name.endswith(".rmc-lock")]


def test_library_calls_check_before_working(tmp_path, model_dir, pointwise_file):
    """The Python API refuses up front too (before training or converting)."""
    from rmcompress.errors import UsageError
    from rmcompress.export.exporter import export_model
    from rmcompress.training.trainer import train

    from tests.helpers import tiny_config

    with pytest.raises(UsageError, match="already exists"):
        train(pointwise_file, tiny_config(), model_dir, verbose=0)
    with pytest.raises(UsageError, match="already exists"):
        export_model(model_dir, model_dir)
