"""Run folders, atomic checkpoints and the sampling export (``generator.safetensors``).

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

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from smallgan.config import Config, ConfigError, config_from_dict
from smallgan.errors import SmallganError

FORMAT_VERSION = 1
_STEP_DIR = re.compile(r"^step-(\d+)$")


# ---------------------------------------------------------------------------------------------
# Atomic file helpers


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)``, fsync it, then rename it to `path` (readers see old or new, never half)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda p: Path(p).write_text(text))


def save_weights(path: Path, state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    # safetensors refuses tensors that share storage; state dicts of our models hold none, but clone
    # defensively only what is not contiguous.
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    atomic_write(path, lambda p: save_file(tensors, str(p), metadata=metadata))


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise SmallganError(f"checkpoint file {path} is damaged or unreadable ({str(e).splitlines()[0]}); "
                            "use an earlier checkpoint") from None


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
        state = {**state, "format_version": FORMAT_VERSION, "step": step}
        atomic_write(tmp / "state.pt", lambda p: torch.save(state, p))
        atomic_write_text(tmp / "config.json", cfg.to_json())
        atomic_write_text(tmp / "class_names.json", json.dumps(class_names or []))
        if final.exists():  # re-saving the same step (e.g. right after a resume): replace the old one
            _remove_checkpoint(final)
        tmp.rename(final)
        _fsync_dir(root)
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
    weights = {p.stem: load_weights(p) for p in sorted(path.glob("*.safetensors"))}
    cfg = _read_config(path / "config.json")
    return weights, state, cfg


def _read_config(path: Path) -> Config:
    try:
        return config_from_dict(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError) as e:
        raise SmallganError(f"cannot read {path} ({e}); the checkpoint is incomplete") from None
    except ConfigError as e:
        raise SmallganError(f"{path} holds a config this smallgan does not understand: {e}") from None


# ---------------------------------------------------------------------------------------------
# The sampling export: one file with the EMA generator and everything needed to rebuild it.

GENERATOR_FILE = "generator.safetensors"


def export_generator(path: Path, generator: nn.Module, cfg: Config, class_names: list[str], step: int) -> None:
    metadata = {
        "format": "smallgan-generator",
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
        for candidate in (p / GENERATOR_FILE, p / "G_ema.safetensors"):
            if candidate.is_file():
                return candidate
        raise SmallganError(f"{p} holds no {GENERATOR_FILE}; pass a run folder, a checkpoint folder or the file")
    if not p.is_file():
        raise SmallganError(f"{p} does not exist; pass a run folder (runs/NAME) or a generator.safetensors file")
    return p


def load_generator(path_or_run: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, Config, list[str]]:
    """Rebuild the EMA generator of a run: (generator in eval mode, its Config, class names)."""
    from smallgan.registry import build_generator

    path = find_generator_file(path_or_run)
    if path.name == "G_ema.safetensors":  # inside a checkpoint folder: config and class names sit beside it
        cfg = _read_config(path.parent / "config.json")
        names_file = path.parent / "class_names.json"
        class_names: list[str] = json.loads(names_file.read_text()) if names_file.is_file() else []
    else:
        try:
            from safetensors import safe_open

            with safe_open(str(path), "pt") as f:
                meta = f.metadata() or {}
        except (SafetensorError, OSError) as e:
            raise SmallganError(f"{path} is damaged or not a safetensors file ({str(e).splitlines()[0]})") from None
        if meta.get("format") != "smallgan-generator":
            raise SmallganError(f"{path} is not a smallgan generator export (no smallgan metadata)")
        if int(meta.get("format_version", "0")) > FORMAT_VERSION:
            raise SmallganError(f"{path} was written by a newer smallgan (format {meta['format_version']}); upgrade")
        try:
            cfg = config_from_dict(json.loads(meta["config"]))
            class_names = json.loads(meta.get("class_names", "[]"))
        except (KeyError, json.JSONDecodeError, ConfigError) as e:
            raise SmallganError(f"{path} has unreadable metadata ({e})") from None
    state = load_weights(path)
    generator = build_generator(cfg.model, n_classes=len(class_names) or None)
    load_into(generator, state, path)
    return generator.to(device).eval(), cfg, class_names
