"""The generator export, ``generator.safetensors``: writing it, finding it, and loading it as a
:class:`~smallgan.sampling.generator.TrainedGenerator`.

One safetensors file holds the EMA generator's weights and, in its metadata, everything needed to rebuild it:
the run's config, the class names and the training step. Training writes it next to every checkpoint (and to
``best/`` when evaluation finds a new best); ``smallgan sample``, ``smallgan eval``, ``smallgan compare`` and
the Python API load it here. Loading never executes code (safetensors, no pickle).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from smallgan.checkpoint import CLASS_NAMES_FILE, FORMAT_VERSION, load_into
from smallgan.config import Config, config_from_dict, read_config
from smallgan.errors import ConfigError, SmallganError
from smallgan.io import load_weights, read_json, read_metadata, save_weights
from smallgan.registry import build_generator
from smallgan.sampling.generator import TrainedGenerator, resolve_device

GENERATOR_FILE = "generator.safetensors"
FORMAT = "smallgan-generator"
CHECKPOINT_GENERATOR = "G_ema.safetensors"   # the same generator inside a checkpoint folder


def export_generator(path: str | Path, generator: nn.Module, cfg: Config, class_names: list[str], step: int) -> None:
    """Write `generator` (eval mode, prepared for sampling) and what rebuilds it, atomically."""
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "config": cfg.to_json(),
        "class_names": json.dumps(class_names),
        "step": str(step),
    }
    save_weights(Path(path), generator.state_dict(), metadata)


def find_generator_file(path_or_run: str | Path) -> Path:
    """A generator.safetensors file, a run folder (its generator.safetensors) or a checkpoint folder."""
    p = Path(path_or_run)
    if p.is_dir():
        for candidate in (p / GENERATOR_FILE, p / CHECKPOINT_GENERATOR):
            if candidate.is_file():
                return candidate
        raise SmallganError(f"{p} holds no {GENERATOR_FILE}; pass a run folder, a checkpoint folder or the file")
    if not p.is_file():
        raise SmallganError(f"{p} does not exist; pass a run folder (runs/NAME) or a generator.safetensors file")
    return p


def _described(path: Path) -> tuple[Config, list[str], int | None]:
    """(config, class names, step) of a generator file: from its metadata, or beside it in a checkpoint
    folder (whose step is in state.pt, which loading a generator does not open: None)."""
    if path.name == CHECKPOINT_GENERATOR:
        names_file = path.parent / CLASS_NAMES_FILE
        class_names = read_json(names_file) if names_file.is_file() else []
        return read_config(path.parent / "config.json"), class_names, None
    meta = read_metadata(path)
    if meta.get("format") != FORMAT:
        raise SmallganError(f"{path} is not a smallgan generator export (no smallgan metadata)")
    if int(meta.get("format_version", "0")) > FORMAT_VERSION:
        raise SmallganError(f"{path} was written by a newer smallgan (format {meta['format_version']}); upgrade")
    try:
        cfg = config_from_dict(json.loads(meta["config"]))
        class_names = json.loads(meta.get("class_names", "[]"))
    except (KeyError, ValueError, ConfigError) as e:
        raise SmallganError(f"{path} has unreadable metadata ({e})") from None
    step = meta.get("step", "")
    return cfg, class_names, int(step) if step.isdigit() else None


def load_generator(path_or_run: str | Path, device: str | torch.device | None = None) -> TrainedGenerator:
    """A run folder, a ``generator.safetensors``, a checkpoint folder or ``hf:USER/NAME`` (a run pushed to the
    Hugging Face Hub, downloaded once into its cache) -> :class:`TrainedGenerator`.

    Weights load with safetensors only (no pickle); a damaged or mismatched file raises a one-line
    :class:`~smallgan.errors.SmallganError`. ``device`` None means the GPU when there is one.
    """
    from smallgan.hub import resolve_run

    path = find_generator_file(resolve_run(path_or_run))    # hf:USER/NAME: its snapshot in the hub cache
    cfg, class_names, step = _described(path)
    state = load_weights(path)
    module = build_generator(cfg.model, n_classes=len(class_names) or None)
    load_into(module, state, path)
    return TrainedGenerator(module.to(resolve_device(device)), cfg, class_names, path=path, step=step)


def latest_run(runs_dir: str | Path = "runs") -> Path:
    """The run folder under `runs_dir` whose generator.safetensors was written last."""
    root = Path(runs_dir)
    found: list[tuple[int, str, Path]] = []
    if root.is_dir():
        found = [((p / GENERATOR_FILE).stat().st_mtime_ns, p.name, p) for p in root.iterdir()
                 if (p / GENERATOR_FILE).is_file()]
    if not found:
        raise SmallganError(f"no trained run under {root}/ (no */{GENERATOR_FILE}); pass --run DIR or --ckpt FILE, "
                            "or train first (smallgan demo / smallgan train)")
    return max(found)[2]
