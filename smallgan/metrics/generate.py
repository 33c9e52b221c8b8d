"""A ``sample_fn`` over a generator, for :func:`smallgan.metrics.evaluate_generator`.

Latents for the batch starting at image ``start`` come from a generator seeded with (seed, start), so the
images do not depend on how many processes share the work (each asks for its own start indices).
"""

from __future__ import annotations

import torch
from torch import nn

from smallgan.metrics.evaluate import SampleFn
from smallgan.sampling.images import to_uint8


def generator_sample_fn(
    generator: nn.Module,
    n_classes: int,
    *,
    seed: int = 0,
    trunc: float = 0.0,
    device: torch.device | str | None = None,
) -> SampleFn:
    """``G(z, y)`` with z ~ N(0, I) (truncated at ``trunc`` when > 0) and uniformly drawn classes.

    The caller puts the generator in eval mode (BigGAN samples with running BatchNorm statistics).
    """
    from smallgan.latents import sample_latents

    device = torch.device(device) if device is not None else next(generator.parameters()).device

    @torch.no_grad()
    def sample(batch: int, start: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed * 1_000_003 + start)
        z, y = sample_latents(batch, generator.z_dim, n_classes, trunc=trunc, generator=g)
        return to_uint8(generator(z.to(device), y.to(device)))

    return sample
