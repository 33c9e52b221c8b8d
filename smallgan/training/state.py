"""The training state, with one owner: everything a checkpoint holds and a resumed run continues from (G, D,
G's EMA, their optimisers and loss scalers, the counters, the few-shot state: ADA's p and LeCam's anchors,
the best evaluation so far, the data the run belongs to), with ``state_dict`` / ``load_state_dict``; and the
checkpoint save and resume of that state (rollback, rollback.py, is one more function of it).

A resumed run replays the same trajectory: the counters say how far the run got and where each process is in
the real-image stream, and every random draw of an iteration derives from them (loop.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from smallgan import checkpoint as ckpt
from smallgan import runs
from smallgan.config import Config, ModelConfig
from smallgan.ema import EMA
from smallgan.metrics.best import BestTracker
from smallgan.regularizers import LeCam
from smallgan.training.ada import AdaptiveAugment
from smallgan.training.phases import PhaseResult


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


class TrainState:
    """The trained networks, their optimisers and scalers, the counters and the few-shot state of one process."""

    def __init__(self, G: nn.Module, D: nn.Module, ema: EMA, optimizers: tuple[torch.optim.Optimizer, ...],
                 scalers: tuple[torch.amp.GradScaler, ...], *, ada: AdaptiveAugment, lecam: LeCam | None,
                 data: dict[str, Any], accelerator: Any) -> None:
        self.G, self.D, self.ema = G, D, ema
        self.g_opt, self.d_opt = optimizers
        self.g_scaler, self.d_scaler = scalers
        self.ada, self.lecam = ada, lecam
        self.best = BestTracker()
        self.data = data                        # runs.data_record of the images this run trains on
        self.accelerator = accelerator
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

    def observe(self, result: PhaseResult) -> None:
        """Account for a D step's logits: ADA's r_t gauge, then LeCam's anchors for the next step."""
        for logits in result.real_logits:
            self.ada.observe(logits)
        if self.lecam is not None:
            self.lecam.update(result.real_logits, result.fake_logits)

    # ------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """state.pt of a checkpoint. Every process must call it: the stream positions and ADA's pending sums are
        gathered over the processes."""
        self.sync()
        seen = torch.tensor([self.counters.real_seen], device=self.accelerator.device)
        real_seen_by_rank = self.accelerator.gather(seen).tolist()
        fewshot = {"ada": self.ada.state_dict(), **({"lecam": self.lecam.state_dict()} if self.lecam else {})}
        return {
            "g_opt": self.g_opt.state_dict(), "d_opt": self.d_opt.state_dict(),
            "g_scaler": self.g_scaler.state_dict(), "d_scaler": self.d_scaler.state_dict(),
            "counters": vars(self.counters), "real_seen_by_rank": real_seen_by_rank,
            "world": self.accelerator.num_processes, "best": self.best.state_dict(), "fewshot": fewshot,
            "data": self.data,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Optimisers, scalers, counters (this process's stream position when the number of processes is the
        same), few-shot state and the best evaluation of a state.pt; the weights are :meth:`load_weights`'."""
        self.g_opt.load_state_dict(state["g_opt"])
        self.d_opt.load_state_dict(state["d_opt"])
        self.g_scaler.load_state_dict(state["g_scaler"])
        self.d_scaler.load_state_dict(state["d_scaler"])
        c = state["counters"]
        self.counters = Counters(**{k: c[k] for k in vars(Counters()) if k in c})
        acc = self.accelerator
        if "real_seen_by_rank" in state and acc.num_processes == state.get("world", 1):
            self.counters.real_seen = state["real_seen_by_rank"][acc.process_index]
        self._to_device()
        fewshot = state.get("fewshot", {})
        if "ada" in fewshot:
            self.ada.load_state_dict(fewshot["ada"])
        if self.lecam is not None and "lecam" in fewshot:
            self.lecam.load_state_dict(fewshot["lecam"])
        if state.get("best"):
            self.best.load_state_dict(state["best"])

    def weights(self, G_ema: nn.Module) -> dict[str, dict[str, torch.Tensor]]:
        """The checkpoint's weights; `G_ema`: the EMA generator prepared for sampling (its parameters are the
        average that training resumes from, its buffers are overwritten from G at the next EMA update)."""
        return {"G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": G_ema.state_dict()}

    def load_weights(self, weights: dict[str, dict[str, torch.Tensor]], path: Path) -> None:
        ckpt.missing_weights(path, weights)
        for name, module in (("G", self.G), ("D", self.D), ("G_ema", self.ema.shadow)):
            ckpt.load_into(module, weights[name], path / f"{name}.safetensors")


# ---------------------------------------------------------------------------------------------
# Checkpoints of the state


def save_checkpoint(state: TrainState, run_dir: Path, cfg: Config, class_names: list[str],
                    G_ema: nn.Module) -> Path | None:
    """Every process takes part (gathers the stream positions); only the main one writes the checkpoint and
    the generator export. Returns the checkpoint folder (None on the other processes)."""
    saved = state.state_dict()
    if not state.accelerator.is_main_process:
        return None
    path = runs.save_checkpoint(run_dir, state.counters.step, state.weights(G_ema), saved, cfg,
                                cfg.train.keep_ckpts, class_names=class_names)
    ckpt.export_generator(run_dir / ckpt.GENERATOR_FILE, G_ema, cfg, class_names, state.counters.step)
    return path


def load_checkpoint(state: TrainState, path: Path, model_cfg: ModelConfig, *, same_data: bool = True) -> str:
    """Restore the checkpoint folder `path` into `state`: refused when it was trained with other model
    settings or (`same_data`) on other data. Returns a note for the user."""
    weights, saved, saved_cfg = ckpt.load_checkpoint(path)
    run = path.parent.parent
    if same_data:
        runs.check_same_data(run, saved.get("data"), state.data)
    runs.refuse_model_change(run, saved_cfg.model, model_cfg, f"other model settings than {path.name}'s")
    state.load_weights(weights, path)
    state.load_state_dict(saved)
    return f"resumed from {path} at step {state.counters.step} (--overwrite starts over)"

