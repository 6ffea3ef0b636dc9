"""rmcompress deletes only what it provably wrote (``rmcompress.ownership``): an existing output is
replaced only when its manifest is intact and vouches for every file on disk; an output never
overlaps an input; one writer per output at a time (a lock); a start that fails leaves no backup;
a path the system refuses is a one-line exit-2 error."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from tests.helpers import ROOT, TINY_TRAIN_FLAGS


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def _snapshot(d):
    return {p.relative_to(d): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _write(dest, files: dict, overwrite=False):
    """Write ``files`` ({relative path: text}) as an artifact through ``atomic_dir``."""
    from rmcompress.fileio import atomic_dir

    with atomic_dir(dest, overwrite=overwrite) as tmp:
        for rel, text in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_text(text)


@pytest.fixture
def model_dir(tmp_path, trained_models):
    return shutil.copytree(trained_models["bow"].out_dir, tmp_path / "model")


# -- the manifest ---------------------------------------------------------------------------------
def test_every_committed_directory_has_a_manifest_of_its_files(tmp_path):
    from rmcompress.ownership import MANIFEST, read_manifest

    dest = tmp_path / "a"
    _write(dest, {"report.json": '{"stage": "export"}', "sub/weights.bin": "0123"})
    manifest, why = read_manifest(dest)
    assert why == "" and manifest["kind"] == "export"
    assert {e["path"]: e["size"] for e in manifest["files"]} == {"report.json": 19, "sub/weights.bin": 4}
    assert (dest / MANIFEST).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]  # no temporary folder, no lock left


def test_a_trained_model_directory_is_vouched_for(trained_models):
    from rmcompress.ownership import foreign_files, read_manifest

    out = trained_models["bow"].out_dir
    manifest, why = read_manifest(out)
    assert why == "" and manifest["kind"] == "rmcompress.model"
    assert {"model.keras", "metadata.json", "report.json", "vocab.txt"} <= {e["path"] for e in manifest["files"]}
    assert foreign_files(out, manifest) == []


def test_overwrite_replaces_an_unchanged_artifact_and_an_empty_folder(tmp_path):
    dest = tmp_path / "a"
    _write(dest, {"v.txt": "1", "old-only.txt": "x"})
    _write(dest, {"v.txt": "2"}, overwrite=True)
    assert (dest / "v.txt").read_text() == "2" and not (dest / "old-only.txt").exists()
    empty = tmp_path / "empty"
    (empty / "nested").mkdir(parents=True)
    _write(empty, {"v.txt": "3"}, overwrite=True)
    assert (empty / "v.txt").read_text() == "3"


def test_a_foreign_file_blocks_the_overwrite_and_is_named(tmp_path):
    from rmcompress.errors import OutputError

    dest = tmp_path / "a"
    _write(dest, {"v.txt": "1"})
    (dest / "notes.md").write_text("mine")
    before = _snapshot(dest)
    with pytest.raises(OutputError, match=r"holds 1 file rmcompress did not write \(notes\.md\)"):
        _write(dest, {"v.txt": "2"}, overwrite=True)
    assert _snapshot(dest) == before


def test_an_empty_folder_of_the_users_inside_an_artifact_blocks_the_overwrite(tmp_path):
    from rmcompress.errors import OutputError

    dest = tmp_path / "a"
    _write(dest, {"v.txt": "1", "model/w.txt": "2"})
    (dest / "drafts").mkdir()
    with pytest.raises(OutputError, match=r"drafts/"):
        _write(dest, {"v.txt": "2"}, overwrite=True)
    assert (dest / "drafts").is_dir() and (dest / "v.txt").read_text() == "1"


def test_a_changed_file_blocks_the_overwrite(tmp_path):
    from rmcompress.errors import OutputError

    dest = tmp_path / "a"
    _write(dest, {"v.txt": "1", "w.txt": "abc"})
    (dest / "w.txt").write_text("xyz")  # same size, new content
    with pytest.raises(OutputError, match=r"\(w\.txt \(changed\)\)"):
        _write(dest, {"v.txt": "2"}, overwrite=True)
    assert (dest / "w.txt").read_text() == "xyz"


def test_many_foreign_files_are_counted(tmp_path):
    from rmcompress.errors import OutputError

    dest = tmp_path / "a"
    _write(dest, {"v.txt": "1"})
    for i in range(5):
        (dest / f"f{i}").write_text("x")
    os.symlink(tmp_path, dest / "link")
    with pytest.raises(OutputError, match=r"holds 6 files rmcompress did not write \(f0, f1, f2 and 3 more\)"):
        _write(dest, {"v.txt": "2"}, overwrite=True)
    assert (dest / "link").is_symlink() and (dest / "f4").is_file()


def test_a_tampered_manifest_blocks_the_overwrite(tmp_path):
    from rmcompress.errors import OutputError
    from rmcompress.ownership import MANIFEST

    dest = tmp_path / "a"
    _write(dest, {"v.txt": "1"})
    (dest / "thesis.tex").write_text("years of work")
    m = json.loads((dest / MANIFEST).read_text())  # someone lists their file in the manifest by hand
    m["files"].append({"path": "thesis.tex", "size": 13, "sha256": "0" * 64})
    (dest / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(OutputError, match="was changed after rmcompress wrote it"):
        _write(dest, {"v.txt": "2"}, overwrite=True)
    assert (dest / "thesis.tex").read_text() == "years of work"


def test_a_folder_without_manifest_is_never_replaced(tmp_path):
    from rmcompress.errors import OutputError

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.json").write_text("{}")
    with pytest.raises(OutputError, match="no .rmcompress-manifest.json.*remove it by hand"):
        _write(mine, {"v.txt": "2"}, overwrite=True)
    assert _snapshot(mine) == {mine.joinpath("report.json").relative_to(mine): b"{}"}


# -- the CLI: a user's folder, same paths ----------------------------------------------------------
def _commands(model_dir, pointwise_file, out):
    return {
        "train": ["train", "--data", pointwise_file, "--task", "pointwise", "--out", out, *TINY_TRAIN_FLAGS],
        "export": ["export", "--model", model_dir, "--out", out, "--format", "tflite", "--latency-runs", "0"],
        "shrink": ["shrink", "--model", model_dir, "--out", out],
        "compress": ["compress", "--model", model_dir, "--recipe", "lossless", "--data", pointwise_file,
                     "--out", out],
        "demo": ["demo", "--out", out],
        "report": ["report", model_dir, "--out", out],
    }


@pytest.mark.parametrize("command", ["train", "export", "shrink", "compress", "demo", "report"])
def test_overwrite_keeps_a_users_folder_that_holds_a_report(cli, tmp_path, model_dir, pointwise_file, command):
    mine = tmp_path / "my_project"
    (mine / "chapters").mkdir(parents=True)
    (mine / "report.json").write_text('{"accuracy": 0.9}')
    (mine / "thesis.tex").write_text("years of work")
    (mine / "chapters" / "one.tex").write_text("chapter one")
    before = _snapshot(mine)
    rc, _, err = cli(*_commands(model_dir, pointwise_file, mine)[command], "--overwrite")
    assert rc == 2
    line = _one_line(err)
    assert line.startswith(f"rmcompress {command}: error: {mine}: exists and does not look like an rmcompress "
                           "output (no .rmcompress-manifest.json)"), line
    assert _snapshot(mine) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "my_project"]


@pytest.mark.parametrize("command", ["export", "shrink", "compress"])
def test_output_equal_to_the_model_is_refused_before_any_work(cli, tmp_path, model_dir, pointwise_file, command):
    before = _snapshot(model_dir)
    rc, _, err = cli(*_commands(model_dir, pointwise_file, model_dir)[command], "--overwrite")
    assert rc == 2
    assert _one_line(err) == (f"rmcompress {command}: error: {model_dir}: the output is the input {model_dir} "
                              "itself; choose another output path")
    assert _snapshot(model_dir) == before


def test_output_inside_or_around_an_input_is_refused(cli, tmp_path, model_dir, pointwise_file):
    inside = model_dir / "export"
    rc, _, err = cli(*_commands(model_dir, pointwise_file, inside)["export"])
    assert rc == 2 and f"{inside}: the output lies inside the input {model_dir}" in _one_line(err)
    assert not inside.exists()

    rc, _, err = cli(*_commands(model_dir, pointwise_file, tmp_path)["export"], "--overwrite")
    assert rc == 2 and f"{tmp_path}: the output contains the input {model_dir}" in _one_line(err)

    data = tmp_path / "data.tsv"
    shutil.copy(pointwise_file, data)
    rc, _, err = cli(*_commands(model_dir, data, data)["train"], "--overwrite")
    assert rc == 2 and f"{data}: the output is the input {data} itself" in _one_line(err)
    assert data.read_bytes() == pointwise_file.read_bytes()


@pytest.mark.parametrize("out", ["", "  "])
def test_an_empty_output_path_is_refused_before_any_work(tmp_path, out):
    from rmcompress.errors import OutputError
    from rmcompress.ownership import claim

    with pytest.raises(OutputError, match=r"^output path '\s*' is empty \(an unset shell variable\?\)"):
        with claim([out], [tmp_path]):
            pytest.fail("the block ran")
    with claim([tmp_path / "out"], [tmp_path / "data.tsv"]):
        assert (tmp_path / "out.rmc-lock").exists()


def test_outputs_of_one_run_that_overlap_are_refused_before_anything_is_created(tmp_path):
    from rmcompress.errors import OutputError
    from rmcompress.ownership import claim

    out = tmp_path / "model"
    for second in (out / "tb", out, tmp_path):
        with pytest.raises(OutputError, match=rf"^{out}: overlaps the output {second} of the same run"):
            with claim([out, second]):
                pytest.fail("the block ran")
    assert list(tmp_path.iterdir()) == []  # no folder and no lock made for the lock files
    with claim([out, tmp_path / "tb"]):
        assert (tmp_path / "model.rmc-lock").exists() and (tmp_path / "tb.rmc-lock").exists()


def test_library_export_onto_its_own_source_is_refused(model_dir):
    from rmcompress.errors import OutputError
    from rmcompress.export.exporter import export_model

    before = _snapshot(model_dir)
    with pytest.raises(OutputError, match="the output is the input"):
        export_model(model_dir, model_dir, overwrite=True, latency_runs=0)
    assert _snapshot(model_dir) == before


# -- the lock -------------------------------------------------------------------------------------
HOLDER = r"""
import sys, time
from rmcompress import ownership
with ownership.destination_lock(sys.argv[1]) as path:
    print(path, flush=True)
    time.sleep(120)
