"""Resumable training: ``train --resume`` continues an interrupted run from its last completed epoch.

While ``train`` writes ``OUT`` it keeps a backup folder beside it, ``OUT.rmc-backup/``::

    manifest.json        the run's settings and a fingerprint of its data (written once, last, at
                         the start: a backup without it is incomplete and is discarded)
    tokenizer/           vocab.txt + tokenizer.json, saved before the first step, so a resumed run
                         encodes exactly as the interrupted one did
    keras/chief/         Keras ``BackupAndRestore`` checkpoint: weights, optimizer state (so the
                         learning-rate schedule continues), the number of completed epochs
    state-E.json         history and early-stopping state after epoch E (0-based), written *before*
    best-E.npz           the checkpoint of epoch E, so a checkpoint always has its state; the best
                         weights early stopping keeps (``allow_pickle=False``)

The folder is created just before the first training step and removed only after ``OUT`` is
completely written; a run that stops before its first epoch completes (a flag rejected while the
model is built, an error or Ctrl-C in the first epoch) removes it, as it holds nothing to resume.
On resume the data pipeline skips the batches of the completed epochs (the shuffled stream is a
pure function of the seed), so a resumed run sees the same batches as an uninterrupted one; with
``dropout=0`` the result is the same to float rounding, with dropout the masks after the restart
differ (same distribution).

Rules: a backup without ``--resume`` is an error (pass ``--resume`` to continue or ``--overwrite``
to discard it); ``--resume`` with different settings or data is an error naming the differences;
``--resume`` without a backup starts from scratch (with a note). Without ``--resume``, a backup
without a completed epoch (its run was killed in the first epoch) is discarded as if absent. A
folder at the backup's path that holds anything a backup does not is never removed (an error
names it).

Multi-worker runs (:mod:`rmcompress.training.strategy`): the backup lies on storage every worker
sees, and only the chief (``writer``) writes, discards or removes the folder and its files;
every worker reads it to resume. Keras' ``BackupAndRestore`` saves on every worker (its variables
are synchronised while saving): the chief into ``keras/chief``, every other worker into a
worker-specific temporary folder inside it (``keras/chief/workertemp_<index>``) that Keras removes
after each save. A job that lost a worker is restarted as a whole, every worker with ``--resume``.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rmcompress import faults
from rmcompress._keras import keras, tf
from rmcompress.data.tokenizer import Tokenizer
from rmcompress.errors import OutputError, UsageError
from rmcompress.fileio import atomic_write_bytes, backup_dir_for, read_json, write_json
from rmcompress.training.callbacks import BestWeightsEarlyStopping

MANIFEST = "manifest.json"
KERAS_DIR = "keras"
TOKENIZER_DIR = "tokenizer"
FORMAT = "rmcompress.train-backup"


def backup_supported(strategy) -> bool:
    """Keras ``BackupAndRestore`` works with no strategy and the mirrored, multi-worker mirrored
    and TPU ones only."""
    if strategy is None or type(strategy).__name__ == "_DefaultDistributionStrategy":
        return True
    return isinstance(strategy, (tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy,
                                 tf.distribute.TPUStrategy))


def data_fingerprint(data) -> str:
    """sha256 over the loaded examples (texts, labels/margins): what training actually sees."""
    h = hashlib.sha256()
    for t in data.all_texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    values = data.labels if data.task == "pointwise" else data.margin
    h.update(np.ascontiguousarray(np.asarray(values, np.float32)).tobytes())
    return h.hexdigest()


def _canonical(settings: dict) -> dict:
    return json.loads(json.dumps(settings, sort_keys=True, default=str))


@dataclass
class Backup:
    """The backup folder of one training run (see module docstring)."""

    path: Path
    initial_epoch: int = 0
    tokenizer: Tokenizer | None = None
    state: dict = field(default_factory=dict)   # of the last completed epoch: history, early stopping
    resumed: bool = False
    #: whether this process writes the folder (the chief of a multi-worker run; module docstring)
    writer: bool = True

    # -- opening ------------------------------------------------------------------------------------
    @classmethod
    def check(cls, out_dir, resume: bool, overwrite: bool, writer: bool = True) -> Path:
        """Before loading data: refuse a leftover backup unless ``resume`` or ``overwrite``
        (a ``writer`` discards the one that is not continued)."""
        path = backup_dir_for(out_dir)
        if os.path.lexists(path) and not resume:
            if not overwrite and (path / MANIFEST).is_file() and _has_progress(path):
                raise UsageError(f"{path}: an interrupted training run of {out_dir} left this backup; "
                                 "pass --resume to continue it or --overwrite to start over")
            if writer:
                _discard(path)  # with --overwrite, or killed before an epoch completed: nothing to keep
        return path

    @classmethod
    def open(cls, out_dir, settings: dict, fingerprint: str, resume: bool, log=None,
             writer: bool = True) -> "Backup":
        """The backup to continue (``resume`` and a complete one exists) or a fresh, empty one
        (which only a ``writer`` will write)."""
        path = backup_dir_for(out_dir)
        log = log or (lambda m: print(m, file=sys.stderr))
        manifest = None
        if not writer and not resume:
            return cls(path, writer=False)  # the chief discards whatever is there
        if os.path.lexists(path):
            try:
                manifest = read_json(path / MANIFEST)
            except (OSError, ValueError):
                manifest = None
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
                if writer:
                    _discard(path)  # incomplete: killed while it was being created
                manifest = None
        if manifest is None:
            if resume and writer:
                log(f"note: no interrupted run to resume at {path}; training from scratch")
            return cls(path, writer=writer)
        cls._compare(path, manifest, _canonical(settings), fingerprint)
        backup = cls(path, resumed=True, writer=writer)
        backup.tokenizer = Tokenizer.load(path / TOKENIZER_DIR)
        done = backup._completed_epochs()
        if done:
            state_file = path / f"state-{done - 1}.json"
            if not state_file.is_file():
                raise UsageError(f"{path}: checkpoint of epoch {done} has no {state_file.name}; "
                                 "the backup is inconsistent, start over with --overwrite")
            backup.state = read_json(state_file)
        backup.initial_epoch = done
        if writer:
            log(f"note: resuming {out_dir} after epoch {done} (backup {path})")
        return backup

    @staticmethod
    def _compare(path: Path, manifest: dict, settings: dict, fingerprint: str) -> None:
        old = manifest.get("settings", {})
        diff = [k for k in sorted(set(old) | set(settings)) if old.get(k) != settings.get(k)]
        if diff:
            shown = "; ".join(f"{k}: was {old.get(k)!r}, now {settings.get(k)!r}" for k in diff[:5])
            raise UsageError(f"{path}: cannot resume with different settings ({shown}); use the "
                             "interrupted run's settings, or --overwrite to start over")
        if manifest.get("data_fingerprint") != fingerprint:
            raise UsageError(f"{path}: cannot resume: the data differs from the interrupted run's "
                             f"({manifest.get('data')}); use the same file, or --overwrite to start over")

    def _completed_epochs(self) -> int:
        ckpt = tf.train.latest_checkpoint(str(self.path / KERAS_DIR / "chief"))
        if ckpt is None:
            return 0
        reader = tf.train.load_checkpoint(ckpt)
        return int(reader.get_tensor("ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE")) + 1

    # -- writing ------------------------------------------------------------------------------------
    def start(self, tokenizer: Tokenizer, settings: dict, fingerprint: str, source: str) -> None:
        """Save the tokenizer, then the manifest (which marks the backup complete)."""
        if self.resumed or not self.writer:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        tokenizer.save(self.path / TOKENIZER_DIR)
        write_json(self.path / MANIFEST, {"format": FORMAT, "settings": _canonical(settings),
                                          "data_fingerprint": fingerprint, "data": str(source)})

    def callbacks(self, early_stopping: "ResumableEarlyStopping | None") -> list:
        """Callbacks in the order they must run at an epoch's end (after the user's)."""
        cbs = []
        if early_stopping is not None:
            early_stopping.restore_state = self.state.get("early_stopping")
            early_stopping.state_dir = self.path
            cbs.append(early_stopping)
        if self.writer:
            cbs.append(EpochState(self.path, self.state.get("history", []), early_stopping))
        cbs.append(keras.callbacks.BackupAndRestore(str(self.path / KERAS_DIR), save_freq="epoch",
                                                    delete_checkpoint=False))
        cbs.append(FaultPoints())
        return cbs

    @property
    def history(self) -> list[dict]:
        """Per-epoch logs of the completed epochs, keys in the order Keras logged them."""
        order = self.state.get("history_keys", [])
        return [{k: row[k] for k in [*order, *sorted(set(row) - set(order))] if k in row}
                for row in self.state.get("history", [])]

    def remove(self) -> None:
        if self.writer:
            shutil.rmtree(self.path, ignore_errors=True)

    def discard_if_empty(self) -> None:
        """Remove the backup unless an epoch has completed (then it is what ``--resume`` continues)."""
        if self.writer and self.path.is_dir() and not _has_progress(self.path):
            _discard(self.path)


def _has_progress(path: Path) -> bool:
    """Whether the backup at ``path`` has a completed epoch (its state file comes first)."""
    return any(path.glob("state-*.json"))


_BACKUP_ENTRIES = re.compile(r"^(manifest\.json|tokenizer|keras|state-\d+\.json|best-\d+\.npz|\.rmc-tmp-.*)$")


def _discard(path: Path) -> None:
    """Remove the backup folder ``path``, after checking that it holds only what a backup holds."""
    if not path.is_dir() or path.is_symlink():
        raise OutputError(f"{path}: exists and is not a training backup folder; not removing it (move it "
                          "away or choose another --out)")
    foreign = sorted(n for n in os.listdir(path) if not _BACKUP_ENTRIES.match(n))
    if foreign:
        raise OutputError(f"{path}: holds {', '.join(foreign[:3])}{' and more' if len(foreign) > 3 else ''}, "
                          "which a training backup does not; not removing it (move it away or choose "
                          "another --out)")
    shutil.rmtree(path)


def _save_npz(path: Path, arrays: list[np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **{f"w{i:04d}": np.asarray(a) for i, a in enumerate(arrays)})
    atomic_write_bytes(path, buf.getvalue())


def _load_npz(path: Path) -> list[np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return [z[k] for k in sorted(z.files)]


class ResumableEarlyStopping(BestWeightsEarlyStopping):
    """Early stopping (best weights always restored) whose counters and best weights survive an interruption (see
    :class:`EpochState`, which saves them; ``restore_state`` is applied at the start of ``fit``)."""

    restore_state: dict | None = None
    state_dir: Path | None = None

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        s = self.restore_state
        if not s:
            return
        self.wait, self.stopped_epoch = int(s["wait"]), int(s["stopped_epoch"])
        self.best, self.best_epoch = float(s["best"]), int(s["best_epoch"])
        if s.get("best_weights") and self.state_dir is not None:
            self.best_weights = _load_npz(self.state_dir / s["best_weights"])

    def state(self) -> dict:
        return {"wait": int(self.wait), "stopped_epoch": int(self.stopped_epoch),
                "best": float(self.best), "best_epoch": int(getattr(self, "best_epoch", 0))}


class EpochState(keras.callbacks.Callback):
    """After each epoch, before the checkpoint: history so far and early-stopping state."""

    def __init__(self, path: Path, history: list[dict], early_stopping=None):
        super().__init__()
        self.path, self.history, self.early_stopping = Path(path), list(history), early_stopping
        self._best_file = None

    def on_epoch_end(self, epoch, logs=None):
        self.history.append({k: float(v) for k, v in (logs or {}).items()})
        state = {"epoch": int(epoch), "history": self.history, "history_keys": list((logs or {}).keys())}
        es = self.early_stopping
        if es is not None:
            state["early_stopping"] = es.state()
            if es.best_weights is not None:
                if es.best_epoch == epoch or self._best_file is None:
                    self._best_file = f"best-{epoch}.npz"
                    _save_npz(self.path / self._best_file, es.best_weights)
                state["early_stopping"]["best_weights"] = self._best_file
        write_json(self.path / f"state-{epoch}.json", state)
        self._prune(epoch, state)

    def _prune(self, epoch: int, state: dict) -> None:
        """Keep the state of this epoch and the previous one (the checkpoint may still be the
        previous epoch's if a kill lands now) and the best-weight files they name."""
        keep = {f"state-{epoch}.json", f"state-{epoch - 1}.json"}
        prev = self.path / f"state-{epoch - 1}.json"
        for s in (state, read_json(prev) if prev.is_file() else {}):
            bw = s.get("early_stopping", {}).get("best_weights")
            if bw:
                keep.add(bw)
        for p in self.path.iterdir():
            if (p.name.startswith("state-") or p.name.startswith("best-")) and p.name not in keep:
                p.unlink(missing_ok=True)


class FaultPoints(keras.callbacks.Callback):
    """``train:epoch_end:N`` for the crash tests (:mod:`rmcompress.faults`); runs after the backup."""

    def on_epoch_end(self, epoch, logs=None):
        faults.point(f"train:epoch_end:{epoch + 1}")
