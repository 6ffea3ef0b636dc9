"""Atomic writes: an artifact is either complete at its final path or absent.

Contract: everything is written under a temporary name *in the destination's folder* (same file
system, so renames are atomic) and renamed into place only when complete. Replacing an existing
directory swaps old and new in one ``renameat2(RENAME_EXCHANGE)`` call where the kernel offers it
(Linux >= 3.15 on ext4, xfs, btrfs, tmpfs, ...), so at every instant the destination holds the
previous complete artifact or the new one; elsewhere the old one is moved aside first and the new
one renamed in (a kill between the two renames leaves the destination absent and the old artifact
in ``.rmc-tmp-old-*``, which the next write restores, see below).

Temporary names: ``.rmc-tmp-{new|old|file}-{pid}-{random}-{name}``. A killed process leaves
its temporary entries behind; they never break a later run (fresh names are random). The next
write to the same destination removes those whose process is dead (:func:`clean_stale`), and
restores an ``old`` one if the destination itself is missing. The process check uses the pid, so it
assumes the writers of one folder run on one host.

An existing destination is replaced only with ``overwrite=True`` (the CLI's ``--overwrite``), and only
when rmcompress provably wrote it, never an unrelated folder or file given by mistake: every
committed directory carries a manifest of its files, the writer holds the destination's lock, and
an output overlapping an input is refused (:mod:`rmcompress.ownership`).

The one output written in place is a *live* directory (:func:`live_dir`: TensorBoard logs, which
must be readable while the run trains): same ownership rules, its manifest written when the run
ends, however it ends.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import math
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Any, Iterator

from rmcompress import faults, ownership
from rmcompress.errors import UsageError

TMP_PREFIX = ".rmc-tmp-"
_TMP_RE = re.compile(r"^\.rmc-tmp-(new|old|file)-(\d+)-([0-9a-f]{8})-(.+)$")


BACKUP_SUFFIX = ".rmc-backup"


def backup_dir_for(out_dir: str | os.PathLike) -> Path:
    """Where ``train`` keeps the resumable state of a run writing ``out_dir``: ``OUT.rmc-backup``
    beside it (see ``rmcompress.training.resume``)."""
    out = Path(out_dir)
    return out.parent / (out.name + BACKUP_SUFFIX)


def tmp_name(kind: str, name: str) -> str:
    """A fresh temporary name for ``name`` (``kind``: new, old or file)."""
    return f"{TMP_PREFIX}{kind}-{os.getpid()}-{secrets.token_hex(4)}-{name}"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return True
    return True


def clean_stale(dest: str | os.PathLike) -> list[Path]:
    """Remove temporary entries for ``dest`` left by dead processes; if ``dest`` is missing and a dead
    process left its previous version aside (``old``), move that back first. Returns what was
    removed or restored. Entries of live processes (and of other destinations) are left alone."""
    dest = Path(dest)
    parent = dest.parent
    if not parent.is_dir():
        return []
    stale = []
    for entry in parent.iterdir():
        m = _TMP_RE.match(entry.name)
        if m and m.group(4) == dest.name and not _pid_alive(int(m.group(2))):
            stale.append((m.group(1), entry))
    done = []
    for kind, entry in sorted(stale, key=lambda e: e[0] != "old"):  # restore before removing
        if kind == "old" and not dest.exists() and not os.path.lexists(dest):
            with contextlib.suppress(OSError):
                os.replace(entry, dest)
                done.append(dest)
                continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()
        done.append(entry)
    return done


def check_destination(dest: str | os.PathLike, overwrite: bool = False, inputs=()) -> Path:
    """Raise :class:`UsageError` unless ``dest`` may be written: absent, or (with ``overwrite``) a
    directory rmcompress wrote whose files are unchanged (:func:`ownership.check_replaceable`); and
    never one that is, holds or lies inside an existing path of ``inputs``. Call it before long work
    so a run does not fail at its end."""
    dest = Path(dest)
    if os.path.lexists(dest) and not overwrite:
        if not dest.is_dir() or dest.is_symlink():  # --overwrite would not replace it either
            raise UsageError(f"{dest}: exists and is not a directory; not replacing it (remove it or choose "
                             "another output path)")
        raise UsageError(f"{dest}: already exists; pass --overwrite (overwrite=True) to replace it")
    ownership.check_separate(dest, inputs)
    if not os.path.lexists(dest):
        return dest
    if not dest.is_dir() or dest.is_symlink():
        raise UsageError(f"{dest}: exists and is not a directory; not replacing it (remove it or choose "
                         "another output path)")
    ownership.check_replaceable(dest)
    return dest


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``dest``; on success write its manifest
    (:func:`ownership.write_manifest`) and rename it to ``dest``.

    Holds the lock of ``dest`` throughout (:func:`ownership.destination_lock`). Raises
    :class:`UsageError` up front if ``dest`` exists and may not be replaced
    (:func:`check_destination`), :class:`~rmcompress.errors.OutputError` if its folder cannot be
    written. On an exception the temporary directory is removed and ``dest`` is untouched.
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ownership.os_error(dest, e) from e
    with ownership.destination_lock(dest):
        clean_stale(dest)
        check_destination(dest, overwrite)
        tmp = dest.parent / tmp_name("new", dest.name)
        try:
            tmp.mkdir()
        except OSError as e:
            raise ownership.os_error(dest, e) from e
        try:
            yield tmp
            ownership.write_manifest(tmp)
            faults.point("atomic_dir:before_rename")
            check_destination(dest, overwrite)  # something may have appeared meanwhile
            replace_dir(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


@contextlib.contextmanager
def live_dir(dest: str | os.PathLike | None, overwrite: bool = False, inputs=(), outputs=(),
             keep: bool = False, kind: str = "live") -> Iterator[Path | None]:
    """Yield ``dest`` (created) for the ``with`` block to write in place, holding its lock
    (:func:`ownership.destination_lock`); afterwards, also after an error, write its manifest
    (:func:`ownership.write_manifest`, artifact ``kind``), so a later ``overwrite`` may replace it;
    a block that wrote no file leaves no trace (a folder made for it is removed). ``None``: yields
    None.

    Checked up front: never an existing path of ``inputs`` (or inside / around one), never one of
    the run's ``outputs`` (or inside / around one). An existing directory holding files is refused
    unless rmcompress wrote it and it is unchanged (:func:`ownership.check_replaceable`) and
    ``overwrite`` (it is replaced: removed, then written anew) or ``keep`` (a resumed run adds to it).
    """
    if dest is None:
        yield None
        return
    dest = Path(dest)
    ownership.check_apart(dest, outputs)
    ownership.check_separate(dest, inputs)
    if os.path.lexists(dest) and (not dest.is_dir() or dest.is_symlink()):
        raise UsageError(f"{dest}: exists and is not a directory; not replacing it (remove it or choose "
                         "another path)")
    with ownership.destination_lock(dest):
        if os.path.lexists(dest) and any(True for _ in dest.iterdir()):
            if not (overwrite or keep):
                raise UsageError(f"{dest}: already exists; pass --overwrite (overwrite=True) to replace it, "
                                 "or choose a new directory")
            ownership.check_replaceable(dest)
            if not keep:
                shutil.rmtree(dest)
        made = not os.path.lexists(dest)
        try:
            dest.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ownership.os_error(dest, e) from e
        try:
            yield dest
        finally:
            with contextlib.suppress(OSError):  # without a manifest a later --overwrite refuses, naming why
                if any(files for _, _, files in os.walk(dest)):
                    ownership.write_manifest(dest, kind=kind)
                elif made:  # a run that failed before writing: nothing to keep
                    shutil.rmtree(dest)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_renameat2 = None


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap paths ``a`` and ``b`` (Linux ``renameat2``); False where unsupported."""
    global _renameat2
    if _renameat2 is None:
        try:
            fn = ctypes.CDLL(None, use_errno=True).renameat2
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            fn.restype = ctypes.c_int
            _renameat2 = fn
        except (AttributeError, OSError):
            _renameat2 = False
    if not _renameat2:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(b))