"""


def test_a_second_writer_fails_at_the_start_naming_the_lock_and_its_holder(cli, tmp_path, model_dir):
    out = tmp_path / "export"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        lock = holder.stdout.readline().strip()
        assert lock == str(tmp_path / "export.rmc-lock")
        rc, _, err = cli("export", "--model", model_dir, "--out", out, "--format", "tflite", "--latency-runs", "0")
        assert rc == 2
        assert _one_line(err) == (f"rmcompress export: error: {out}: another rmcompress run (pid {holder.pid}) "
                                  f"is writing it (lock {lock}); wait for it to finish or choose another "
                                  "output path")
        assert not out.exists()
    finally:
        holder.send_signal(signal.SIGKILL)  # a killed holder's lock is released by the kernel
        holder.wait()
    rc, _, err = cli("export", "--model", model_dir, "--out", out, "--format", "tflite", "--latency-runs", "0")
    assert rc == 0, err
    assert (out / "model.tflite").is_file() and not (tmp_path / "export.rmc-lock").exists()


def test_a_failing_command_releases_its_lock(cli, tmp_path, model_dir):
    out = tmp_path / "export"
    rc, _, err = cli("export", "--model", model_dir, "--out", out, "--format", "nope")
    assert rc == 2 and "--format nope" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


# -- the backup of a run that fails to start -----------------------------------------------------
def test_a_failed_start_leaves_no_backup_and_the_corrected_run_works(cli, tmp_path, pointwise_file):
    from rmcompress.fileio import backup_dir_for

    out = tmp_path / "model"
    rc, _, err = cli("train", "--data", pointwise_file, "--task", "pointwise", "--out", out, *TINY_TRAIN_FLAGS,
                     "--arch", "cnn", "--kernel-sizes", "3,40")  # rejected while the model is built
    assert rc == 2 and "kernel_sizes=[3, 40]" in _one_line(err)
    assert not backup_dir_for(out).exists() and not out.exists()
    rc, _, err = cli("train", "--data", pointwise_file, "--task", "pointwise", "--out", out, *TINY_TRAIN_FLAGS,
                     "--arch", "bow")
    assert rc == 0, err
    assert (out / "model.keras").is_file() and not backup_dir_for(out).exists()


def test_a_backup_killed_in_its_first_epoch_is_discarded(tmp_path, pointwise_file, cli):
    """A backup with a manifest but no completed epoch (killed in the first epoch) holds nothing to
    resume: the next run, with other settings, starts normally."""
    from rmcompress.fileio import backup_dir_for

    out = tmp_path / "model"
    backup = backup_dir_for(out)
    (backup / "tokenizer").mkdir(parents=True)
    (backup / "manifest.json").write_text(json.dumps({"format": "rmcompress.train-backup", "settings": {}}))
    rc, _, err = cli("train", "--data", pointwise_file, "--task", "pointwise", "--out", out, *TINY_TRAIN_FLAGS,
                     "--arch", "bow")
    assert rc == 0, err
    assert not backup.exists()


def test_a_foreign_folder_at_the_backup_path_is_kept(tmp_path, pointwise_file, cli):
    from rmcompress.fileio import backup_dir_for

    out = tmp_path / "model"
    backup = backup_dir_for(out)
    backup.mkdir()
    (backup / "thesis.tex").write_text("years of work")
    rc, _, err = cli("train", "--data", pointwise_file, "--task", "pointwise", "--out", out, *TINY_TRAIN_FLAGS,
                     "--overwrite")
    assert rc == 2 and f"{backup}: holds thesis.tex, which a training backup does not" in _one_line(err)
    assert (backup / "thesis.tex").read_text() == "years of work"


# -- the file system says no ------------------------------------------------------------------------
@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores file permissions")
@pytest.mark.parametrize("command", ["export", "train", "report"])
def test_a_read_only_folder_is_a_one_line_error(cli, tmp_path, model_dir, pointwise_file, command):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        out = ro / "out"
        rc, _, err = cli(*_commands(model_dir, pointwise_file, out)[command])
        assert rc == 2
        assert _one_line(err) == f"rmcompress {command}: error: {out}: cannot write {out}.rmc-lock: Permission denied"
        assert os.listdir(ro) == []
    finally:
        ro.chmod(0o755)


def test_an_os_error_anywhere_is_a_one_line_error(cli, monkeypatch, tmp_path, model_dir):
    from rmcompress.commands import export

    def no_space(args):
        raise OSError(28, "No space left on device", str(tmp_path / "out" / "model.tflite"))

    monkeypatch.setattr(export, "run", no_space)
    rc, _, err = cli("export", "--model", model_dir, "--out", tmp_path / "out")
    assert rc == 2
    assert _one_line(err) == f"rmcompress export: error: {tmp_path / 'out' / 'model.tflite'}: No space left on device"


@pytest.mark.parametrize("command", ["export", "train", "demo"])
def test_an_output_under_a_file_is_a_one_line_error(cli, tmp_path, model_dir, pointwise_file, command):
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    out = notes / "sub" / "out"
    rc, _, err = cli(*_commands(model_dir, pointwise_file, out)[command])
    assert rc == 2
    assert _one_line(err) == f"rmcompress {command}: error: {out}: cannot write {notes / 'sub'}: Not a directory"
    assert notes.read_text() == "keep me"


def test_empty_folders_rmcompress_wrote_are_its_own(tmp_path):
    from rmcompress.ownership import foreign_files, read_manifest, write_manifest

    (tmp_path / "saved_model" / "assets").mkdir(parents=True)  # what a SavedModel export leaves
    (tmp_path / "saved_model" / "saved_model.pb").write_bytes(b"pb")
    write_manifest(tmp_path)
    manifest, _ = read_manifest(tmp_path)
    assert manifest["folders"] == ["saved_model/assets"] and foreign_files(tmp_path, manifest) == []
    (tmp_path / "notes").mkdir()  # a user's empty folder still is not
    assert foreign_files(tmp_path, manifest) == ["notes/"]
