"""`smallgan recipes`: the built-in recipes, each with the one-line description its file opens with."""

from __future__ import annotations

from importlib import resources

from smallgan.cli.app import app


def recipe_description(name: str) -> str:
    """The first sentence of a built-in recipe's opening comment, without its ``name:`` prefix."""
    text = (resources.files("smallgan.recipes") / f"{name}.toml").read_text(encoding="utf-8")
    comment = []
    for line in text.splitlines():
        if not line.startswith("#") or line.startswith("#   "):   # indented comment lines are example commands
            break
        comment.append(line.lstrip("# ").strip())
    text = " ".join(comment).removeprefix(f"{name}:").strip()
    depth = 0
    for i, ch in enumerate(text):   # the first ". ", "; " or ": " outside parentheses ends it ("et al. 2019" does not)
        depth += (ch == "(") - (ch == ")")
        if depth == 0 and ch in ".;:" and text[i + 1:i + 2] in ("", " "):
            return text[:i]
    return text


@app.command("recipes")
def recipes_command() -> None:
    """List the built-in recipes (--recipe NAME); `smallgan info --recipe NAME` shows the model one builds."""
    from rich.console import Console
    from rich.table import Table

    from smallgan.config import recipe_names

    table = Table(title="built-in recipes (files in recipes/; every setting and its default: smallgan/config.py)")
    table.add_column("recipe", style="bold")
    table.add_column("what")
    for name in recipe_names():
        table.add_row(name, recipe_description(name))
    Console(soft_wrap=True).print(table)
