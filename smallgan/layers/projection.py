"""Projection discriminator head (Miyato & Koyama 2018), as in BigGAN's D.

``logit = linear(h) + sum(embed(y) * h)`` where h is the pooled D feature vector. Both the linear and the class
embedding are spectrally normalised (authors' code). With a single class there is nothing to project: the
embedding is omitted and D is unconditional.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from smallgan.layers.spectral_norm import float32_region, sn_embedding, sn_linear


def sum_pool(x: Tensor) -> Tensor:
    """ReLU then global *sum* pooling over H, W (not mean: the authors' D), (B, C, H, W) -> (B, C)."""
    return torch.sum(F.relu(x), dim=(2, 3))


class ProjectionHead(nn.Module):
    def __init__(self, channels: int, n_classes: int, *, sn_eps: float = 1e-6) -> None:
        super().__init__()
        self.linear = sn_linear(channels, 1, eps=sn_eps)
        self.embed = sn_embedding(n_classes, channels, eps=sn_eps) if n_classes > 1 else None

    def forward(self, h: Tensor, y: Tensor) -> Tensor:
        """h: (B, C) pooled features, y: (B,) labels -> (B,) float32 logits.

        The head runs in float32 even under autocast (a cast after a bf16 linear would only keep its rounding):
        a logit is a sum over thousands of sum-pooled features, and the hinge, R1 and the logs need it exact.
        """
        with float32_region(h.device):
            h = h.float()
            out = self.linear(h)[:, 0]
            if self.embed is not None:
                out = out + torch.sum(self.embed(y).float() * h, dim=1)
        return out
