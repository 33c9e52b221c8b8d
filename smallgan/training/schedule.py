"""The run's length and intervals in iterations: the config's kimg (train.max_kimg, train.*_every_kimg: thousands
of real images through D) at this launch's real images per iteration, as StyleGAN2-ADA and EDM count them. The
loop and its reporter ask :func:`schedule` and nothing else of these settings."""

from __future__ import annotations

from dataclasses import dataclass

from smallgan.config import TrainConfig

__all__ = ["Schedule", "schedule"]


@dataclass(frozen=True)
class Schedule:
    """Iterations: the run's length, and how often each periodic event comes (0 = never, or only at the end)."""

    total: int     # the first iteration that reaches train.max_kimg
    log: int       # a log line (the last iteration logs too)
    sample: int    # a progress grid
    ckpt: int      # a checkpoint (the last iteration writes one too)
    eval: int      # FID/KID and best/
    sv: int        # top singular values (at a log line)

    def due(self, event: str, step: int) -> bool:
        """Whether `event` ("log", "sample", "ckpt", "eval", "sv") comes at iteration `step`."""
        every = getattr(self, event)
        return every > 0 and step % every == 0


def _every(kimg: float, images_per_step: int) -> int:
    """The nearest whole number of iterations, at least 1; 0 = off."""
    return max(1, round(kimg * 1000 / images_per_step)) if kimg > 0 else 0


def schedule(t: TrainConfig, images_per_step: int) -> Schedule:
    """`t`'s kimg in iterations of `images_per_step` real images through D (the launch's batch x d_steps).
    Exact for values given in steps (converted at the same batch), unless the batch was rounded to whole
    micro-batches (training/batch_plan.py): the images stay, the iterations follow."""
    return Schedule(total=-(-round(t.max_kimg * 1000) // images_per_step),
                    log=_every(t.log_every_kimg, images_per_step), sample=_every(t.sample_every_kimg, images_per_step),
                    ckpt=_every(t.ckpt_every_kimg, images_per_step), eval=_every(t.eval_every_kimg, images_per_step),
                    sv=_every(t.sv_every_kimg, images_per_step))
