"""Improved precision and recall (Kynkaanniemi et al. 2019, section 3).

Each set's manifold is the union of balls around its samples with radius the distance to the k-th nearest
neighbour in the same set (k = 3 in the paper). Precision: the fraction of generated samples inside the
real manifold; recall: the fraction of real samples inside the generated manifold. The paper uses equally
sized sets (the radii shrink as a set grows), so the larger set is subsampled to the smaller one's size.
Computed on the extractor's pool features (the paper uses VGG-16; we reuse the FID features).
"""

from __future__ import annotations

import numpy as np
import torch

from smallgan.errors import SmallganError

_CHUNK = 1024  # rows of the distance matrix held at once


def _kth_neighbour_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    radii = []
    for start in range(0, len(x), _CHUNK):
        d = torch.cdist(x[start : start + _CHUNK], x)
        radii.append(d.kthvalue(k + 1, dim=1).values)  # the (k+1)-th smallest: the nearest is the point itself
    return torch.cat(radii)


def _fraction_inside(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> float:
    inside = 0
    for start in range(0, len(points), _CHUNK):
        d = torch.cdist(points[start : start + _CHUNK], centres)
        inside += int((d <= radii[None, :]).any(dim=1).sum())
    return inside / len(points)


def precision_recall(
    real: np.ndarray | torch.Tensor,
    fake: np.ndarray | torch.Tensor,
    *,
    k: int = 3,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> tuple[float, float]:
    x = torch.as_tensor(real).to(device, torch.float32)
    y = torch.as_tensor(fake).to(device, torch.float32)
    n = min(len(x), len(y))
    if n <= k:
        raise SmallganError(f"precision/recall with k={k} needs more than {k} images in each set")
    rng = np.random.default_rng(seed)
    if len(x) > n:
        x = x[torch.from_numpy(np.sort(rng.choice(len(x), n, replace=False))).to(x.device)]
    if len(y) > n:
        y = y[torch.from_numpy(np.sort(rng.choice(len(y), n, replace=False))).to(y.device)]
    precision = _fraction_inside(y, x, _kth_neighbour_radii(x, k))
    recall = _fraction_inside(x, y, _kth_neighbour_radii(y, k))
    return precision, recall
