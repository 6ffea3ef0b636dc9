"""Silence TensorFlow's C++ and Python log noise for the CLI (``--verbose`` keeps it).

TensorFlow 2.21 and LiteRT print from C++ (absl logging, oneDNN/CUDA notices, "Created TensorFlow
Lite XNNPACK delegate") straight to file descriptor 2, which ``TF_CPP_MIN_LOG_LEVEL`` no longer
fully controls. :func:`silence` points fd 2 at /dev/null and gives Python a private duplicate of
the real stderr, so the CLI's own messages and errors still reach the terminal.
"""
from __future__ import annotations

import logging
import os
import sys
import warnings

_saved_fd: int | None = None


def silence() -> None:
    """Call before importing TensorFlow. Idempotent."""
    global _saved_fd
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    warnings.simplefilter("ignore")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    if _saved_fd is not None:
        return
    try:
        sys.stderr.flush()
        _saved_fd = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        sys.stderr = os.fdopen(os.dup(_saved_fd), "w", buffering=1, encoding="utf-8", errors="replace")
    except OSError:  # no real fd 2 (embedded interpreters): leave it alone
        _saved_fd = None


def quiet_python_loggers() -> None:
    """Keep TensorFlow's Python logger at ERROR and AutoGraph silent, without importing TensorFlow
    (the CLI reports bad input before TensorFlow loads): the ``tensorflow`` logger is an ordinary
    ``logging`` logger, and AutoGraph reads ``AUTOGRAPH_VERBOSITY`` when it first logs."""
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    os.environ.setdefault("AUTOGRAPH_VERBOSITY", "0")