def replace_dir(src: Path, dest: Path) -> None:
    """Move complete directory ``src`` to ``dest``, keeping the old ``dest`` until the swap."""
    src, dest = Path(src), Path(dest)
    if os.path.lexists(dest):
        if _exchange(src, dest):  # dest is new, src holds the old one
            _fsync_dir(dest.parent)
            faults.point("replace_dir:swapped")
            shutil.rmtree(src, ignore_errors=True)
            return
        old = dest.parent / tmp_name("old", dest.name)
        os.replace(dest, old)
        faults.point("replace_dir:old_moved")
        os.replace(src, dest)
        _fsync_dir(dest.parent)
        faults.point("replace_dir:swapped")
        shutil.rmtree(old, ignore_errors=True)
        return
    os.replace(src, dest)
    _fsync_dir(dest.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / tmp_name("file", path.name)
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        faults.point("atomic_write:before_rename")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def json_safe(obj: Any) -> Any:
    """``obj`` as plain JSON data: numpy scalars and arrays as numbers and lists, paths as strings,
    tuples as lists, and every non-finite float (NaN, +-inf: an undefined metric) as ``None``."""
    import numpy as np

    if isinstance(obj, dict):
        return {k if isinstance(k, str) else str(k.item() if isinstance(k, np.generic) else k): json_safe(v)
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dumps_json(obj: Any, indent: int | None = 2) -> str:
    """Strict JSON text of ``obj`` (:func:`json_safe`; ``null``, never ``NaN`` or ``Infinity``)."""
    return json.dumps(json_safe(obj), indent=indent, sort_keys=True, allow_nan=False)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented strict JSON (:func:`dumps_json`)."""
    atomic_write_text(path, dumps_json(obj) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def relative_source(source, out_dir) -> str | None:
    """``source`` relative to the directory ``out_dir`` will be, so a tree moved or written through
    a temporary folder (the demo's) still finds it; ``None`` across drives or without a source."""
    if not source:
        return None
    try:
        return os.path.relpath(Path(source).resolve(), Path(out_dir).resolve())
    except ValueError:
        return None
