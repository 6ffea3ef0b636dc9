"""Ctrl-C during ``fit`` takes effect at a step boundary (rmcompress.training.interrupt)."""
from __future__ import annotations

import signal

import numpy as np
import pytest

from rmcompress._keras import keras
from rmcompress.models.archconfig import ArchConfig
from rmcompress.models.architectures import build_reward_model
from rmcompress.training.model import RewardTrainingModel

STEPS = 6
pytestmark = pytest.mark.usefixtures("default_sigint")  # as in a terminal, even if the suite ignores SIGINT


def _fit(callbacks, epochs=1):
    keras.utils.set_random_seed(0)
    scorer = build_reward_model(ArchConfig(arch="bow", vocab_size=50, seq_len=8, width=8, hidden=4))
    model = RewardTrainingModel(scorer)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    x = np.random.default_rng(0).integers(1, 50, size=(STEPS * 4, 8)).astype("int32")
    y = (x[:, 0] > 25).astype("float32")
    return model.fit(x, y, batch_size=4, epochs=epochs, verbose=0, callbacks=callbacks)


class Recorder(keras.callbacks.Callback):
    """Records the hooks that ran; ``ctrl_c_at`` = (hook, batch or epoch, times) sends SIGINT there."""

    def __init__(self, ctrl_c_at=None):
        super().__init__()
        self.events, self.ctrl_c_at, self.finished = [], ctrl_c_at, []

    def _event(self, hook, i):
        self.events.append((hook, i))
        if self.ctrl_c_at and self.ctrl_c_at[:2] == (hook, i):
            for _ in range(self.ctrl_c_at[2]):
                signal.raise_signal(signal.SIGINT)
            self.finished.append((hook, i))  # the rest of this hook's work (e.g. a backup) still runs

    def on_train_batch_begin(self, batch, logs=None):
        self._event("batch_begin", batch)

    def on_train_batch_end(self, batch, logs=None):
        self._event("batch_end", batch)

    def on_epoch_end(self, epoch, logs=None):
        self._event("epoch_end", epoch)

    def on_train_end(self, logs=None):
        self._event("train_end", 0)


def test_ctrl_c_mid_step_stops_after_that_step():
    rec = Recorder(ctrl_c_at=("batch_begin", 2, 1))
    with pytest.raises(KeyboardInterrupt):
        _fit([rec])
    # the step and every callback's batch end ran; nothing of the next step did
    assert rec.finished == [("batch_begin", 2)]
    assert rec.events[-1] == ("batch_end", 2) and ("batch_begin", 3) not in rec.events
    assert ("train_end", 0) not in rec.events  # e.g. BackupAndRestore keeps its backup
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_during_an_epoch_end_backup_lets_it_finish():
    rec = Recorder(ctrl_c_at=("epoch_end", 0, 1))
    with pytest.raises(KeyboardInterrupt):
        _fit([rec], epochs=3)
    assert rec.finished == [("epoch_end", 0)]
    assert rec.events[-1] == ("epoch_end", 0)


def test_a_second_ctrl_c_interrupts_at_once():
    rec = Recorder(ctrl_c_at=("batch_begin", 1, 2))
    with pytest.raises(KeyboardInterrupt):
        _fit([rec])
    assert rec.finished == [] and rec.events[-1] == ("batch_begin", 1)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_after_the_last_step_is_not_lost():
    rec = Recorder(ctrl_c_at=("train_end", 0, 1))
    with pytest.raises(KeyboardInterrupt):
        _fit([rec])
    assert rec.finished == [("train_end", 0)]


def test_an_uninterrupted_fit_trains_every_step_and_restores_the_handler():
    rec = Recorder()
    hist = _fit([rec], epochs=2)
    assert len(hist.history["loss"]) == 2
    assert [e for e in rec.events if e[0] == "batch_end"] == [("batch_end", i) for i in range(STEPS)] * 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_applications_own_sigint_handler_is_left_alone():
    seen = []

    class Probe(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen.append(signal.getsignal(signal.SIGINT))

    def own(signum, frame):
        pass

    previous = signal.signal(signal.SIGINT, own)
    try:
        _fit([Probe()])
        assert seen == [own] and signal.getsignal(signal.SIGINT) is own
    finally:
        signal.signal(signal.SIGINT, previous)


def test_an_ignored_sigint_stays_ignored():
    """A process started with SIGINT ignored (a background job) keeps ignoring it: no deferral,
    training runs to the end."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    rec = Recorder(ctrl_c_at=("batch_begin", 1, 2))
    hist = _fit([rec])
    assert len(hist.history["loss"]) == 1 and ("batch_end", STEPS - 1) in rec.events
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
