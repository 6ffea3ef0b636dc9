"""Fault injection for the crash-safety tests: kill this process at a named point.

``RMCOMPRESS_KILL_AT=name[,name...]`` makes :func:`point` send SIGKILL to the current process when
execution reaches one of the named points, exactly as an out-of-memory kill or a power cut would
end it (no ``finally`` blocks, no atexit handlers). Points the suite defines:

- ``atomic_dir:before_rename``   a complete artifact sits in its temporary folder, not yet renamed;
- ``replace_dir:swapped``        the new artifact is in place, the old one not yet removed;
- ``replace_dir:old_moved``      (only without ``renameat2``) the old artifact is moved aside and the
                                 new one not yet renamed into place;
- ``atomic_write:before_rename`` a single file is written under its temporary name;
- ``train:epoch_end:N``          epoch N (1-based) is complete and backed up;
- ``train:after_fit``            training finished, the model directory not yet written;
- ``export:after_tflite``        the ``.tflite`` file is written inside the temporary export folder.

Without the variable, :func:`point` is a dictionary lookup and does nothing.
"""
from __future__ import annotations

import os
import signal
import sys

ENV = "RMCOMPRESS_KILL_AT"


def point(name: str) -> None:
    """SIGKILL this process if ``name`` is listed in ``$RMCOMPRESS_KILL_AT``."""
    spec = os.environ.get(ENV)
    if spec and name in spec.split(","):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os.kill(os.getpid(), signal.SIGKILL)
