"""GAN losses. Each takes D's logits (float32) and returns a scalar to minimise."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def d_hinge(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """BigGAN's discriminator loss: E[relu(1 - D(x))] + E[relu(1 + D(G(z)))] (Lim & Ye 2017; BigGAN sec. 3)."""
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def d_hinge_random_margin(real_logits: Tensor, fake_logits: Tensor, low: float = 0.8, high: float = 1.0) -> Tensor:
    """FastGAN's hinge with the margin drawn from U(low, high) per sample, as its public code does."""
    m_real = torch.empty_like(real_logits).uniform_(low, high)
    m_fake = torch.empty_like(fake_logits).uniform_(low, high)
    return F.relu(m_real - real_logits).mean() + F.relu(m_fake + fake_logits).mean()


def g_hinge(fake_logits: Tensor) -> Tensor:
    """Generator loss for the hinge formulation: -E[D(G(z))]."""
    return -fake_logits.mean()


def r1_penalty(real_logits: Tensor, inputs: Tensor) -> Tensor:
    """E[||grad_x D(x)||^2] over the real images (Mescheder et al. 2018); the caller multiplies by gamma / 2.

    `inputs` must require grad and be the tensor D actually saw (after augmentation); its first
    ``len(real_logits)`` rows are the real images. It may go on with the fakes of the same D forward: their
    rows are left out of the mean (counting them, with their zero gradient, would halve the penalty).
    """
    (grad,) = torch.autograd.grad(real_logits.float().sum(), inputs, create_graph=True)
    return grad[: real_logits.shape[0]].float().square().flatten(1).sum(1).mean()


D_LOSSES = {"hinge": d_hinge, "fastgan-hinge": d_hinge_random_margin}
