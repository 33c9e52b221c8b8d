"""Run folders and atomic training checkpoints (the sampling export is :mod:`smallgan.sampling.export`).

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

import os
import re
import shutil
import signal
from pathlib import Path
from typing import Any

import torch
from torch import nn

from smallgan.config import Config, read_config
from smallgan.errors import SmallganError
from smallgan.io import atomic_write, atomic_write_text, fsync_dir, load_weights, save_weights, write_json

FORMAT_VERSION = 1
# The oldest format this version reads (0: written before state.pt recorded one). Raise it, never silently,
# when a change cannot read older checkpoints: they are then refused with a message that says so, and
# tests/test_checkpoint_compat.py checks every frozen checkpoint in tests/fixtures against both bounds.
OLDEST_FORMAT_VERSION = 0
CLASS_NAMES_FILE = "class_names.json"   # beside config.json in a checkpoint folder
_STEP_DIR = re.compile(r"^step-(\d+)$")
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


# ---------------------------------------------------------------------------------------------
# Training checkpoints


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temporary folders of interrupted writes are ignored)."""
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: Path) -> Path | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def remove_incomplete(run_dir: Path) -> list[Path]:
    """Delete the temporary folders of checkpoint writes that a crash interrupted; returns what was removed."""
    root = checkpoint_dir(run_dir)
    stale = [p for p in root.glob(".*-step-*") if p.is_dir()] if root.is_dir() else []
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return stale


def estimated_checkpoint_bytes(trained: list[nn.Module], frozen: list[nn.Module]) -> int:
    """Size of one checkpoint: weights and buffers of every module, plus Adam's two float32 moments for each
    parameter of the `trained` ones (the EMA copy is `frozen`: no optimiser state)."""
    total = sum(t.numel() * t.element_size() for m in trained + frozen for t in m.state_dict().values())
    return total + 2 * sum(p.numel() * 4 for m in trained for p in m.parameters())


def check_writable(run_dir: Path, needed_bytes: int) -> None:
    """Fail before training, not at the first checkpoint: the run folder must be writable and have room
    for the checkpoints kept plus one being written."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        raise SmallganError(f"cannot write to the run folder {run_dir} ({e.strerror or e}); "
                            "choose another with --set train.out_dir=DIR") from None
    free = shutil.disk_usage(run_dir).free
    if free < needed_bytes:
        raise SmallganError(
            f"only {free / 2**20:.0f} MiB free in {run_dir}, checkpoints need about {needed_bytes / 2**20:.0f} MiB; "
            "free some space, lower train.keep_ckpts, or set train.out_dir to another disk"
        )


def save_checkpoint(
    run_dir: Path,
    step: int,
    weights: dict[str, dict[str, torch.Tensor]],
    state: dict[str, Any],
    cfg: Config,
    keep: int,
    class_names: list[str] | None = None,
) -> Path:
    """Write ``checkpoints/step-<step>/`` atomically and keep only the newest `keep` checkpoints."""
    root = checkpoint_dir(run_dir)
    final = root / f"step-{step:07d}"
    tmp = root / f".tmp-step-{step:07d}-{os.getpid()}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for name, sd in weights.items():
            save_weights(tmp / f"{name}.safetensors", sd)
        if os.environ.get(KILL_IN_CHECKPOINT_ENV) == str(step):
            os.kill(os.getpid(), signal.SIGKILL)
        state = {**state, "format_version": FORMAT_VERSION, "step": step}
        atomic_write(tmp / "state.pt", lambda p: torch.save(state, p))
        atomic_write_text(tmp / "config.json", cfg.to_json())
        write_json(tmp / CLASS_NAMES_FILE, class_names or [], indent=None)
        if final.exists():  # re-saving the same step (e.g. right after a resume): replace the old one
            _remove_checkpoint(final)
        tmp.rename(final)
        fsync_dir(root)
    except OSError as e:
        previous = latest_checkpoint(run_dir)
        raise SmallganError(
            f"could not write checkpoint {final} ({e.strerror or e}); nothing was half-written, the last complete "
            f"checkpoint is {previous or 'none'}; free space or fix the folder, then --resume"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for old in list_checkpoints(run_dir)[:-keep]:
        _remove_checkpoint(old)
    return final


def _remove_checkpoint(path: Path) -> None:
    """Rename out of the step-* namespace first (atomic), then delete: a kill during the (file by file)
    deletion leaves a hidden folder that remove_incomplete() sweeps, never a step-* folder missing files."""
    trash = path.with_name(f".old-{path.name}-{os.getpid()}")
    path.rename(trash)
    shutil.rmtree(trash, ignore_errors=True)


def load_checkpoint(path: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any], Config]:
    """Read a checkpoint folder: (weights by network name, training state, config)."""
    path = Path(path)
    if not (path / "state.pt").is_file():
        raise SmallganError(f"{path} is not a complete smallgan checkpoint (no state.pt); pass a checkpoints/step-* folder")
    try:
        state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
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
