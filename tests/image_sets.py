"""Image sets the metric tests share (a helper module, not a test module): smooth random images where image i
depends on (seed, i) only, a generator stand-in built on them, noise, and writing a folder of PNGs."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F


def smooth_images(n: int, seed: int, size: int = 32) -> torch.Tensor:
    """Natural-ish images: random colour fields at 4 and 8 px upsampled (image i depends on (seed, i) only)."""
    out = []
    for i in range(n):
        g = torch.Generator().manual_seed(seed * 100_003 + i)
        coarse = F.interpolate(torch.rand(1, 3, 4, 4, generator=g), size=size, mode="bicubic", align_corners=False)
        fine = F.interpolate(torch.rand(1, 3, 8, 8, generator=g), size=size, mode="bilinear", align_corners=False)
        out.append((0.7 * coarse + 0.3 * fine).clamp(0, 1))
    return (torch.cat(out) * 255).round().to(torch.uint8)


def index_sample_fn(seed: int, size: int = 32):
    """A generator stand-in: image i is a pure function of (seed, i), whatever the batch split."""
    def sample(batch: int, start: int) -> torch.Tensor:
        return torch.cat([smooth_images(1, seed * 7919 + i, size) for i in range(start, start + batch)])

    return sample


def add_noise(images: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (images.float() + sigma * torch.randn(images.shape, generator=g)).round().clamp(0, 255).to(torch.uint8)


def write_folder(folder: Path, images: torch.Tensor) -> None:
    from PIL import Image

    folder.mkdir(parents=True)
    for i, im in enumerate(images):
        Image.fromarray(im.permute(1, 2, 0).numpy()).save(folder / f"{i:04d}.png")
