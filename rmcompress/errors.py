"""The project's own error types.

Every problem caused by a user's input (a data file, a recipe, a model directory, a flag) is raised
as an :class:`RMCompressError` subclass whose message names the place: the file, the line, the key
or the layer. The CLI turns these into exit code 2 and one line on stderr; anything else is a bug.
"""
from __future__ import annotations


class RMCompressError(Exception):
    """Base class: a user-facing error with a one-line message naming the place."""


class DataError(RMCompressError):
    """A data file is missing, unreadable or has bad rows (message names file and line)."""


class ModelError(RMCompressError):
    """A model directory or artifact is incomplete, of the wrong task, or has an unknown layer."""


class RecipeError(RMCompressError):
    """A recipe file or level is invalid (message names the key and the allowed values)."""


class ExportError(RMCompressError):
    """An export failed its parity check or could not be converted."""


class UsageError(RMCompressError):
    """Flags that contradict each other or an output directory that already exists."""


class OutputError(UsageError):
    """An output path rmcompress may not or cannot write: not provably its own (see
    ``rmcompress.ownership``), inside or around an input, locked by another run, or refused by the
    file system (permissions, read-only, no space); the message names the path."""
