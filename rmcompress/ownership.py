"""Ownership of output paths: rmcompress replaces only what it provably wrote, one writer at a time.

Three rules, checked before any work (the CLI, ``fileio.check_destination``) and again at the
commit (``fileio.atomic_dir``):

1. **Manifest.** Every directory rmcompress commits holds ``.rmcompress-manifest.json``, written
   into the temporary folder as its last file, just before the rename: format, artifact kind,
   rmcompress version, creation time and, for every file, its relative path, size, sha256 and
   mtime; and every folder it wrote that holds no file (a SavedModel's empty ``assets/``).
   ``signature`` is the sha256 of the canonical JSON (sorted keys, no spaces) of everything
   else, so a manifest edited by hand no longer matches itself (a content check, not a secret).
   An existing directory may be replaced only when it holds no file, or when its manifest is
   intact and every file on disk is listed with the same size and sha256 (a file whose size and
   mtime both match is not hashed again). No manifest, a changed manifest, a file it does not list,
   a changed file, a link or a special file: refused, one line naming the directory and the first
   few such files, and nothing is deleted.
2. **Separate paths.** An output that is an existing input, lies inside one or contains one is
   refused (writing it would replace the input); so is an output that is, holds or lies inside
   another output of the same run, existing or not (one would replace or block the other).
3. **Lock.** A writer holds ``OUT.rmc-lock`` (beside ``OUT``: ``flock`` on an open descriptor, the
   holder's pid inside) while it may write ``OUT``; a second writer fails at once, naming the lock
   and the pid. The kernel drops the lock when the holder exits however it exits (exception,
   Ctrl-C, kill), so a lock is never stale; the file is removed on release, and one left by a killed
   holder is simply locked again by the next writer. Locks are re-entrant within a process.

Every ``OSError`` met on an output path becomes an :class:`OutputError` naming the path.
"""
from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Iterable, Iterator

try:
    import fcntl
except ImportError:  # not a POSIX system: no locking
    fcntl = None

from rmcompress._version import __version__
from rmcompress.errors import OutputError

MANIFEST = ".rmcompress-manifest.json"
MANIFEST_FORMAT = "rmcompress.manifest"
MANIFEST_VERSION = 1
LOCK_SUFFIX = ".rmc-lock"
_SHOWN = 3          # foreign files named in a refusal; the rest are counted
_CHUNK = 1 << 20


# -- errors ---------------------------------------------------------------------------------------
def os_error(path: str | os.PathLike, error: OSError) -> OutputError:
    """The one-line error for ``error`` met while writing ``path``."""
    reason = error.strerror or str(error)
    where = error.filename if error.filename not in (None, "") else path
    return OutputError(f"{where}: cannot write: {reason}" if str(where) == str(path)
                       else f"{path}: cannot write {where}: {reason}")


# -- manifest -------------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _entries(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    """``(relative posix path, lstat)`` of every entry under ``root`` that is not a directory
    (links are entries, never followed)."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            st = os.lstat(p)
            if not stat.S_ISDIR(st.st_mode):
                yield p.relative_to(root).as_posix(), st


