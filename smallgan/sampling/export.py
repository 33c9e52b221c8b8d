"""The generator export, ``generator.safetensors``: finding it and loading it as a
:class:`~smallgan.sampling.generator.TrainedGenerator` (its format: :mod:`smallgan.checkpoint`).

Training writes it next to every checkpoint (and to ``best/`` when evaluation finds a new best); ``smallgan
sample``, ``smallgan eval``, ``smallgan compare`` and the Python API load it here. Loading never executes code
(safetensors, no pickle).
"""

from __future__ import annotations

from pathlib import Path

import torch

from smallgan.checkpoint import CHECKPOINT_GENERATOR, GENERATOR_FILE, describe_generator, export_generator, load_into
from smallgan.errors import SmallganError
from smallgan.io import load_weights
from smallgan.registry import build_generator
from smallgan.sampling.generator import TrainedGenerator, resolve_device

__all__ = ["GENERATOR_FILE", "export_generator", "find_generator_file", "latest_run", "load_generator"]


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


def load_generator(path_or_run: str | Path, device: str | torch.device | None = None) -> TrainedGenerator:
    """A run folder, a ``generator.safetensors``, a checkpoint folder or ``hf:USER/NAME`` (a run pushed to the
    Hugging Face Hub, downloaded once into its cache) -> :class:`TrainedGenerator`.

    Weights load with safetensors only (no pickle); a damaged or mismatched file raises a one-line
    :class:`~smallgan.errors.SmallganError`. ``device`` None means the GPU when there is one.
    """
    from smallgan.hub import resolve_run

    path = find_generator_file(resolve_run(path_or_run))    # hf:USER/NAME: its snapshot in the hub cache
    cfg, class_names, step = describe_generator(path)
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
