"""Writing a :class:`Converted` model as a smallgan run folder (config, recipe, checkpoint, generator export)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import torch

from smallgan.io import atomic_write_text
from smallgan.runs import save_checkpoint
from smallgan.sampling.export import GENERATOR_FILE, export_generator
from smallgan.training.build import build_optimizers
from smallgan.config import Config
from smallgan.convert.base import ConversionError, Converted

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CONVERTED_FILE = "converted.json"   # where a converted run folder records its source


def check_output_folder(out: Path) -> None:
    """A converted run goes into a new (or empty) folder: nothing of an earlier run is mixed in or replaced."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConversionError(f"{out} already exists and is not an empty folder; choose another --out or remove it")


def write_run(out: Path, converted: Converted) -> Path:
    """Write `out` as a smallgan run folder: config.json, recipe.toml, generator.safetensors (the EMA generator),
    checkpoints/step-0000000/ (G, D, EMA, fresh optimiser states) and converted.json (where it came from)."""
    out = Path(out)
    check_output_folder(out)
    cfg = dataclasses.replace(converted.cfg)
    cfg.train = dataclasses.replace(cfg.train, out_dir=str(out.parent), name=out.name)
    cfg.recipe = out.name
    G, D, G_ema = converted.G, converted.D, converted.G_ema
    t = cfg.train
    g_opt, d_opt = build_optimizers(G, D, t, torch.device("cpu"))
    state = {
        # Adam as smallgan's trainer makes it at step 0, with the converted optimiser settings: the authors'
        # moments (G_optim.pth) are keyed by their parameter order and are not carried over.
        # Built as the trainer builds them (fused where the CPU has it): a resumed run loads their param groups.
        "g_opt": g_opt.state_dict(), "d_opt": d_opt.state_dict(),
        "g_scaler": {}, "d_scaler": {},      # a disabled GradScaler's state
        "counters": {"step": 0, "real_seen": 0}, "real_seen_by_rank": [0], "world": 1,
    }
    out.mkdir(parents=True, exist_ok=True)
    weights = {"G": G.state_dict(), "D": D.state_dict(), "G_ema": G_ema.state_dict()}
    save_checkpoint(out, 0, weights, state, cfg, keep=cfg.train.keep_ckpts, class_names=converted.class_names)
    export_generator(out / GENERATOR_FILE, G_ema, cfg, converted.class_names, 0)
    atomic_write_text(out / "config.json", cfg.to_json())
    atomic_write_text(out / "recipe.toml", config_to_toml(cfg))
    atomic_write_text(out / CONVERTED_FILE, json.dumps(converted.source, indent=2))
    return out


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)       # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def config_to_toml(cfg: Config) -> str:
    """The config as a recipe (``smallgan info --recipe DIR/recipe.toml``); reading it back gives `cfg`."""
    data = cfg.to_dict()
    lines = [f"recipe = {_toml_value(data.pop('recipe'))}"]
    for section, fields in data.items():
        lines += ["", f"[{section}]"] + [f"{k} = {_toml_value(v)}" for k, v in fields.items()]
    text = "\n".join(lines) + "\n"
    from smallgan.config import config_from_dict

    assert config_from_dict(tomllib.loads(text)) == cfg, "recipe.toml does not read back as the config"
    return text
