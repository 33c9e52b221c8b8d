"""DiffAugment (Zhao et al., NeurIPS 2020): differentiable augmentations applied to every image D sees.

Applying the same random family of transforms to real and generated images (in D's step) and to generated
images (in G's step) keeps D from memorising a small training set while G still gets gradients through the
augmentation. Each image gets its own random parameters. Inputs are in [-1, 1], shape (B, C, H, W).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from smallgan.errors import SmallganError


def _rand(x: Tensor, *shape: int) -> Tensor:
    return torch.rand(x.shape[0], *shape, device=x.device, dtype=x.dtype)


def color(x: Tensor) -> Tensor:
    """Brightness + U(-0.5, 0.5), saturation x U(0, 2), contrast x U(0.5, 1.5) (the paper's colour policy)."""
    x = x + (_rand(x, 1, 1, 1) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_rand(x, 1, 1, 1) * 2.0) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand(x, 1, 1, 1) + 0.5) + mean


def translation(x: Tensor, ratio: float = 0.125) -> Tensor:
    """Shift each image by up to `ratio` of its size, filling with zeros."""
    b, _, h, w = x.shape
    max_dy, max_dx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-max_dy, max_dy + 1, (b, 1, 1), device=x.device)
    dx = torch.randint(-max_dx, max_dx + 1, (b, 1, 1), device=x.device)
    gy = torch.arange(h, device=x.device).view(1, h, 1)
    gx = torch.arange(w, device=x.device).view(1, 1, w)
    # Pad one zero pixel on each side; any source coordinate outside the image is clamped onto it.
    ys = (gy + dy + 1).clamp(0, h + 1)
    xs = (gx + dx + 1).clamp(0, w + 1)
    padded = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1)  # (B, H+2, W+2, C)
    batch = torch.arange(b, device=x.device).view(b, 1, 1)
    return padded[batch, ys, xs].permute(0, 3, 1, 2).contiguous()


def cutout(x: Tensor, ratio: float = 0.5) -> Tensor:
    """Zero a random square of `ratio` times the image size in each image."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=x.device)
    gy = torch.arange(h, device=x.device).view(1, h, 1)
    gx = torch.arange(w, device=x.device).view(1, 1, w)
    # Square centred on (cy, cx), clipped by the image border.
    ry, rx = gy - cy + ch // 2, gx - cx + cw // 2
    inside = (ry >= 0) & (ry < ch) & (rx >= 0) & (rx < cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


AUGMENTATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "color": color,
    "translation": translation,
    "cutout": cutout,
}


def parse_policy(policy: str) -> list[str]:
    """'color,translation' -> ['color', 'translation']; unknown names raise a one-line error."""
    names = [p.strip() for p in policy.split(",") if p.strip()]
    for name in names:
        if name not in AUGMENTATIONS:
            raise SmallganError(
                f"unknown DiffAugment policy {name!r} in train.diffaug; choose from {', '.join(AUGMENTATIONS)}"
            )
    return names


class DiffAugment:
    """Callable applying a comma-separated policy; the empty policy is the identity.

    `p`: the probability that each op is applied to each image (StyleGAN2-ADA's per-image p), a number or a
    device scalar; a call may pass its own (the training loop passes the adaptive one of
    :mod:`smallgan.training.ada` to D's and G's steps alike). At p = 1 (a number) no mask is drawn: the random
    draws, and so the trajectories, are those of DiffAugment as published.
    """

    def __init__(self, policy: str, p: float | Tensor = 1.0) -> None:
        self.names = parse_policy(policy)
        self.p = p

    def __bool__(self) -> bool:
        return bool(self.names)

    def __call__(self, x: Tensor, p: float | Tensor | None = None) -> Tensor:
        p = self.p if p is None else p
        for name in self.names:
            if not isinstance(p, Tensor):
                if p >= 1.0:
                    x = AUGMENTATIONS[name](x)
                    continue
                if p <= 0.0:
                    continue
            apply = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < p
            # Both branches stay in the graph: G gets gradients through the augmented images it was shown.
            x = torch.where(apply, AUGMENTATIONS[name](x), x)
        return x
