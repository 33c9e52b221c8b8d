"""`smallgan` command line. Commands are thin wrappers; the work happens in the library."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from smallgan.cli.app import app
from smallgan.cli import bench, compare, convert, eval, info, prepare, sample, train  # noqa: F401  (each module registers its commands on `app`)
from smallgan.errors import SmallganError


def run_app(typer_app: typer.Typer) -> None:
    """Run a typer app; user mistakes (SmallganError) become one line on stderr and exit code 2."""
    try:
        typer_app()
    except SmallganError as e:
        Console(stderr=True).print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted", highlight=False)
        sys.exit(130)


def main() -> None:
    from smallgan.cli.common import normalize_resume_argv

    sys.argv = [sys.argv[0], *normalize_resume_argv(sys.argv[1:])]
    run_app(app)
