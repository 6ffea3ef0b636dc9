"""Nothing half-written: a writer killed at any point leaves the destination holding the previous
complete artifact, the new complete artifact, or (when there was none before) nothing, and what it
leaves behind never breaks the next run.

Kills are real SIGKILLs: either at named points (``RMCOMPRESS_KILL_AT``, see ``rmcompress.faults``)
or sent by this test while a real ``rmcompress export`` is in the middle of writing its temporary
folder.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, TINY_TRAIN_FLAGS, rmcompress_subprocess

# A writer without TensorFlow (fast): atomic_dir writing 20 files of a version string.
WRITER = r"""
import sys, time
from rmcompress import fileio
dest, version, fallback = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
if fallback:  # behave as on a file system without renameat2(RENAME_EXCHANGE)
    fileio._exchange = lambda a, b: False
with fileio.atomic_dir(dest, overwrite=True) as tmp:
    for i in range(20):
        (tmp / f"part{i}.txt").write_text(version)
    fileio.write_json(tmp / "report.json", {"version": version})
"""


def _write(dest: Path, version: str, kill_at: str | None = None, fallback: bool = False):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RMCOMPRESS_KILL_AT", None)
    if kill_at:
        env["RMCOMPRESS_KILL_AT"] = kill_at
    return subprocess.run([sys.executable, "-c", WRITER, str(dest), version, "1" if fallback else "0"],
                          env=env, capture_output=True, text=True, timeout=60)


def _version(dest: Path) -> str | None:
    """The version of the complete artifact at ``dest``; None if absent; fails if half-written."""
    if not dest.exists():
        return None
    report = json.loads((dest / "report.json").read_text())
    parts = {(dest / f"part{i}.txt").read_text() for i in range(20)}
    assert parts == {report["version"]}, f"mixed artifact at {dest}: {parts}"
    return report["version"]


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(".rmc-tmp-"))


POINTS = ["atomic_dir:before_rename", "replace_dir:swapped", "atomic_write:before_rename"]


@pytest.mark.parametrize("fallback", [False, True], ids=["renameat2", "two-renames"])
@pytest.mark.parametrize("point", POINTS + ["replace_dir:old_moved"])
def test_killed_writer_leaves_old_or_new_never_half(tmp_path, point, fallback):
    dest = tmp_path / "artifact"
    assert _write(dest, "v1").returncode == 0 and _version(dest) == "v1"
    proc = _write(dest, "v2", kill_at=point, fallback=fallback)
    if point == "replace_dir:old_moved" and not fallback:
        assert proc.returncode == 0  # with renameat2 there is no such moment
        assert _version(dest) == "v2"
        return
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    expected = {"atomic_dir:before_rename": "v1", "atomic_write:before_rename": "v1",
                "replace_dir:swapped": "v2", "replace_dir:old_moved": None}[point]
    assert _version(dest) == expected
    assert _leftovers(tmp_path), "the killed writer left its temporary folder"

    # the next write is not disturbed and cleans up after the dead process
    from rmcompress.fileio import clean_stale

    if point == "replace_dir:old_moved":  # dest vanished between two renames: restored from aside
        clean_stale(dest)
        assert _version(dest) == "v1"
    assert _write(dest, "v3").returncode == 0
    assert _version(dest) == "v3"
    assert _leftovers(tmp_path) == []


def test_killed_first_write_leaves_nothing(tmp_path):
    dest = tmp_path / "artifact"
    assert _write(dest, "v1", kill_at="atomic_dir:before_rename").returncode == -signal.SIGKILL
    assert not dest.exists()
    assert _write(dest, "v2").returncode == 0 and _version(dest) == "v2"


def test_temp_entries_of_live_processes_and_other_destinations_are_kept(tmp_path):
    from rmcompress.fileio import clean_stale, tmp_name

    mine = tmp_path / tmp_name("new", "a")  # this (live) process
    mine.mkdir()
    other = tmp_path / tmp_name("new", "b").replace(f"-{os.getpid()}-", "-999999999-")
    other.mkdir()
    dead = tmp_path / tmp_name("new", "a").replace(f"-{os.getpid()}-", "-999999999-")
    dead.mkdir()
    assert clean_stale(tmp_path / "a") == [dead]
    assert mine.exists() and other.exists() and not dead.exists()


# -- real commands --------------------------------------------------------------------------------
def _loads(model_dir: Path):
    from rmcompress.models.modeldir import load_model_dir

    return load_model_dir(model_dir)


def test_train_killed_before_rename_keeps_the_previous_model(tmp_path, pointwise_file, trained_models):
    import shutil

    out = tmp_path / "model"
    shutil.copytree(trained_models["bow"].out_dir, out)
    before = (out / "model.keras").read_bytes()
    proc = rmcompress_subprocess("train", "--data", pointwise_file, "--task", "pointwise", "--out", out,
                                 "--overwrite", *TINY_TRAIN_FLAGS, kill_at="atomic_dir:before_rename")
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert (out / "model.keras").read_bytes() == before
    assert _loads(out).metadata["arch"]["arch"] == "bow"


def test_export_killed_after_swap_has_the_new_export(tmp_path, trained_models):
    from rmcompress.evaluation.artifacts import open_artifact

    from rmcompress.export.exporter import export_model

    model = trained_models["transformer"].out_dir
    out = tmp_path / "export"
    export_model(model, out, formats="tflite", latency_runs=0, extra_report={"old": True})  # a previous export
    proc = rmcompress_subprocess("export", "--model", model, "--out", out, "--overwrite", "--format", "tflite",
                                 "--latency-runs", "0", kill_at="replace_dir:swapped")
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert "old" not in json.loads((out / "report.json").read_text())
    assert open_artifact(out).kind == "tflite"


def _kill_when(proc: subprocess.Popen, parent: Path, inside: str, timeout: float = 240) -> bool:
    """SIGKILL ``proc`` as soon as a temporary folder in ``parent`` holds ``inside``."""
    t0 = time.time()
    while time.time() - t0 < timeout and proc.poll() is None:
        for tmp in parent.glob(".rmc-tmp-new-*"):
            if (tmp / inside).exists():
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return True
        time.sleep(0.005)
    return False


def test_export_sigkilled_while_writing(tmp_path, trained_models, cli):
    """Real exports, SIGKILLed while their temporary folder is half-filled (once just after the
    .tflite file appears, once while the SavedModel is being written): the previous export stays
    complete and loadable; the next export runs normally and removes the dead writers' folders."""
    from rmcompress.evaluation.artifacts import open_artifact
    from rmcompress.export.exporter import export_model

    model = trained_models["transformer"].out_dir
    out = tmp_path / "export"
    export_model(model, out, formats="tflite", latency_runs=0)
    before = (out / "model.tflite").read_bytes()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("RMCOMPRESS_KILL_AT", None)
    for inside, fmt in (("model.tflite", "tflite,savedmodel"), ("saved_model", "savedmodel")):
        proc = subprocess.Popen([sys.executable, "-m", "rmcompress", "export", "--model", str(model), "--out",
                                 str(out), "--overwrite", "--format", fmt, "--latency-runs", "0"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            assert _kill_when(proc, tmp_path, inside), "the export finished before it could be killed"
        finally:
            if proc.poll() is None:
                proc.kill()
        assert (out / "model.tflite").read_bytes() == before
        assert not (out / "saved_model").exists()
        assert open_artifact(out).kind == "tflite"
    # the second export removed the first one's folder when it started; its own is left
    assert len(_leftovers(tmp_path)) == 1, _leftovers(tmp_path)

    rc, _, err = cli("export", "--model", model, "--out", out, "--overwrite", "--format", "tflite",
                     "--latency-runs", "0")
    assert rc == 0, err
    assert (out / "model.tflite").is_file() and not (out / "saved_model").exists()
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_file_or_link_at_the_destination_is_not_offered_overwrite(tmp_path, overwrite):
    from rmcompress.errors import UsageError
    from rmcompress.fileio import check_destination

    notes = tmp_path / "notes"
    notes.write_text("mine\n")
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    for dest in (notes, tmp_path / "link"):
        with pytest.raises(UsageError, match=rf"^{dest}: exists and is not a directory; not replacing it"):
            check_destination(dest, overwrite=overwrite)
    assert notes.read_text() == "mine\n" and (tmp_path / "link").is_symlink()
    with pytest.raises(UsageError, match="already exists; pass --overwrite"):
        check_destination(tmp_path, overwrite=False)


# -- a live directory (TensorBoard logs written while the run trains) ----------------------------
def test_live_dir_is_created_written_in_place_and_gets_a_manifest_even_after_an_error(tmp_path):
    from rmcompress.fileio import live_dir
    from rmcompress.ownership import MANIFEST, read_manifest

    dest = tmp_path / "tb"
    with live_dir(None) as nothing:
        assert nothing is None
    with pytest.raises(RuntimeError):  # a run that fails before logging anything leaves no trace
        with live_dir(dest) as d:
            (d / "train").mkdir()
            raise RuntimeError("bad input")
    assert not dest.exists()
    mine = tmp_path / "empty"
    mine.mkdir()
    with live_dir(mine):
        pass
    assert mine.is_dir() and list(mine.iterdir()) == []  # the user's own empty folder stays as it was
    with pytest.raises(RuntimeError):
        with live_dir(dest, kind="tensorboard") as d:
            (d / "train").mkdir()
            (d / "train" / "events.1").write_text("a")
            assert (d / "train" / "events.1").is_file() and not (d / MANIFEST).exists()  # in place, no tmp
            raise RuntimeError("the run failed")
    manifest, _ = read_manifest(dest)
    assert manifest["kind"] == "tensorboard" and [e["path"] for e in manifest["files"]] == ["train/events.1"]


def test_an_existing_live_dir_needs_overwrite_and_is_replaced_only_when_rmcompress_wrote_it(tmp_path):
    from rmcompress.errors import OutputError, UsageError
    from rmcompress.fileio import live_dir

    dest = tmp_path / "tb"
    with live_dir(dest) as d:
        (d / "old").write_text("a")
    with pytest.raises(UsageError, match=rf"^{dest}: already exists; pass --overwrite"):
        with live_dir(dest):
            pass
    with live_dir(dest, keep=True) as d:  # a resumed run adds to its logs
        (d / "more").write_text("b")
    assert (dest / "old").is_file() and (dest / "more").is_file()
    with live_dir(dest, overwrite=True) as d:
        assert sorted(p.name for p in d.iterdir()) == []
        (d / "new").write_text("c")
    (dest / "mine.txt").write_text("the user's")
    for flags in ({"overwrite": True}, {"keep": True}):
        with pytest.raises(OutputError, match="holds 1 file rmcompress did not write"):
            with live_dir(dest, **flags):
                pass
    assert (dest / "mine.txt").read_text() == "the user's" and (dest / "new").is_file()
    user = tmp_path / "logs"
    user.mkdir()
    (user / "notes").write_text("x")
    with pytest.raises(OutputError, match="does not look like an rmcompress output"):
        with live_dir(user, overwrite=True):
            pass
    assert (user / "notes").is_file()


def test_a_live_dir_never_overlaps_the_run_s_inputs_or_outputs(tmp_path):
    from rmcompress.errors import OutputError
    from rmcompress.fileio import live_dir

    data = tmp_path / "data"
    data.mkdir()
    out = tmp_path / "model"  # not written yet: still refused, the run writes it whole at its end
    for dest in (out, out / "tb", tmp_path):
        with pytest.raises(OutputError, match="overlaps the output"):
            with live_dir(dest, outputs=[out]):
                pass
    with pytest.raises(OutputError, match="lies inside the input"):
        with live_dir(data / "tb", inputs=[data]):
            pass
    assert not (data / "tb").exists() and not out.exists()
