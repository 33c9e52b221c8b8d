"""A run's progress and its checkpoints: the counters, which checkpoint ``--resume`` means, and saving and
loading everything a resumed run needs to replay the same trajectory (weights, optimisers, loss scalers,
counters, and each process's position in the real-image stream)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from rich.console import Console
from torch import nn

from smallgan import checkpoint as ckpt
from smallgan.config import Config, ModelConfig
from smallgan.errors import SmallganError
from smallgan.sampling.export import GENERATOR_FILE, export_generator
from smallgan.training.build import Parts


@dataclass
class Counters:
    step: int = 0                # completed iterations (G steps)
    real_seen: int = 0           # real images consumed by this process (the data stream position)
    skipped_d: int = 0           # D steps skipped for non-finite gradients (incl. fp16 overflow)
    skipped_g: int = 0
    bad_streak: int = 0          # consecutive iterations with a skipped step
    rollbacks: int = 0           # times the run diverged and rolled back: also the retry's seed offset (rollback.py)
    elapsed: float = 0.0         # training seconds over all sessions of this run


# Updated on the device every step and read at log intervals and checkpoints only: no host sync per step.
DEVICE_COUNTERS = ("skipped_d", "skipped_g", "bad_streak")


def checkpoint_to_resume(resume: str | Path) -> Path:
    """The checkpoint a --resume path names: a run folder's latest checkpoint, or a checkpoint folder itself."""
    path = Path(resume)
    if (path / "checkpoints").is_dir() or (path / "config.json").is_file() and not (path / "state.pt").is_file():
        latest = ckpt.latest_checkpoint(path)
        if latest is None:
            raise SmallganError(f"--resume {resume}: this run folder has no checkpoint yet; start it without --resume")
        return latest
    if not path.is_dir():
        raise SmallganError(f"--resume {resume}: no such folder; pass a run folder (runs/NAME) or one of its "
                            "checkpoints (runs/NAME/checkpoints/step-*)")
    return path


def resume_path(run_dir: Path, resume: str | None, overwrite: bool, accelerator: Any,
                console: Console) -> Path | None:
    """The checkpoint to resume from (None: a new run). `resume`: "auto" (the CLI's default) continues the latest
    checkpoint of `run_dir` when there is one, else starts; "latest" the same, with a note when there is none;
    a run folder or a checkpoint folder continues that. None starts a new run and refuses an existing one.
    `overwrite` starts over whatever `resume` says, removing the run's checkpoints."""
    existing = ckpt.latest_checkpoint(run_dir)
    if overwrite or resume in (None, ""):
        if existing is not None and not overwrite:
            raise SmallganError(
                f"run folder {run_dir} already has checkpoints; continue it with --resume, start over with "
                "--overwrite, or pick another --name"
            )
        if existing is not None and accelerator.is_main_process:
            shutil.rmtree(ckpt.checkpoint_dir(run_dir), ignore_errors=True)
        accelerator.wait_for_everyone()
        return None
    if resume in ("auto", "latest"):
        if existing is None and resume == "latest" and accelerator.is_main_process:
            console.print(f"note: no checkpoint in {run_dir} yet; starting a new run")
        return existing
    return checkpoint_to_resume(resume)


