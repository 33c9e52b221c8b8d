"""Kernel Inception Distance (Binkowski et al. 2018, "Demystifying MMD GANs", section 4).

KID is the squared MMD between two feature sets with the cubic polynomial kernel
k(x, y) = (x.y / d + 1)^3, estimated without bias (the U-statistic drops the diagonal of the within-set
kernel matrices), so its expectation is the population value at any sample size: the reason to prefer it
over FID for sets of a few hundred images. As in the paper it is averaged over random subsets, which also
gives a standard deviation.
"""

from __future__ import annotations

import numpy as np
import torch

from smallgan.errors import SmallganError


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD^2 estimate between equally sized samples x (m, d) and y (m, d) (paper eq. 2 with m = n)."""
    m = x.shape[0]
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return float(within - 2.0 * k_xy.sum() / (m * m))


def kernel_inception_distance(
    real: np.ndarray | torch.Tensor,
    fake: np.ndarray | torch.Tensor,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> tuple[float, float]:
    """Mean and standard deviation of the unbiased MMD^2 over ``subsets`` random subsets of each set.

    ``subset_size`` is capped by the smaller set (a few-shot set of 100 images uses subsets of 100).
    """
    device = torch.device(device)
    if device.type == "mps":  # no float64 on MPS
        device = torch.device("cpu")
    x = torch.as_tensor(real).to(device, torch.float64)
    y = torch.as_tensor(fake).to(device, torch.float64)
    size = min(subset_size, len(x), len(y))
    if size < 2:
        raise SmallganError(f"KID needs at least 2 images in each set, got {len(x)} and {len(y)}")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        ix = torch.from_numpy(rng.choice(len(x), size, replace=False)).to(device)
        iy = torch.from_numpy(rng.choice(len(y), size, replace=False)).to(device)
        values.append(mmd2_unbiased(x[ix], y[iy]))
    return float(np.mean(values)), float(np.std(values))
