"""How one optimiser step's images split over processes and micro-batches: train.batch on any number of devices."""

from __future__ import annotations

from dataclasses import dataclass

from smallgan.config import Config, ConfigError

__all__ = ["BatchPlan", "plan_batches"]


@dataclass(frozen=True)
class BatchPlan:
    """How one optimiser step's images split over processes and micro-batches on this launch."""

    batch: int          # images per optimiser step, all processes together (train.batch when it splits evenly)
    micro_batch: int    # images per forward on one process (<= train.micro_batch)
    accumulation: int   # micro-batches per optimiser step on each process

    def describe(self, cfg: Config, processes: int) -> str | None:
        """A note when the plan differs from what the recipe says, else None."""
        t = cfg.train
        if self.batch == t.batch and self.micro_batch == t.micro_batch:
            return None
        why = f"train.batch={t.batch} over {processes} process(es)"
        if self.batch != t.batch:
            why += f" does not split evenly: batch {self.batch}"
        return (f"{why}; micro-batch {self.micro_batch} (train.micro_batch={t.micro_batch} is the most a device "
                f"takes) x {self.accumulation} accumulation x {processes} process(es) = {self.batch} images per step")


def plan_batches(cfg: Config, num_processes: int) -> BatchPlan:
    """The same optimisation on any number of processes: train.batch images per step, split evenly, each
    process accumulating micro-batches of the largest size <= train.micro_batch that divides its share."""
    t = cfg.train
    if t.batch < num_processes:
        raise ConfigError(f"train.batch={t.batch} is smaller than the {num_processes} processes (each needs at least "
                          f"one image per step); set train.batch to at least {num_processes}")
    share = t.batch // num_processes
    micro = max(m for m in range(1, min(t.micro_batch, share) + 1) if share % m == 0)
    return BatchPlan(batch=share * num_processes, micro_batch=micro, accumulation=share // micro)
