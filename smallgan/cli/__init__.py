"""`smallgan` command line. Commands are thin wrappers; the work happens in the library."""

from __future__ import annotations

import sys

from smallgan.cli import bench, compare, convert, eval, info, prepare, push, recipes, sample, timelapse, train  # noqa: F401  (each module registers its commands on `app`)
from smallgan.cli.app import app, run_app


def main() -> None:
    from smallgan.cli.common import normalize_resume_argv

    sys.argv = [sys.argv[0], *normalize_resume_argv(sys.argv[1:])]
    run_app(app)