def _signature(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def _kind(root: Path) -> str:
    """What the directory is: ``metadata.json``'s format, else ``report.json``'s stage."""
    for name, key in (("metadata.json", "format"), ("report.json", "stage")):
        try:
            value = json.loads((root / name).read_text(encoding="utf-8")).get(key)
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(value, str):
            return value
    return "rmcompress.output"


def write_manifest(root: str | os.PathLike, kind: str | None = None) -> Path:
    """Write the manifest of every regular file under ``root`` (the caller's own, not yet
    published temporary folder) as its last file; returns its path."""
    root = Path(root)
    files = [{"path": rel, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": _sha256(root / rel)}
             for rel, st in _entries(root) if rel != MANIFEST and stat.S_ISREG(st.st_mode)]
    empty = sorted(Path(d).relative_to(root).as_posix() for d, dirs, names in os.walk(root)
                   if not dirs and not names and Path(d) != root)
    body = {"format": MANIFEST_FORMAT, "format_version": MANIFEST_VERSION, "kind": kind or _kind(root),
            "rmcompress_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "files": files, "folders": empty}
    path = root / MANIFEST
    with open(path, "w", encoding="utf-8") as f:
        json.dump({**body, "signature": _signature(body)}, f, indent=1, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    return path


def read_manifest(root: str | os.PathLike) -> tuple[dict | None, str]:
    """``(manifest, "")`` when ``root`` holds an intact manifest, else ``(None, why not)``."""
    path = Path(root) / MANIFEST
    if not os.path.lexists(path):
        return None, f"no {MANIFEST}"
    try:
        if not path.is_file() or path.is_symlink():
            raise ValueError
        manifest = json.loads(path.read_text(encoding="utf-8"))
        body = {k: v for k, v in manifest.items() if k != "signature"}
        ok = (manifest.get("format") == MANIFEST_FORMAT and isinstance(body.get("files"), list)
              and all(isinstance(e, dict) and isinstance(e.get("path"), str) and isinstance(e.get("size"), int)
                      and isinstance(e.get("sha256"), str) for e in body["files"]))
    except (OSError, ValueError, AttributeError):
        return None, f"its {MANIFEST} is unreadable"
    if not ok:
        return None, f"its {MANIFEST} is not an rmcompress manifest"
    if manifest.get("signature") != _signature(body):
        return None, f"its {MANIFEST} was changed after rmcompress wrote it"
    return manifest, ""


def foreign_files(root: str | os.PathLike, manifest: dict) -> list[str]:
    """Entries under ``root`` that ``manifest`` does not vouch for: unlisted, changed (marked
    ``(changed)``), links and special files, and folders that hold none of the listed files and
    are not listed empty folders (an empty folder of the user's, ``name/``). Files the manifest lists but that are gone are fine."""
    root = Path(root)
    listed = {e["path"]: e for e in manifest["files"]}
    ours = list(listed) + [f"{d}/_" for d in manifest.get("folders", []) if isinstance(d, str)]
    folders = {parent.as_posix() for rel in ours for parent in Path(rel).parents if parent.as_posix() != "."}
    bad = []
    for dirpath, dirnames, _ in os.walk(root):  # a folder holding none of the listed files is not ours
        for name in sorted(dirnames):
            rel = (Path(dirpath) / name).relative_to(root).as_posix()
            if rel not in folders and not os.path.islink(Path(dirpath) / name):  # links: entries below
                bad.append(f"{rel}/")
    for rel, st in _entries(root):
        if rel == MANIFEST:
            continue
        entry = listed.get(rel)
        if entry is None or not stat.S_ISREG(st.st_mode):
            bad.append(rel)
        elif st.st_size != entry["size"]:
            bad.append(f"{rel} (changed)")
        elif st.st_mtime_ns != entry.get("mtime_ns") and _sha256(root / rel) != entry["sha256"]:
            bad.append(f"{rel} (changed)")
    return bad


def check_replaceable(dest: str | os.PathLike) -> None:
    """Raise :class:`OutputError` unless the existing directory ``dest`` may be replaced (rule 1)."""
    dest = Path(dest)
    try:
        if not any(True for _ in _entries(dest)):
            return  # holds no file
        manifest, why = read_manifest(dest)
        bad = foreign_files(dest, manifest) if manifest is not None else []
    except OSError as e:
        raise OutputError(f"{dest}: cannot check what it holds: {e.strerror or e}") from e
    if manifest is None:
        raise OutputError(f"{dest}: exists and does not look like an rmcompress output ({why}); not replacing "
                          "it even with --overwrite: remove it by hand or choose another output path")
    if bad:
        shown = ", ".join(bad[:_SHOWN]) + (f" and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else "")
        raise OutputError(f"{dest}: holds {len(bad)} file{'s' if len(bad) > 1 else ''} rmcompress did not write "
                          f"({shown}); not replacing it even with --overwrite: move "
                          f"{'them' if len(bad) > 1 else 'it'} out or choose another output path")


# -- separate paths -------------------------------------------------------------------------------
def _paths(values) -> Iterator[str | os.PathLike]:
    for v in values:
        if isinstance(v, (list, tuple)):
            yield from _paths(v)
        elif isinstance(v, (str, os.PathLike)) and str(v) not in ("", "-"):
            yield v


def check_separate(out: str | os.PathLike, inputs: Iterable) -> None:
    """Raise :class:`OutputError` if ``out`` is an existing input path (of ``inputs``: paths, lists
    of paths; anything else is skipped), lies inside one or contains one (rule 2)."""
    o = Path(os.path.realpath(out))
    for given in _paths(inputs):
        if not os.path.lexists(given):
            continue
        i = Path(os.path.realpath(given))
        if o == i:
            raise OutputError(f"{out}: the output is the input {given} itself; choose another output path")
        if o.is_relative_to(i):
            raise OutputError(f"{out}: the output lies inside the input {given}; choose another output path")
        if i.is_relative_to(o):
            raise OutputError(f"{out}: the output contains the input {given} (writing it would replace the "
                              "input); choose another output path")


def check_apart(out: str | os.PathLike, others: Iterable) -> None:
    """Raise :class:`OutputError` if ``out`` is, holds or lies inside one of ``others`` (the same
    run's other outputs: paths, lists of paths, existing or not; anything else is skipped) (rule 2)."""
    o = Path(os.path.realpath(out))
    for other in _paths(others):
        p = Path(os.path.realpath(other))
        if o == p or o.is_relative_to(p) or p.is_relative_to(o):
            raise OutputError(f"{out}: overlaps the output {other} of the same run; choose a path beside it")


# -- lock -----------------------------------------------------------------------------------------
_held: dict[str, list] = {}   # lock path -> [fd, depth]


def lock_path(dest: str | os.PathLike) -> Path:
    """The lock file of destination ``dest``: ``DEST.rmc-lock`` beside it."""
    dest = Path(dest)
    return dest.parent / (dest.name + LOCK_SUFFIX)


def _holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        pid = ""
    return f" (pid {pid})" if pid.isdigit() else ""


def _acquire(dest: Path, path: Path) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise os_error(dest, e) from e
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise os_error(dest, e) from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = _holder(fd)
            os.close(fd)
            raise OutputError(f"{dest}: another rmcompress run{who} is writing it (lock {path}); wait for it "
                              "to finish or choose another output path") from None
        except OSError as e:
            os.close(fd)
            raise os_error(dest, e) from e
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        mine = os.fstat(fd)
        if st is not None and (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
            return fd
        os.close(fd)  # the previous holder removed the file between our open and flock: again


@contextlib.contextmanager
def destination_lock(dest: str | os.PathLike) -> Iterator[Path]:
    """Hold the lock of ``dest`` for the ``with`` block (rule 3); yields the lock file's path."""
    dest = Path(dest)
    path = lock_path(dest)
    key = os.path.join(os.path.realpath(path.parent), path.name)
    if fcntl is None:
        yield path
        return
    if key in _held:
        _held[key][1] += 1
        try:
            yield path
        finally:
            _held[key][1] -= 1
        return
    fd = _acquire(dest, path)
    _held[key] = [fd, 1]
    try:
        yield path
    finally:
        del _held[key]
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


@contextlib.contextmanager
def claim(outputs: Iterable, inputs: Iterable = ()) -> Iterator[None]:
    """Before a command's work: refuse an empty output path (it would mean the current folder),
    outputs that overlap an input or each other (rule 2), then hold the lock of every output
    (rule 3) until the block ends."""
    outputs = list(outputs)
    for out in outputs:
        if isinstance(out, (str, os.PathLike)) and not str(out).strip():
            raise OutputError(f"output path {str(out)!r} is empty (an unset shell variable?): name the "
                              f"folder to write")
    outs = list(_paths(outputs))
    ins = list(_paths(inputs))
    for i, out in enumerate(outs):
        check_separate(out, ins)
        check_apart(out, outs[i + 1:])
    with contextlib.ExitStack() as stack:
        for out in outs:
            stack.enter_context(destination_lock(out))
        yield
