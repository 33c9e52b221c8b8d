"""Exponential moving average of the generator's weights (BigGAN appendix B; Karras et al. 2018), and the
preparation that makes the averaged weights a generator one can sample from."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from smallgan.layers.spectral_norm import converge_power_iteration_


@dataclass(frozen=True)
class HalfLife:
    """EMA decay per iteration from a half-life in images (StyleGAN2-ADA's ema_kimg and ema_rampup; EDM's
    ema_halflife_kimg): the averaging horizon stays put when the batch or the number of processes changes.

    With n images per iteration, decay = 0.5 ** (n / halflife), the half-life in images being
    ``min(halflife_kimg x 1000, images so far x rampup)`` when `rampup` is set: early in a run, whose weights
    move fast, the average then spans a fixed share of the run instead of averaging in stale weights. Until
    `start_kimg` the average is a copy of G (decay 0), as the BigGAN authors start averaging at 20k iterations.
    """

    halflife_kimg: float
    images_per_step: int      # real images through D per iteration (batch x d_steps), the unit of kimg
    rampup: float = 0.0       # 0 = off
    start_kimg: float = 0.0

    def __call__(self, step: int) -> float:
        """The decay of the update that completes iteration `step` (1 for the first)."""
        images = step * self.images_per_step
        if images < round(self.start_kimg * 1000):
            return 0.0
        halflife = self.halflife_kimg * 1000
        if self.rampup > 0:
            halflife = min(halflife, images * self.rampup)
        return 0.5 ** (self.images_per_step / max(halflife, 1e-8))


class EMA:
    """Keeps `shadow`, an averaged copy of a model.

    Before `start` steps the shadow simply copies the model (averaging the first, fast-moving weights
    only slows convergence: the authors start at 20k iterations). After it, parameters follow
    ``shadow = decay * shadow + (1 - decay) * param``, `decay` being a number or a function of the step
    (:class:`HalfLife`; a decay of 0 copies too). Buffers (spectral-norm vectors, BatchNorm statistics)
    are copied from the model: they were computed for the model's weights, not the averaged ones, so the
    shadow is only a store of averaged weights; :func:`prepare_for_sampling` gives it its own vectors and
    statistics before anything samples from it.
    """

    def __init__(self, model: nn.Module, decay: float | Callable[[int], float], start: int = 0) -> None:
        self.decay = decay
        self.start = start
        self.shadow = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        params = [p for p in model.parameters()]
        shadow_params = [p for p in self.shadow.parameters()]
        decay = self.decay(step) if callable(self.decay) else self.decay
        if step < self.start or decay == 0.0:
            torch._foreach_copy_(shadow_params, params)
        else:
            # lerp(shadow, p, 1 - decay) == decay * shadow + (1 - decay) * p, fused over all tensors.
            torch._foreach_lerp_(shadow_params, params, 1.0 - decay)
        # Buffers (BatchNorm statistics, spectral-norm vectors) are copied, not averaged: one foreach call.
        torch._foreach_copy_(list(self.shadow.buffers()), list(model.buffers()))

    def state_dict(self) -> dict:
        return self.shadow.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.shadow.load_state_dict(state)


def prepare_for_sampling(generator: nn.Module, *, stats_images: int = 512, batch_size: int = 64,
                         seed: int = 0) -> nn.Module:
    """A copy of an averaged generator with its own spectral-norm vectors and BatchNorm statistics.

    The averaged weights W_ema differ from the weights G's u, v were iterated on, so sigma(W_ema) needs its
    own power iteration (started from G's vectors); and G's running statistics describe G's activations, not
    the averaged network's, so they are re-estimated as standing statistics (BigGAN section 3.1 and its
    "standing stats" option) over about `stats_images` generated images. What users sample, what FID sees and what
    ``generator.safetensors`` holds is this copy. Deterministic (the latents come from `seed`), and the
    global RNG is untouched, so training is unaffected.
    """
    from smallgan.sampling.generator import standing_statistics

    prepared = _without_sync_batchnorm(copy.deepcopy(generator)).eval().requires_grad_(False)
    converge_power_iteration_(prepared)
    standing_statistics(prepared, max(1, -(-stats_images // batch_size)), batch_size=batch_size, seed=seed)
    return prepared


def _without_sync_batchnorm(module: nn.Module) -> nn.Module:
    """SyncBatchNorm layers (multi-GPU G) as plain BatchNorm2d with the same state: the sampling copy is made on
    one process, where a SyncBatchNorm in train mode would wait for the others (same state-dict keys)."""
    for name, child in module.named_children():
        if isinstance(child, nn.SyncBatchNorm):
            plain = nn.BatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                   child.track_running_stats).to(next(child.buffers()).device)
            plain.load_state_dict(child.state_dict())
            setattr(module, name, plain)
        else:
            _without_sync_batchnorm(child)
    return module
