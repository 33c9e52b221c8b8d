"""Exponential moving average of the generator's weights (BigGAN appendix B; Karras et al. 2018)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Keeps `shadow`, an averaged copy of a model.

    Before `start` steps the shadow simply copies the model (averaging the first, fast-moving weights
    only slows convergence: the authors start at 20k iterations). After it, parameters follow
    ``shadow = decay * shadow + (1 - decay) * param``; buffers (BatchNorm running statistics, spectral-norm
    vectors) are copied, so the shadow's statistics belong to the weights they were measured with.
    """

    def __init__(self, model: nn.Module, decay: float, start: int = 0) -> None:
        self.decay = decay
        self.start = start
        self.shadow = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        params = [p for p in model.parameters()]
        shadow_params = [p for p in self.shadow.parameters()]
        if step < self.start:
            torch._foreach_copy_(shadow_params, params)
        else:
            # lerp(shadow, p, 1 - decay) == decay * shadow + (1 - decay) * p, fused over all tensors.
            torch._foreach_lerp_(shadow_params, params, 1.0 - self.decay)
        for b_shadow, b in zip(self.shadow.buffers(), model.buffers()):
            b_shadow.copy_(b)

    def state_dict(self) -> dict:
        return self.shadow.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.shadow.load_state_dict(state)
