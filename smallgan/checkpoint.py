"""The on-disk formats: a training checkpoint folder and the generator export (``generator.safetensors``).

Where they go in a run folder, which checkpoints a run has and which one a run continues is
:mod:`smallgan.runs`; what goes into ``state.pt`` is :meth:`smallgan.training.state.TrainState.state_dict`.
A run folder::

    runs/<name>/
      config.json                      the resolved config of the run
      metrics.jsonl                    one JSON object per line (losses, img/s, metrics)
      samples/step-0000500.png         grids from fixed latents (EMA generator)
      checkpoints/step-0000500/        everything needed to resume exactly:
          G.safetensors D.safetensors G_ema.safetensors   weights + buffers (spectral-norm u, BN stats)
          state.pt                     optimisers, loss scalers, counters (torch.load(weights_only=True))
          config.json
      generator.safetensors            EMA generator + its config: all that sampling needs
      best/generator.safetensors       the best EMA generator by the tracked metric (when evaluation is on)

Checkpoints are built in a hidden temporary folder and renamed into place when complete, so a crash never
leaves a half-written ``step-*`` folder; weights are safetensors and the rest loads with ``weights_only=True``,
so opening a checkpoint never executes code.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import torch
from torch import nn

from smallgan.config import Config, config_from_dict, read_config
from smallgan.errors import ConfigError, SmallganError
from smallgan.io import (
    atomic_write, atomic_write_text, fsync_dir, load_weights, read_json, read_metadata, save_weights, write_json,
)

FORMAT_VERSION = 1
# The oldest format this version reads (0: written before state.pt recorded one). Raise it, never silently,
# when a change cannot read older checkpoints: they are then refused with a message that says so, and
# tests/test_checkpoint_compat.py checks every frozen checkpoint in tests/fixtures against both bounds.
OLDEST_FORMAT_VERSION = 0
CLASS_NAMES_FILE = "class_names.json"   # beside config.json in a checkpoint folder
STATE_FILE = "state.pt"                # optimisers, scalers, counters, few-shot state (weights_only pickle)
WEIGHTS = ("G", "D", "G_ema")          # <name>.safetensors in a checkpoint folder
GENERATOR_FILE = "generator.safetensors"   # the export: in a run folder, and in best/
GENERATOR_FORMAT = "smallgan-generator"
CHECKPOINT_GENERATOR = "G_ema.safetensors"   # the same generator inside a checkpoint folder
# Fault injection for tests/test_multiprocess_faults.py: with this variable set to a step, the process
# writing that step's checkpoint kills itself (SIGKILL) with the weights written and state.pt not yet, as a
# power cut would. Unset, as everywhere outside that test, it does nothing.
KILL_IN_CHECKPOINT_ENV = "SMALLGAN_TEST_KILL_IN_CHECKPOINT"


def load_into(module: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """load_state_dict with a one-line error that says which checkpoint does not fit which model."""
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).splitlines()[0] if str(e) else "state dict mismatch"
        detail = next((ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()), "")
        raise SmallganError(
            f"checkpoint {path} does not match the model being built ({first} {detail[:160]}); "
            "was it trained with another architecture, resolution or width?"
        ) from None


def write_checkpoint(
    final: Path,
    weights: dict[str, dict[str, torch.Tensor]],
    state: dict[str, Any],
    cfg: Config,
    class_names: list[str] | None = None,
) -> Path:
    """Write the checkpoint folder `final` atomically: built in a hidden sibling, renamed into place when whole."""
    root, step = final.parent, int(final.name.rpartition("-")[2])
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for name, sd in weights.items():
            save_weights(tmp / f"{name}.safetensors", sd)
        if os.environ.get(KILL_IN_CHECKPOINT_ENV) == str(step):
            os.kill(os.getpid(), signal.SIGKILL)
        state = {**state, "format_version": FORMAT_VERSION, "step": step}
        atomic_write(tmp / STATE_FILE, lambda p: torch.save(state, p))
        atomic_write_text(tmp / "config.json", cfg.to_json())
        write_json(tmp / CLASS_NAMES_FILE, class_names or [], indent=None)
        if final.exists():  # re-saving the same step (e.g. right after a resume): replace the old one
            remove_checkpoint(final)
        tmp.rename(final)
        fsync_dir(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def remove_checkpoint(path: Path) -> None:
    """Rename out of the step-* namespace first (atomic), then delete: a kill during the (file by file)
    deletion leaves a hidden folder that runs.remove_incomplete() sweeps, never a step-* folder missing files."""
    trash = path.with_name(f".old-{path.name}-{os.getpid()}")
    path.rename(trash)
    shutil.rmtree(trash, ignore_errors=True)


def load_checkpoint(path: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any], Config]:
    """Read a checkpoint folder: (weights by network name, training state, config)."""
    path = Path(path)
    if not (path / STATE_FILE).is_file():
        raise SmallganError(f"{path} is not a complete smallgan checkpoint (no state.pt); pass a checkpoints/step-* folder")
    try:
        state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file, never code execution
        raise SmallganError(f"checkpoint {path / 'state.pt'} cannot be loaded safely ({type(e).__name__}); "
                            "it is damaged or not a smallgan checkpoint") from None
    version = state.get("format_version", 0)
    if version > FORMAT_VERSION:
        raise SmallganError(f"checkpoint {path} has format version {version}, newer than this smallgan "
                            f"({FORMAT_VERSION}); upgrade smallgan to resume it")
    if version < OLDEST_FORMAT_VERSION:
        raise SmallganError(f"checkpoint {path} has format version {version}, older than this smallgan reads "
                            f"({OLDEST_FORMAT_VERSION}); resume it with the smallgan that wrote it, or start a new run")
    weights = {p.stem: load_weights(p) for p in sorted(path.glob("*.safetensors"))}
    return weights, state, read_config(path / "config.json")


def shared_files(path: Path) -> dict[str, Path | bytes]:
    """What a pushed checkpoint folder keeps (`smallgan push`): the weights and what describes them, and a
    state.pt without optimiser and loss-scaler states (what --init reads: its format version and step), a
    fraction of the size."""
    files: dict[str, Path | bytes] = {f"{name}.safetensors": path / f"{name}.safetensors" for name in WEIGHTS}
    files.update({"config.json": path / "config.json", CLASS_NAMES_FILE: path / CLASS_NAMES_FILE})
    files = {name: p for name, p in files.items() if p.is_file()}
    full = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
    buffer = io.BytesIO()
    torch.save({k: full[k] for k in ("format_version", "step", "data") if k in full}, buffer)
    files[STATE_FILE] = buffer.getvalue()
    return files


def missing_weights(path: Path, weights: dict[str, Any]) -> None:
    """Refuse a checkpoint folder without one of G, D and G_ema."""
    for name in WEIGHTS:
        if name not in weights:
            raise SmallganError(f"checkpoint {path} has no {name}.safetensors; it is incomplete")


# ---------------------------------------------------------------------------------------------
# The generator export: the EMA generator's weights and, in the safetensors metadata, everything that rebuilds
# it (the run's config, the class names, the training step). Loading never executes code.


def export_generator(path: str | Path, generator: nn.Module, cfg: Config, class_names: list[str], step: int) -> None:
    """Write `generator` (eval mode, prepared for sampling) and what rebuilds it, atomically."""
    metadata = {
        "format": GENERATOR_FORMAT,
        "format_version": str(FORMAT_VERSION),
        "config": cfg.to_json(),
        "class_names": json.dumps(class_names),
        "step": str(step),
    }
    save_weights(Path(path), generator.state_dict(), metadata)


def describe_generator(path: Path) -> tuple[Config, list[str], int | None]:
    """(config, class names, step) of a generator file: from its metadata, or beside it in a checkpoint
    folder (whose step is in state.pt, which loading a generator does not open: None)."""
    if path.name == CHECKPOINT_GENERATOR:
        names_file = path.parent / CLASS_NAMES_FILE
        class_names = read_json(names_file) if names_file.is_file() else []
        return read_config(path.parent / "config.json"), class_names, None
    meta = read_metadata(path)
    if meta.get("format") != GENERATOR_FORMAT:
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
