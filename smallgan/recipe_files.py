"""Recipes as files: the built-in ones shipped in ``smallgan.recipes`` (the repository's ``recipes/``) or any
``.toml`` path, read as data (TOML is parsed, never executed) into plain dicts for :mod:`smallgan.config`."""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path
from typing import Any

from smallgan.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["read_recipe", "recipe_names"]


def recipe_names() -> list[str]:
    """Built-in recipe names (files shipped in the smallgan.recipes package)."""
    root = resources.files("smallgan.recipes")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def read_recipe(recipe: str) -> tuple[dict[str, Any], str]:
    """A built-in name or a .toml path -> (its tables, the recipe's name); one-line errors."""
    path = Path(recipe)
    if recipe.endswith(".toml") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"recipe file {recipe!r} does not exist")
        try:
            text, name = path.read_text(encoding="utf-8"), path.stem   # TOML is UTF-8 whatever the locale
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"recipe file {recipe!r} cannot be read as UTF-8 text ({e})") from None
    else:
        res = resources.files("smallgan.recipes") / f"{recipe}.toml"
        if not res.is_file():
            raise ConfigError(f"unknown recipe {recipe!r}; built-in recipes: {', '.join(recipe_names())} "
                              "(or pass a .toml path)")
        text, name = res.read_text(), recipe
    try:
        return tomllib.loads(text), name
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"recipe {recipe!r} is not valid TOML: {e}") from None
