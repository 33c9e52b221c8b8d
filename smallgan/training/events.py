"""What a run reports between iterations: loss averages, img/s and the top singular values of G and D every
train.log_every_kimg, to ``metrics.jsonl``, the Accelerate trackers and the console, after checking that
the run has not diverged. Losses and skip counters stay on the device in between, so these log intervals are
the loop's only regular host syncs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import Tensor, nn

from smallgan import runs
from smallgan.config import Config
from smallgan.errors import TrainingDiverged
from smallgan.layers.spectral_norm import top_singular_values
from smallgan.training.schedule import Schedule
from smallgan.training.state import Counters
from smallgan.training.stats import MetricsLog, ProgressLine, SpikeDetector, Throughput, log_line
from smallgan.training.tracking import log_scalars, peak_memory_mb


class Reporter:
    """Log intervals of one training session; `log` is None on all processes but the main one."""

    def __init__(self, cfg: Config, accelerator: Any, run_dir: Path, *, console: Console, start_step: int,
                 every: Schedule, images_per_step: int, loss_keys: list[str],
                 networks: tuple[nn.Module, nn.Module]) -> None:
        self.t, self.accelerator, self.run_dir, self.console = cfg.train, accelerator, run_dir, console
        self.is_main = accelerator.is_main_process
        self.every, self.total_steps, self.images_per_step = every, every.total, images_per_step
        self.G, self.D = networks
        self.log = MetricsLog(run_dir / "metrics.jsonl") if self.is_main else None
        self.progress = ProgressLine(console, every.total, start_step, enabled=self.is_main)
        self.spikes, self.speed = SpikeDetector(), Throughput()
        self.sums = {k: torch.zeros((), device=accelerator.device) for k in loss_keys}
        self.since_log = 0

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.close()
        if self.log is not None:
            self.log.close()

    def add(self, losses: dict[str, Tensor], step: int) -> bool:
        """Account for iteration `step`, just done (device tensors, no host sync); returns whether it ends a log
        interval, when the loop calls :meth:`report`."""
        for k, v in self.sums.items():
            v += losses[k]
        self.since_log += 1
        self.speed.add(self.images_per_step)
        due = self.every.due("log", step) or step == self.total_steps
        if not due:
            self.progress.update(step, "", log_line=False)
        return due

    def report(self, c: Counters) -> None:
        """The log interval ending now, with the counters (synced from the device); raises TrainingDiverged
        after train.max_bad_steps skipped iterations in a row (skipped steps never touched the weights)."""
        t = self.t
        if c.bad_streak >= t.max_bad_steps:
            raise TrainingDiverged(
                f"{c.bad_streak} consecutive steps with non-finite gradients at step {c.step}; "
                f"stopped. Last good checkpoint: {runs.latest_checkpoint(self.run_dir) or 'none'}. "
                "Lower the learning rates, or use train.precision=bf16 instead of fp16"
            )
        record: dict[str, Any] = {k: (v / self.since_log).item() for k, v in self.sums.items()}
        # img/s counts real images through D (batch x d_steps per iteration), like kimg.
        img_s = self.speed.rate()
        record.update(step=c.step, kimg=c.step * self.images_per_step / 1000, img_s=img_s,
                      sec_kimg=1000 / img_s if img_s > 0 else 0.0,
                      eta_s=(self.total_steps - c.step) * self.images_per_step / img_s if img_s > 0 else 0.0,
                      peak_mem_mb=round(peak_memory_mb(self.accelerator.device), 1),
                      seconds=round(c.elapsed, 2), skipped_d=c.skipped_d, skipped_g=c.skipped_g)
        for v in self.sums.values():
            v.zero_()
        self.since_log = 0
        if self.every.due("sv", c.step):
            record.update(self._singular_values(c.step))
        if self.log is not None:
            self.log.write(record)
        log_scalars(self.accelerator, record, c.step)
        self.progress.update(c.step, log_line(record, self.total_steps), log_line=True)

    def rewound(self, step: int) -> None:
        """After a rollback to `step` (training/rollback.py): forget what the abandoned iterations added up."""
        for v in self.sums.values():
            v.zero_()
        self.since_log = 0
        self.spikes, self.speed = SpikeDetector(), Throughput()
        self.progress.update(step, "rolled back", log_line=False)

    def _singular_values(self, step: int) -> dict[str, Any]:
        values = {f"G.{k}": v for k, v in top_singular_values(self.G).items()}
        values.update({f"D.{k}": v for k, v in top_singular_values(self.D).items()})
        jumped = self.spikes.update(values)
        if jumped and self.is_main:
            self.console.print(
                f"[yellow]warning:[/] top singular value jumped in {', '.join(jumped[:4])} at step "
                f"{step}: BigGAN's sign of imminent collapse (keep the last checkpoints)"
            )
        return {"sv_G_max": max((v for k, v in values.items() if k.startswith("G.")), default=0.0),
                "sv_D_max": max((v for k, v in values.items() if k.startswith("D.")), default=0.0),
                "sv": values}


def flat_scalars(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as the flat scalar dict trackers take (``train.batch``: 64)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_scalars(v, key + "."))
        elif isinstance(v, (int, float, str, bool)):
            out[key] = v
        else:
            out[key] = str(v)
    return out
