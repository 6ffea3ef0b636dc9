"""What a run shows while it trains, decided in one place: Keras' verbosity and the TensorBoard
directory, carried to every training pass of the run.

Verbosity is Keras ``fit``'s ``verbose``: 0 nothing, 1 Keras' progress bar, 2 one plain line per
epoch. The CLI (``train``, ``compress``) takes it from :func:`fit_verbosity`: 0 with ``--quiet``,
1 when standard output is a terminal, 2 otherwise (a pipe, a log file, CI: a bar redrawn in place
would fill the file). The Python API (``train``, ``compress``, ``budget_compress``) shows nothing
unless its ``verbose`` asks.

:class:`Progress` is what the training loop (:func:`rmcompress.training.finetune.fit_model`)
receives: the verbosity and the directory its ``fit`` writes TensorBoard logs to (None: none).
:meth:`Progress.child` names a sub-run, so every ``fit`` of a run writes its own TensorBoard run
(``DIR/<child>/train``, ``DIR/<child>/validation``) and curves of different fits never overlap.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path

from rmcompress.errors import UsageError

#: Keras ``fit`` verbosity levels: nothing, a progress bar, a line per epoch
VERBOSITIES = (0, 1, 2)


def fit_verbosity(quiet: bool = False, stream=None) -> int:
    """The CLI's Keras verbosity: 0 when ``quiet``, 1 (progress bar) when ``stream`` (default
    ``sys.stdout``, where Keras prints) is a terminal, 2 (a line per epoch) otherwise."""
    if quiet:
        return 0
    stream = sys.stdout if stream is None else stream
    try:
        return 1 if stream.isatty() else 2
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return 2


@dataclass(frozen=True)
class Progress:
    """The verbosity (``0``/``1``/``2``, module docstring) and TensorBoard directory of one ``fit``
    or of a run whose fits are its children."""

    verbose: int = 0
    tensorboard: Path | None = None

    def __post_init__(self):
        if not isinstance(self.verbose, int) or self.verbose not in VERBOSITIES:
            raise UsageError(f"verbose={self.verbose!r} must be one of 0 (silent), 1 (progress bar), "
                             "2 (a line per epoch)")
        object.__setattr__(self, "verbose", int(self.verbose))  # False/True: 0/1
        if self.tensorboard is not None:
            object.__setattr__(self, "tensorboard", Path(self.tensorboard))

    def child(self, name: str) -> "Progress":
        """The same verbosity; TensorBoard logs in the subdirectory ``name`` (none without a directory)."""
        return replace(self, tensorboard=None if self.tensorboard is None else self.tensorboard / name)
