"""The typer application object and how it runs; each command lives in its own module of this package."""

from __future__ import annotations

import sys

import typer

from smallgan.errors import SmallganError, TrainingDiverged
from smallgan.exit_codes import ExitCode

app = typer.Typer(
    name="smallgan",
    help="Train a high-fidelity GAN (BigGAN, or a FastGAN baseline) on your own small image set. "
    "`smallgan recipes` lists the built-in recipes; every setting and its default is in smallgan/config.py "
    "(--set section.key=value changes one).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from smallgan import __version__

        print(f"smallgan {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Options before the command."""


# Options shared by the commands that build a config from a recipe.
RecipeOption = typer.Option("tiny-cpu", "--recipe", "-r", help="Built-in recipe (`smallgan recipes` lists them) or "
                            "path to a .toml recipe.")
SetOption = typer.Option(
    None, "--set", "-s", help="Override a config field, e.g. --set model.ch=32 (repeatable)."
)


def run_app(typer_app: typer.Typer) -> None:
    """Run a typer app; user mistakes (SmallganError) become one line on stderr and exit code 2, a diverged
    run exit code 3 (smallgan.exit_codes)."""
    from rich.console import Console

    try:
        typer_app()
    except SmallganError as e:
        Console(stderr=True).print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(ExitCode.DIVERGED if isinstance(e, TrainingDiverged) else ExitCode.USAGE)
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted", highlight=False)
        sys.exit(ExitCode.INTERRUPTED)
