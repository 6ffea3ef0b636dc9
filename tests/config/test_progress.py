"""What a run shows while it trains: the CLI's Keras verbosity from the terminal and ``--quiet``,
and the TensorBoard directory each fit of a run gets."""
from __future__ import annotations

import io
from pathlib import Path

import pytest

from rmcompress.config.progress import Progress, fit_verbosity
from rmcompress.errors import UsageError


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_the_progress_bar_a_pipe_a_line_per_epoch_quiet_nothing():
    assert fit_verbosity(False, _Terminal()) == 1
    assert fit_verbosity(False, io.StringIO()) == 2
    assert fit_verbosity(True, _Terminal()) == 0 and fit_verbosity(True, io.StringIO()) == 0
    assert fit_verbosity(False, object()) == 2  # a stream without isatty is not a terminal


def test_the_python_api_default_shows_nothing_and_logs_nowhere():
    assert Progress() == Progress(0, None)
    assert Progress().child("01-budget") == Progress(0, None)


def test_each_child_run_is_a_subdirectory_with_the_same_verbosity():
    run = Progress(2, "tb").child("01-budget").child("gated")
    assert run == Progress(2, Path("tb/01-budget/gated"))


@pytest.mark.parametrize("verbose", [3, -1, "auto", None, 1.5])
def test_a_verbosity_keras_does_not_have_is_refused(verbose):
    with pytest.raises(UsageError, match="must be one of 0"):
        Progress(verbose)


def test_booleans_mean_silent_and_bar():
    assert Progress(False).verbose == 0 and Progress(True).verbose == 1
