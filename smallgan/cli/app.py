"""The typer application object; each command lives in its own module of this package."""

import typer

app = typer.Typer(
    name="smallgan",
    help="Train a high-fidelity GAN (BigGAN, or a FastGAN baseline) on your own small image set.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Options shared by the commands that build a config from a recipe.
RecipeOption = typer.Option("tiny-cpu", "--recipe", "-r", help="Built-in recipe name or path to a .toml recipe.")
SetOption = typer.Option(
    None, "--set", "-s", help="Override a config field, e.g. --set model.ch=32 (repeatable)."
)
