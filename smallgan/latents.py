"""Latent and label sampling, including the truncation trick (BigGAN section 3.1).

Truncation here is exact: entries of z with |z| > threshold are redrawn from N(0, 1) until none remain, so z
follows the truncated normal (the authors' "truncation curves" scale the noise std instead, which is a
different distribution).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from smallgan.errors import SmallganError

MAX_DRAW = 1 << 22   # candidates per resampling round (16 MB): tiny thresholds take more rounds, not more memory


def truncated_normal(
    shape: Sequence[int] | torch.Size, threshold: float | None, generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """N(0, 1) samples conditioned on |z| <= threshold; threshold None or <= 0 means no truncation."""
    z = torch.randn(tuple(shape), generator=generator, device=device)
    if threshold is None or threshold <= 0:
        return z
    flat = z.view(-1)
    bad = (flat.abs() > threshold).nonzero().squeeze(1)
    accept = math.erf(threshold / math.sqrt(2.0))   # P(|z| <= t): draw enough per round to finish in ~1-2 rounds
    while bad.numel():
        n_draw = min(int(bad.numel() / accept * 1.2) + 16, MAX_DRAW)
        draw = torch.randn(n_draw, generator=generator, device=flat.device)
        ok = draw[draw.abs() <= threshold][: bad.numel()]
        flat[bad[: ok.numel()]] = ok
        bad = bad[ok.numel():]
    return z


def sample_latents(
    n: int, z_dim: int, n_classes: int, *, trunc: float = 0.0, generator: torch.Generator | None = None,
    device: torch.device | str | None = None, classes: int | Sequence[int] | Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """``(z: (n, z_dim) float, y: (n,) long)``; y uniform over classes unless ``classes`` is given.

    ``classes`` may be one class for all samples or n labels.
    """
    z = truncated_normal((n, z_dim), trunc, generator=generator, device=device)
    if classes is None:
        y = torch.randint(n_classes, (n,), generator=generator, device=device)
    else:
        y = torch.as_tensor(classes, dtype=torch.long, device=device).reshape(-1)
        if y.numel() == 1:
            y = y.expand(n).clone()
        if y.numel() != n:
            raise SmallganError(f"got {y.numel()} class labels for {n} samples; give one label or {n}")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= n_classes):
            raise SmallganError(f"class labels must be in 0..{n_classes - 1}, got {y.tolist()[:8]}")
    return z, y

