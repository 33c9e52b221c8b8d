"""The paper's sampling figures: the truncation sweep (BigGAN figure 2a) and interpolation sheets (figure 8).

Each function returns uint8 images in row-major sheet order; :mod:`smallgan.sampling.images` lays them out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from PIL import Image
from torch import Tensor

from smallgan.errors import SmallganError
from smallgan.sampling.images import make_grid, to_pil

if TYPE_CHECKING:
    from smallgan.sampling.generator import ClassSpec, Progress, TrainedGenerator


def _offset(progress: Progress | None, done_before: int, total: int) -> Progress | None:
    if progress is None:
        return None
    return lambda done, _n: progress(done_before + done, total)


def truncation_sweep(
    G: TrainedGenerator, thresholds: Sequence[float], n: int, *, seed: int = 0, classes: ClassSpec = None,
    nrow: int | None = None, batch_size: int = 64, standing_stats: int = 0, progress: Progress | None = None,
) -> list[Tensor]:
    """n images per threshold, all from one base draw of z and the same classes.

    Only the entries of z beyond each threshold are redrawn, so the sheets show the same samples losing
    variety and gaining fidelity as the threshold shrinks (2, 1, 0.5, 0.04 in the paper). With
    ``standing_stats`` K > 0, BatchNorm statistics are re-estimated at each threshold before its images
    (the generator keeps those of the last threshold).
    """
    if not thresholds:
        raise SmallganError("--trunc-sweep needs at least one threshold, e.g. 2,1,0.5,0.04")
    y = G.labels(n, classes, nrow)
    total = n * len(thresholds)
    out = []
    for i, t in enumerate(thresholds):
        if standing_stats:
            G.standing_stats(standing_stats, t, seed=seed)
        out.append(G.generate(G.latents(n, t, seed), y, batch_size=batch_size,
                              progress=_offset(progress, i * n, total)))
    return out


def _lerp_weights(steps: int) -> Tensor:
    if steps < 2:
        raise SmallganError(f"--interp needs at least 2 steps (the two end points), got {steps}")
    return torch.linspace(0.0, 1.0, steps)


def latent_interpolation(
    G: TrainedGenerator, rows: int, steps: int, *, trunc: float = 0.0, seed: int = 0, classes: ClassSpec = None,
    batch_size: int = 64, progress: Progress | None = None,
) -> Tensor:
    """rows x steps images: each row walks linearly in z between two random latents, its class held fixed."""
    w = _lerp_weights(steps)[None, :, None]
    both = G.latents(2 * rows, trunc, seed)
    z = torch.lerp(both[:rows, None], both[rows:, None], w).reshape(rows * steps, G.z_dim)
    y = G.labels(rows, classes).repeat_interleave(steps)
    return G.generate(z, y, batch_size=batch_size, progress=progress)


def class_interpolation(
    G: TrainedGenerator, rows: int, steps: int, start: int | str, end: int | str, *, trunc: float = 0.0,
    seed: int = 0, batch_size: int = 64, progress: Progress | None = None,
) -> Tensor:
    """rows x steps images: each row keeps one z and walks the shared class embedding from `start` to `end`."""
    w = _lerp_weights(steps)[None, :, None]
    (a,), (b,) = G.labels(1, start), G.labels(1, end)
    ends = G.class_embedding([int(a), int(b)])
    emb = torch.lerp(ends[0].expand(1, 1, -1), ends[1].expand(1, 1, -1), w).expand(rows, -1, -1)
    z = G.latents(rows, trunc, seed).repeat_interleave(steps, dim=0)
    y = torch.full((rows * steps,), int(a), dtype=torch.long)
    return G.generate(z, y, embedding=emb.reshape(rows * steps, -1), batch_size=batch_size, progress=progress)


def interpolation_frames(images: Tensor, rows: int, steps: int, nrow: int | None = None) -> list[Image.Image]:
    """GIF frames for a rows x steps sheet: frame t is the grid of every row's t-th image, there and back."""
    per_step = images.reshape(rows, steps, *images.shape[1:]).transpose(0, 1)
    frames = [to_pil(make_grid(per_step[t], nrow).unsqueeze(0))[0] for t in range(steps)]
    return frames + frames[-2:0:-1]
