"""How one optimiser step's images split over processes and micro-batches: train.batch on any number of devices.

Every process takes the same share (DDP averages the processes' gradients with equal weights) in micro-batches of
the same size (G's BatchNorm normalises each micro-batch with its own statistics). A micro-batch is never smaller
than ``min(train.micro_batch, 8)`` images: BatchNorm statistics of one or two images are noise, and many tiny
sequential forwards are slow. So when the batch does not split evenly, the per-process share is *rounded* (the
effective batch moves by a few images, within 2% for shares of 25 images or more) rather than cut into smaller
micro-batches, and the run line says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from smallgan.config import Config, ConfigError

__all__ = ["MIN_MICRO_BATCH", "TOLERANCE", "BatchPlan", "micro_batch_floor", "plan_batches"]

MIN_MICRO_BATCH = 8   # BatchNorm statistics need a few images; a recipe may ask for fewer (floor = its micro_batch)
TOLERANCE = 0.02      # the fewest accumulations whose batch is this close to train.batch win (else the closest)


@dataclass(frozen=True)
class BatchPlan:
    """How one optimiser step's images split over processes and micro-batches on this launch."""

    batch: int          # images per optimiser step, all processes together (train.batch, or rounded: see describe)
    micro_batch: int    # images per forward on one process (min(train.micro_batch, 8) <= it <= train.micro_batch)
    accumulation: int   # micro-batches per optimiser step on each process

    def rounding(self, cfg: Config) -> str:
        """For the run line: how far the batch moved from train.batch, or "" when it did not."""
        if self.batch == cfg.train.batch:
            return ""
        return f" (train.batch={cfg.train.batch} rounded to whole micro-batches: {self.batch - cfg.train.batch:+d})"

    def describe(self, cfg: Config, processes: int) -> str | None:
        """A note when the plan differs from what the recipe says, else None."""
        t = cfg.train
        if self.batch == t.batch and self.micro_batch == t.micro_batch:
            return None
        why = f"train.batch={t.batch} over {processes} process(es)"
        if self.batch != t.batch:
            share = t.batch / processes
            why += (f" is {share:.4g} images each: rounded to {self.batch // processes} so micro-batches stay "
                    f"whole (batch {self.batch}, {100 * (self.batch - t.batch) / t.batch:+.1f}%)")
        return (f"{why}; micro-batch {self.micro_batch} (train.micro_batch={t.micro_batch} is the most a device "
                f"takes) x {self.accumulation} accumulation x {processes} process(es) = {self.batch} images per step")


def micro_batch_floor(cfg: Config) -> int:
    """The smallest micro-batch a plan uses: min(train.micro_batch, 8)."""
    return min(cfg.train.micro_batch, MIN_MICRO_BATCH)


def plan_batches(cfg: Config, num_processes: int) -> BatchPlan:
    """train.batch images per step on `num_processes` processes, as ``micro x accumulation x processes``.

    The fewest accumulations (largest micro-batches, fewest sequential forwards) whose batch is within 2% of
    train.batch; when no plan comes that close (small batches over several processes), the closest one.
    """
    t, floor = cfg.train, micro_batch_floor(cfg)
    if t.batch < floor * num_processes:
        raise ConfigError(
            f"train.batch={t.batch} over {num_processes} processes is {t.batch / num_processes:.3g} images each, "
            f"fewer than the {floor} a micro-batch needs (min(train.micro_batch, {MIN_MICRO_BATCH}), for "
            f"BatchNorm statistics); set train.batch to at least {floor * num_processes}, use at most "
            f"{max(1, t.batch // floor)} processes, or lower train.micro_batch to accept smaller micro-batches")
    share = t.batch / num_processes
    candidates = []
    for accumulation in range(max(1, math.floor(share / t.micro_batch)), math.ceil(share / floor) + 1):
        micro = min(max(round(share / accumulation), floor), t.micro_batch)
        candidates.append(BatchPlan(micro * accumulation * num_processes, micro, accumulation))
    close = [p for p in candidates if abs(p.batch - t.batch) <= TOLERANCE * t.batch]
    return close[0] if close else min(candidates, key=lambda p: abs(p.batch - t.batch))
