"""SA-GAN non-local self-attention block (Zhang et al. 2019), as used by BigGAN at 64x64.

theta, phi: 1x1 convs to C/8; g: 1x1 conv to C/2; phi and g are max-pooled 2x2 (4x fewer keys);
softmax over keys of theta^T phi; the attended g goes through a 1x1 conv back to C; ``out = x + gamma * o``
with gamma initialised to 0 so the block starts as the identity. All convs are spectrally normalised and
have no bias (authors' code).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from smallgan.layers.spectral_norm import float32_region, sn_conv2d


class SelfAttention(nn.Module):
    def __init__(self, channels: int, *, sn_eps: float = 1e-6) -> None:
        super().__init__()
        if channels < 8:
            raise ValueError(f"self-attention needs >= 8 channels (C/8 query size), got {channels}")
        self.channels = channels
        self.theta = sn_conv2d(channels, channels // 8, 1, bias=False, eps=sn_eps)
        self.phi = sn_conv2d(channels, channels // 8, 1, bias=False, eps=sn_eps)
        self.g = sn_conv2d(channels, channels // 2, 1, bias=False, eps=sn_eps)
        self.o = sn_conv2d(channels // 2, channels, 1, bias=False, eps=sn_eps)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        q = self.theta(x).flatten(2).transpose(1, 2)                        # (B, HW, C/8)
        k = F.max_pool2d(self.phi(x), 2).flatten(2).transpose(1, 2)        # (B, HW/4, C/8)
        v = F.max_pool2d(self.g(x), 2).flatten(2).transpose(1, 2)          # (B, HW/4, C/2)
        # SA-GAN's logits are unscaled theta^T phi, hence scale=1.0 (no 1/sqrt(d)). Unscaled logits reach tens to
        # hundreds: bf16 rounds a logit of 100 to steps of 0.5, a 1.6x error in its weight after the exp, and fp16
        # products can overflow. So the attention itself runs in float32 even under autocast (cheap next to the
        # convs: 4096 queries x 1024 pooled keys at 64x64).
        with float32_region(x.device):
            o = F.scaled_dot_product_attention(q.float()[:, None], k.float()[:, None], v.float()[:, None], scale=1.0)
        o = o[:, 0].transpose(1, 2).reshape(b, -1, h, w).to(v.dtype)                # (B, C/2, H, W)
        return x + self.gamma * self.o(o)
