"""The overfitting gauge r_t and adaptive augmentation strength (StyleGAN2-ADA, Karras et al. 2020, sec. 3).

r_t = E[sign(D(x_real))]: near 0 while D cannot tell training images from fakes, near 1 once it is sure of
every training image, which on a small set means it has memorised them. It is measured on the real logits
that D's step computes anyway (no extra forward) and logged always. With ``train.ada_target`` > 0 the
probability p with which DiffAugment applies each op moves every ``ada_interval`` iterations by
``sign(r_t - target) x images / (ada_kimg x 1000)``, clamped to [0, ada_p_max]; r_t is summed over every
process first, so p is the same number everywhere. As in StyleGAN2-ADA p starts at 0 (unless augment_p is
given), and the cap (0.8 by default) keeps it below where DiffAugment's ops start to leak into G.

Everything stays on the device: the sums are device tensors, the adjustment is device arithmetic and an
all-reduce, so the training step never waits for the host. State (p and the sums since the last adjustment)
is checkpointed, so a resumed run adjusts at the same steps to the same values.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from smallgan.config import TrainConfig


class AdaptiveAugment:
    def __init__(self, t: TrainConfig, images_per_step: int, accelerator: Any) -> None:
        device = accelerator.device
        self.accelerator = accelerator
        self.target, self.interval = t.ada_target, t.ada_interval
        self.adaptive = t.ada_target > 0
        # p moves by at most this much per adjustment: 1 per ada_kimg thousand real images through D.
        self.step_size = images_per_step * t.ada_interval / (t.ada_kimg * 1000)
        self.p_max = t.ada_p_max
        self.p = torch.tensor(t.augment_start(), device=device)
        # What DiffAugment applies: the adapted device scalar, else the fixed number (at 1 no masks are drawn).
        self.strength: Tensor | float = self.p if self.adaptive else t.augment_start()
        self._pending = torch.zeros(2, device=device)    # sum of sign(D(real)), count: since the last adjustment
        self._iteration = torch.zeros(2, device=device)  # the same for this iteration only (the logs)

    def observe(self, real_logits: Tensor) -> None:
        """Account for D's logits on a micro-batch of real images (after augmentation, as D saw them)."""
        logits = real_logits.detach()
        # A non-finite logit (a step the loop will skip) votes 0 rather than making p NaN for good.
        self._iteration[0] += logits.float().sign().nan_to_num(0.0).sum()
        self._iteration[1] += logits.numel()

    def end_iteration(self, step: int) -> dict[str, Tensor]:
        """After iteration `step` (1-based): adjust p when it is due; returns this process's r_t and p (device
        scalars) for the logs."""
        r_t = self._iteration[0] / self._iteration[1].clamp_min(1)
        self._pending += self._iteration
        self._iteration.zero_()
        if self.adaptive and step % self.interval == 0:
            total = self.accelerator.reduce(self._pending.clone(), reduction="sum")
            r_all = total[0] / total[1].clamp_min(1)
            self.p.add_(torch.sign(r_all - self.target) * self.step_size).clamp_(0.0, self.p_max)
            self._pending.zero_()
        return {"r_t": r_t, "augment_p": self.p.clone()}

    def state_dict(self) -> dict[str, Any]:
        """Every process must call it: the pending sums are summed over processes (only their total is ever
        used), so a run resumed on another number of processes adjusts to the same p."""
        pending = self.accelerator.reduce(self._pending.clone(), reduction="sum")
        return {"p": self.p.item(), "pending": pending.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.p.fill_(state["p"])
        # The total goes to the main process; the others restart from zero, so the next reduce sums the same.
        self._pending.zero_()
        if self.accelerator.is_main_process:
            self._pending.copy_(torch.tensor(state["pending"]))
