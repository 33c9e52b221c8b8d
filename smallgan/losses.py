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


def mode_seeking(images: Tensor, z: Tensor, eps: float = 1e-5) -> Tensor:
    """MSGAN's mode-seeking term (Mao et al. 2019, eq. 3), to minimise: 1 / (d_I / d_z + eps) averaged over
    the pairs (i, i + n/2), which the caller gives the same class. d_I is the mean absolute pixel difference of
    the pair's images, d_z that of their latents: a G that maps different z of a class to one image pays
    ~1/eps, one whose images move with z pays little. Computed per pair (the paper's code uses the batch
    means), so a single collapsed pair is not hidden by varied ones."""
    half = images.shape[0] // 2
    if half < 1:
        return images.new_zeros(())
    a, b = images[:half].float(), images[half : 2 * half].float()
    d_images = (a - b).abs().flatten(1).mean(1)
    d_latents = (z[:half] - z[half : 2 * half]).float().abs().mean(1)
    return (1.0 / (d_images / d_latents + eps)).mean()


D_LOSSES = {"hinge": d_hinge, "fastgan-hinge": d_hinge_random_margin}
