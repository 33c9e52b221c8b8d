"""Helpers shared by CLI commands: building a config from --recipe/--set and printing it."""

from __future__ import annotations

from smallgan.config import Config, load_config


def config_from_options(recipe: str, sets: list[str] | None, extra: dict[str, object] | None = None) -> Config:
    """--recipe, then --set overrides, then typed CLI options (only those the user gave: None means unset)."""
    overrides = list(sets or [])
    overrides += [f"{k}={_literal(v)}" for k, v in (extra or {}).items() if v is not None]
    return load_config(recipe, overrides)


def _literal(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(v)


def normalize_resume_argv(argv: list[str]) -> list[str]:
    """`--resume` with no value means the latest checkpoint of the run: give it the value "latest"."""
    out = []
    for i, a in enumerate(argv):
        out.append(a)
        if a == "--resume" and (i + 1 == len(argv) or argv[i + 1].startswith("-")):
            out.append("latest")
    return out
