"""Runs: the run folder, its checkpoints, which checkpoint a launch continues, and what may not change when it
does (the model, the data). The files inside a checkpoint are :mod:`smallgan.checkpoint`'s.

``runs/<name>/checkpoints/step-0000500/`` is a checkpoint of iteration 500; hidden ``.tmp-*`` and ``.old-*``
folders beside them are writes and deletions a kill interrupted, swept at the next start. Functions here return
notes (strings) for the user instead of printing them: the CLI and the Trainer print them, once per launch.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from smallgan import checkpoint as ckpt
from smallgan.config import SECTIONS, Config, ModelConfig, read_config, with_overrides
from smallgan.errors import SmallganError

_STEP_DIR = re.compile(r"^step-(\d+)$")


def run_dir_for(cfg: Config) -> Path:
    return Path(cfg.train.out_dir) / (cfg.train.name or cfg.recipe or "run")


# ---------------------------------------------------------------------------------------------
# The checkpoints of a run


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def checkpoint_step(path: Path) -> int | None:
    """The iteration a ``step-*`` folder holds (None: not a checkpoint folder's name)."""
    m = _STEP_DIR.match(Path(path).name)
    return int(m.group(1)) if m else None


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temporary folders of interrupted writes are ignored)."""
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return []
    found = [(step, p) for p in root.iterdir() if (step := checkpoint_step(p)) is not None and p.is_dir()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: Path) -> Path | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def checkpoint_before(run_dir: Path, step: int) -> Path | None:
    """The newest complete checkpoint at or before `step` (a rollback's target)."""
    found = [p for p in list_checkpoints(run_dir) if checkpoint_step(p) <= step]
    return found[-1] if found else None


def remove_incomplete(run_dir: Path) -> list[Path]:
    """Delete the temporary folders of checkpoint writes that a crash interrupted; returns what was removed."""
    root = checkpoint_dir(run_dir)
    stale = [p for p in root.glob(".*-step-*") if p.is_dir()] if root.is_dir() else []
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return stale


def save_checkpoint(run_dir: Path, step: int, weights: dict[str, dict[str, torch.Tensor]], state: dict[str, Any],
                    cfg: Config, keep: int, class_names: list[str] | None = None) -> Path:
    """Write ``checkpoints/step-<step>/`` atomically and keep only the newest `keep` checkpoints."""
    final = checkpoint_dir(run_dir) / f"step-{step:07d}"
    try:
        ckpt.write_checkpoint(final, weights, state, cfg, class_names)
    except OSError as e:
        raise SmallganError(
            f"could not write checkpoint {final} ({e.strerror or e}); nothing was half-written, the last complete "
            f"checkpoint is {latest_checkpoint(run_dir) or 'none'}; free space or fix the folder, then --resume"
        ) from None
    for old in list_checkpoints(run_dir)[:-keep]:
        ckpt.remove_checkpoint(old)
    return final


def estimated_checkpoint_bytes(trained: list[nn.Module], frozen: list[nn.Module]) -> int:
    """Size of one checkpoint: weights and buffers of every module, plus Adam's two float32 moments for each
    parameter of the `trained` ones (the EMA copy is `frozen`: no optimiser state)."""
    total = sum(t.numel() * t.element_size() for m in trained + frozen for t in m.state_dict().values())
    return total + 2 * sum(p.numel() * 4 for m in trained for p in m.parameters())


def prepare_run_dir(run_dir: Path, needed_bytes: int) -> list[str]:
    """Sweep interrupted checkpoint writes, then fail before training, not at the first checkpoint: the run
    folder must be writable and have room for the checkpoints kept plus one being written. Returns notes."""
    removed = remove_incomplete(run_dir)
    notes = [f"removed {len(removed)} incomplete checkpoint write(s) of an interrupted run"] if removed else []
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
    return notes


# ---------------------------------------------------------------------------------------------
# Which checkpoint a launch continues


def checkpoint_to_resume(resume: str | Path) -> Path:
    """The checkpoint a --resume path names: a run folder's latest checkpoint, or a checkpoint folder itself."""
    path = Path(resume)
    if (path / "checkpoints").is_dir() or (path / "config.json").is_file() and not (path / ckpt.STATE_FILE).is_file():
        latest = latest_checkpoint(path)
        if latest is None:
            raise SmallganError(f"--resume {resume}: this run folder has no checkpoint yet; start it without --resume")
        return latest
    if not path.is_dir():
        raise SmallganError(f"--resume {resume}: no such folder; pass a run folder (runs/NAME) or one of its "
                            "checkpoints (runs/NAME/checkpoints/step-*)")
    return path


def resume_decision(run_dir: Path, resume: str | None, overwrite: bool) -> tuple[Path | None, list[str]]:
    """The checkpoint to continue (None: a new run) and notes. `resume`: "auto" (the CLI's default) continues
    the latest checkpoint of `run_dir` when there is one, else starts; "latest" the same, with a note when there
    is none; a run folder or a checkpoint folder continues that. None starts a new run and refuses an existing
    one. `overwrite` starts over whatever `resume` says (the caller removes the old checkpoints: see
    :func:`start_over`)."""
    existing = latest_checkpoint(run_dir)
    if overwrite or resume in (None, ""):
        if existing is not None and not overwrite:
            raise SmallganError(
                f"run folder {run_dir} already has checkpoints; continue it with --resume, start over with "
                "--overwrite, or pick another --name"
            )
        return None, []
    if resume in ("auto", "latest"):
        notes = [f"no checkpoint in {run_dir} yet; starting a new run"] if existing is None and resume == "latest" else []
        return existing, notes
    return checkpoint_to_resume(resume), []


def start_over(run_dir: Path) -> None:
    """--overwrite: remove the run's checkpoints (main process only)."""
    shutil.rmtree(checkpoint_dir(run_dir), ignore_errors=True)


def config_differences(old: Config, new: Config) -> list[tuple[str, object, object]]:
    """(section.key, old, new) for every setting that differs."""
    out = []
    for section in SECTIONS:
        a, b = getattr(old, section).__dict__, getattr(new, section).__dict__
        out += [(f"{section}.{k}", a[k], b.get(k)) for k in a if not k.startswith("_") and a[k] != b.get(k)]
    return out


def refuse_model_change(run: Path, saved: ModelConfig, model: ModelConfig, source: str) -> None:
    """A model cannot change on resume: refused in one line naming each changed model.* setting."""
    changed = [(k, a, b) for k, a in vars(saved).items() if not k.startswith("_") and a != (b := getattr(model, k))]
    if changed:
        shown = ", ".join(f"model.{k}={b} (the run has {a})" for k, a, b in changed)
        raise SmallganError(f"{source} change the model of {run}: {shown}; a model cannot change on resume; "
                            f"start a new run with --name NEW, or replace this one with --overwrite")


def continued_config(checkpoint: Path, items: list[str], recipe: tuple[str, Config] | None) -> tuple[Config, str]:
    """The config a continued run trains with: its checkpoint's, with the override `items` on top, in the run
    folder where the checkpoint is now (moved folders too); `recipe`: (its name, the config it builds), which
    must build the run's model. Returns the config and a note of what changed."""
    run = checkpoint.parent.parent
    saved = read_config(checkpoint / "config.json")
    where = [f"train.out_dir={json.dumps(str(run.parent))}", f"train.name={json.dumps(run.name)}"]   # TOML strings
    cfg = with_overrides(saved, [*items, *where])
    if recipe is not None:   # the recipe the run was started with, or one building the same model
        name, wanted = recipe
        if wanted.model.n_classes == 0:
            wanted.model.n_classes = saved.model.n_classes   # 0 = from the dataset: what the run resolved
        refuse_model_change(run, saved.model, wanted.model, f"--recipe {name}")
    refuse_model_change(run, saved.model, cfg.model, "the --set options")
    changed = [f"{k} {a} -> {b}" for k, a, b in config_differences(saved, cfg)
               if k not in ("train.out_dir", "train.name")]
    return cfg, (f"continuing {run} from {checkpoint.name} with its saved config"
                 + (f"; changed: {', '.join(changed)}" if changed else ""))


# ---------------------------------------------------------------------------------------------
# A run belongs to its data


def data_record(data_path: str, fingerprint: str, n_images: int) -> dict[str, Any]:
    """What a checkpoint remembers of the data its run trains on (state.pt's "data")."""
    return {"path": data_path, "fingerprint": fingerprint, "images": n_images}


def check_same_data(run_dir: Path, saved: dict[str, Any] | None, now: dict[str, Any]) -> None:
    """A run belongs to its data: continuing it on other images (by content, wherever they are) is refused in one
    line naming both and the --name that starts a new run. Checkpoints written before runs recorded it pass."""
    if not saved or saved.get("fingerprint") == now["fingerprint"]:
        return
    from smallgan.data import PREPARED_SUFFIX

    stem = Path(str(now["path"]).split(":")[-1]).name.removesuffix(PREPARED_SUFFIX) or "data"
    raise SmallganError(
        f"{run_dir} was trained on {saved['path']} ({saved['images']} images, data {saved['fingerprint'][:8]}), "
        f"not on {now['path']} ({now['images']} images, data {now['fingerprint'][:8]}): a run belongs to its data; "
        f"start a new run with --name {run_dir.name}-{stem} (or replace this one with --overwrite)")