class TrainState:
    """The counters and the parts a checkpoint holds, and their save and load."""

    def __init__(self, parts: Parts, accelerator: Any, run_dir: Path, console: Console) -> None:
        self.parts, self.accelerator, self.run_dir, self.console = parts, accelerator, run_dir, console
        self.is_main = accelerator.is_main_process
        self.counters = Counters()
        self.on_device: dict[str, torch.Tensor] = {}
        self._to_device()

    def _to_device(self) -> None:
        device = self.accelerator.device
        self.on_device = {name: torch.tensor(float(getattr(self.counters, name)), device=device)
                          for name in DEVICE_COUNTERS}

    def sync(self) -> Counters:
        """Copy the device-side skip counters into `counters` (a host sync: log intervals and checkpoints)."""
        for name, value in self.on_device.items():
            setattr(self.counters, name, int(value.item()))
        return self.counters

    def load(self, path: Path, model_cfg: ModelConfig, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """Restore a checkpoint trained with the same model settings (and, given `data`, on the same data: see
        check_same_data); returns its state (optimisers, counters...)."""
        weights, state, saved_cfg = ckpt.load_checkpoint(path)
        if data is not None:
            check_same_data(path.parent.parent, state, data)
        if saved_cfg.model != model_cfg:
            diff = [k for k in vars(saved_cfg.model) if getattr(saved_cfg.model, k) != getattr(model_cfg, k)]
            raise SmallganError(
                f"checkpoint {path} was trained with other model settings ({', '.join('model.' + k for k in diff)}); "
                "resume with the same recipe and --set options"
            )
        p = self.parts
        for name, module in (("G", p.G), ("D", p.D), ("G_ema", p.ema.shadow)):
            if name not in weights:
                raise SmallganError(f"checkpoint {path} has no {name}.safetensors; it is incomplete")
            ckpt.load_into(module, weights[name], path / f"{name}.safetensors")
        p.g_opt.load_state_dict(state["g_opt"])
        p.d_opt.load_state_dict(state["d_opt"])
        p.g_scaler.load_state_dict(state["g_scaler"])
        p.d_scaler.load_state_dict(state["d_scaler"])
        c = state["counters"]
        self.counters = Counters(**{k: c[k] for k in vars(Counters()) if k in c})
        acc = self.accelerator
        if "real_seen_by_rank" in state and acc.num_processes == state.get("world", 1):
            self.counters.real_seen = state["real_seen_by_rank"][acc.process_index]
        self._to_device()
        if self.is_main:
            self.console.print(f"resumed from {path} at step {self.counters.step} (--overwrite starts over)")
        return state

    def save(self, cfg: Config, class_names: list[str], sampling_generator: Callable[[], nn.Module],
             extra: dict[str, Any]) -> Path | None:
        """Every process takes part (gathers the stream positions); only the main one writes. `extra`: more
        entries of state.pt; `sampling_generator`: the EMA generator as exported, made on the main process."""
        self.sync()
        seen = torch.tensor([self.counters.real_seen], device=self.accelerator.device)
        real_seen_by_rank = self.accelerator.gather(seen).tolist()
        if not self.is_main:
            return None
        p = self.parts
        state = {
            "g_opt": p.g_opt.state_dict(), "d_opt": p.d_opt.state_dict(),
            "g_scaler": p.g_scaler.state_dict(), "d_scaler": p.d_scaler.state_dict(),
            "counters": vars(self.counters), "real_seen_by_rank": real_seen_by_rank,
            "world": self.accelerator.num_processes, **extra,
        }
        # G_ema is saved prepared for sampling: its parameters are the average that training resumes from, and
        # its buffers are overwritten from G at the next EMA update anyway.
        G_ema = sampling_generator()
        weights = {"G": p.G.state_dict(), "D": p.D.state_dict(), "G_ema": G_ema.state_dict()}
        path = ckpt.save_checkpoint(self.run_dir, self.counters.step, weights, state, cfg,
                                    cfg.train.keep_ckpts, class_names=class_names)
        export_generator(self.run_dir / GENERATOR_FILE, G_ema, cfg, class_names, self.counters.step)
        return path


def data_record(data_path: str, fingerprint: str, n_images: int) -> dict[str, Any]:
    """What a checkpoint remembers of the data its run trains on (state.pt's "data")."""
    return {"path": data_path, "fingerprint": fingerprint, "images": n_images}


def check_same_data(run_dir: Path, resumed: dict[str, Any] | None, now: dict[str, Any]) -> None:
    """A run belongs to its data: continuing it on other images (by content, wherever they are) is refused in one
    line naming both and the --name that starts a new run. Checkpoints written before runs recorded it pass."""
    saved = (resumed or {}).get("data")
    if not saved or saved.get("fingerprint") == now["fingerprint"]:
        return
    from smallgan.data import PREPARED_SUFFIX

    stem = Path(str(now["path"]).split(":")[-1]).name.removesuffix(PREPARED_SUFFIX) or "data"
    raise SmallganError(
        f"{run_dir} was trained on {saved['path']} ({saved['images']} images, data {saved['fingerprint'][:8]}), "
        f"not on {now['path']} ({now['images']} images, data {now['fingerprint'][:8]}): a run belongs to its data; "
        f"start a new run with --name {run_dir.name}-{stem} (or replace this one with --overwrite)")
