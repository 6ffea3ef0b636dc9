"""Ctrl-C during ``fit`` stops at a step boundary, not wherever Python happens to be.

Python raises ``KeyboardInterrupt`` at whatever bytecode the main thread reaches first after
SIGINT: inside the epoch-end backup (a checkpoint half-written), inside TensorFlow's own Python
code while it holds a lock, inside a ``tf.data`` iterator's bookkeeping. Unwinding from such a
point can lose the backup the hint tells the user to resume from, or leave a lock held.

Contract of :func:`interrupts_at_step_boundaries` (used by ``RewardTrainingModel.fit``, so by
every training and fine-tuning loop of the package):

- While it is active, the **first** SIGINT is only recorded, and Python's default handler is put
  back, so a **second** Ctrl-C interrupts at once (the escape hatch for a step that hangs).
- :class:`StopAtStepBoundary`, added as the last callback of the ``fit``, raises
  ``KeyboardInterrupt`` at the next training or validation batch end or epoch end: after the
  callbacks before it (the epoch's backup included) have finished their work.
- On leaving, the previous handler is restored; a SIGINT recorded but not yet acted on (it came
  during the last step) raises ``KeyboardInterrupt`` then, so no Ctrl-C is ever lost.
- It changes nothing off the main thread or when SIGINT is not Python's default handler (an
  application that installed its own keeps it; a background job started with SIGINT ignored,
  e.g. ``rmcompress train ... &`` from a script, keeps ignoring it, as the shell intended).
"""
from __future__ import annotations

import contextlib
import signal
import threading

from rmcompress._keras import keras


class PendingInterrupt:
    """Whether a SIGINT arrived while deferred, and the check that turns it into ``KeyboardInterrupt``."""

    def __init__(self):
        self.requested = False

    def handle(self, signum, frame):  # the deferring SIGINT handler
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def check(self) -> None:
        if self.requested:
            self.requested = False
            raise KeyboardInterrupt


@contextlib.contextmanager
def interrupts_at_step_boundaries():
    """Yield a :class:`PendingInterrupt` while SIGINT is deferred, or ``None`` where nothing is
    deferred (see module docstring)."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield None
        return
    pending = PendingInterrupt()
    signal.signal(signal.SIGINT, pending.handle)
    try:
        yield pending
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    pending.check()  # only on a normal exit: a Ctrl-C during the last step still interrupts


class StopAtStepBoundary(keras.callbacks.Callback):
    """Raises the deferred ``KeyboardInterrupt`` at a batch or epoch end (see module docstring)."""

    def __init__(self, pending: PendingInterrupt):
        super().__init__()
        self.pending = pending
        self._supports_tf_logs = True  # it never reads the logs: no per-step conversion to numpy

    def _check(self, *args, **kwargs):
        self.pending.check()

    on_train_batch_end = on_test_batch_end = on_epoch_end = _check
