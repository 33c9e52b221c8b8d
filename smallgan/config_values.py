"""How a value from a recipe (TOML) or a ``--set`` option becomes a config field's type, or a one-line error."""

from __future__ import annotations

import sys
import types
import typing
from typing import Any

from smallgan.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["coerce", "parse_literal"]


def parse_literal(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        # Bare words (`model.arch=biggan-deep`, `train.diffaug=color,translation`) are strings.
        return raw


def coerce(value: Any, typ: Any, key: str) -> Any:
    origin = typing.get_origin(typ)
    if origin is list:
        (item_type,) = typing.get_args(typ)
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            value = [value] if not isinstance(value, str) else [v for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list of {item_type.__name__}, got {value!r}")
        return [coerce(v.strip() if isinstance(v, str) else v, item_type, key) for v in value]
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"unsupported config type {typ} for {key}")  # keep fields simple
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
    elif typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        try:
            if isinstance(value, str):
                return float(value)
        except ValueError:
            pass
    elif typ is str:
        if isinstance(value, str):
            return value
        if isinstance(value, bool):   # data.flip = true in a recipe, or a config saved when flip was a bool
            return "true" if value else "false"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    raise ConfigError(f"{key} must be {typ.__name__}, got {value!r}")
