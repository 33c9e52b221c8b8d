"""How what a recipe (TOML), a saved config (JSON) or a ``--set`` option says lands on the config: ``section.key``
items applied in order, each value coerced to its field's type, or a one-line error; and the keys that give a
setting in other units (iterations instead of kimg) set aside and converted once the batch is final."""

from __future__ import annotations

import dataclasses
import math
import sys
import types
import typing
from typing import Any

from smallgan.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["DEPRECATED", "IN_STEPS", "apply_items", "coerce", "in_kimg", "items_of", "parse_literal",
           "parse_override"]

# Keys of [train] in iterations for settings held in kimg (an iteration is batch x d_steps real images through D),
# and the per-iteration EMA decay. Set aside until batch and d_steps are final; of a key and its other spelling,
# the later one wins. The old EMA keys are deprecated (a note); the steps stay as a convenience.
IN_STEPS = {"max_steps": "max_kimg", "log_every": "log_every_kimg", "sample_every": "sample_every_kimg",
            "ckpt_every": "ckpt_every_kimg", "eval_every": "eval_every_kimg", "sv_every": "sv_every_kimg",
            "ema_start": "ema_start_kimg"}
ASIDE = {**{f"train.{k}": (int, f"train.{v}") for k, v in IN_STEPS.items()},
         "train.ema_decay": (float, "train.ema_halflife_kimg")}
SPELLED_AS = {field: key for key, (_, field) in ASIDE.items()}
DEPRECATED = ("ema_decay", "ema_start")
LENGTH = ("train.max_steps", "train.max_kimg")


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


def parse_override(item: str) -> tuple[str, Any]:
    """``section.key=value`` -> (``section.key``, the value read as a TOML literal, else as a string)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or "." not in key:
        raise ConfigError(f"override {item!r} must look like section.key=value (e.g. model.ch=64)")
    return key, parse_literal(raw.strip())


def items_of(data: dict[str, Any], sections: tuple[str, ...]) -> tuple[str | None, list[tuple[str, Any]]]:
    """A recipe's or saved config's tables -> (its "recipe" name if it has one, its ``section.key`` items)."""
    recipe, items = None, []
    for name, value in data.items():
        if name == "recipe" and isinstance(value, str):
            recipe = value
        elif not isinstance(value, dict):
            raise ConfigError(f"unknown top-level key {name!r}; a recipe has sections "
                              + ", ".join(f"[{s}]" for s in sections))
        else:
            _check_section(name, name, sections)
            items += [(f"{name}.{key}", v) for key, v in value.items()]
    return recipe, items


def _check_section(name: str, key: str, sections: tuple[str, ...]) -> None:
    if name not in sections:
        raise ConfigError(f"unknown config section {name!r} in {key!r}; sections: {', '.join(sections)}")


def apply_items(cfg: Any, sections: tuple[str, ...], items: list[tuple[str, Any]]) -> None:
    """Set one place's items (a recipe, a saved config, the command line) on `cfg`'s dataclass sections, in
    order; values in other units wait in ``cfg._pending`` for :func:`in_kimg`. When one place gives both
    train.max_steps and train.max_kimg, the run stops at whichever comes first (configs saved when lengths were
    in steps hold both); a later place's either replaces them."""
    pending = vars(cfg).setdefault("_pending", {})
    for key, value in items:
        section_name, _, name = key.partition(".")
        _check_section(section_name, key, sections)
        if key in ASIDE:
            pending[key] = coerce(value, ASIDE[key][0], key)
            continue
        pending.pop(SPELLED_AS.get(key), None)
        section = getattr(cfg, section_name)
        hints = typing.get_type_hints(type(section))
        if name not in hints:
            known = ", ".join(f.name for f in dataclasses.fields(section))
            raise ConfigError(f"unknown key {key!r}; valid keys here: {known}")
        setattr(section, name, coerce(value, hints[name], key))
    given = {key for key, _ in items} & set(LENGTH)
    if given:
        pending["first_of_both"] = given == set(LENGTH)
        if given == set(LENGTH):
            pending[LENGTH[0]] = coerce([v for k, v in items if k == LENGTH[0]][-1], int, LENGTH[0])


def in_kimg(pending: dict[str, Any], batch: int, d_steps: int, max_kimg: float) -> tuple[dict[str, float], list[str]]:
    """[train] fields for the values set aside, at `batch` x `d_steps` real images per iteration, and a note for each
    deprecated key given."""
    per_iter, fields, notes = batch * d_steps, {}, []
    first_of_both = pending.pop("first_of_both", False)
    for key, value in pending.items():
        name = key.partition(".")[2]
        if name == "ema_decay":
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"train.ema_decay must be in [0, 1), got {value}")
            # decay = 0.5 ** (images per iteration / half-life in images), solved for the half-life.
            kimg = fields["ema_halflife_kimg"] = per_iter * math.log(0.5) / math.log(value) / 1000 if value else 0.0
            notes.append(f"train.ema_decay={value:g} is deprecated: use train.ema_halflife_kimg={kimg:.4g}"
                         f" (batch {batch} x d_steps {d_steps} x ln 0.5 / ln {value:g} / 1000)")
            continue
        if value < 0:
            raise ConfigError(f"{key} must be >= 0, got {value}")
        kimg = value * per_iter / 1000
        if name == "max_steps" and first_of_both:   # 0 = no limit in steps
            kimg = min((v for v in (kimg, max_kimg) if v), default=0.0)
        fields[IN_STEPS[name]] = kimg
        if name in DEPRECATED:
            notes.append(f"{key}={value} is deprecated: use train.{IN_STEPS[name]}={kimg:g}"
                         f" (iterations x batch {batch} x d_steps {d_steps} / 1000)")
    return fields, notes
