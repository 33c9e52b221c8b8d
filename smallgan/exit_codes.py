"""What `smallgan` and `python -m smallgan.train` exit with, so that a scheduler or a script can tell a finished
run from one to continue or to look at. docs/reliability.md lists them."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["ExitCode"]


class ExitCode(IntEnum):
    FINISHED = 0       # the command did what it was asked (a run reached max_kimg / max_minutes)
    CRASHED = 1        # an unexpected error: a bug or the environment (Python's own code for an uncaught exception)
    USAGE = 2          # bad input the user can fix: option, recipe, dataset, checkpoint (one line says what)
    DIVERGED = 3       # training stopped because it diverged (non-finite losses); the last good checkpoint is kept
    INTERRUPTED = 130  # stopped by Ctrl-C (SIGINT) after saving a checkpoint: run the same command to continue
    TERMINATED = 143   # stopped by SIGTERM (a scheduler's pre-emption) after saving a checkpoint: likewise
