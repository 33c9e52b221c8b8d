"""BigGAN residual blocks (paper appendix B: ResBlock up in G, ResBlock down in D).

GBlock (up):   CBN -> ReLU -> upsample x2 -> conv3x3 -> CBN -> ReLU -> conv3x3 ; skip: upsample -> conv1x1.
DBlock (down): ReLU -> conv3x3 -> ReLU -> conv3x3 -> avgpool2 ; skip: conv1x1 -> avgpool2.
The first D block sees the RGB image: no leading ReLU, and its skip pools before the 1x1 conv (cheaper, and
the authors' code does the same). A D block that neither downsamples nor changes width has an identity skip.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from smallgan.layers.conditional_bn import ConditionalBatchNorm2d
from smallgan.layers.spectral_norm import sn_conv2d


class GBlock(nn.Module):
    def __init__(
        self, in_ch: int, out_ch: int, cond_dim: int, *, upsample: bool = True, bn_eps: float = 1e-5,
        sn_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.upsample = upsample
        self.bn1 = ConditionalBatchNorm2d(in_ch, cond_dim, bn_eps=bn_eps, sn_eps=sn_eps)
        self.conv1 = sn_conv2d(in_ch, out_ch, 3, eps=sn_eps)
        self.bn2 = ConditionalBatchNorm2d(out_ch, cond_dim, bn_eps=bn_eps, sn_eps=sn_eps)
        self.conv2 = sn_conv2d(out_ch, out_ch, 3, eps=sn_eps)
        self.skip = sn_conv2d(in_ch, out_ch, 1, eps=sn_eps) if (upsample or in_ch != out_ch) else None

    def _up(self, x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=2, mode="nearest") if self.upsample else x

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        h = self.conv1(self._up(F.relu(self.bn1(x, c))))
        h = self.conv2(F.relu(self.bn2(h, c)))
        s = self._up(x)
        return h + (self.skip(s) if self.skip is not None else s)


class DBlock(nn.Module):
    def __init__(
        self, in_ch: int, out_ch: int, *, downsample: bool = True, preactivation: bool = True, sn_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.downsample = downsample
        self.preactivation = preactivation
        self.conv1 = sn_conv2d(in_ch, out_ch, 3, eps=sn_eps)
        self.conv2 = sn_conv2d(out_ch, out_ch, 3, eps=sn_eps)
        self.skip = sn_conv2d(in_ch, out_ch, 1, eps=sn_eps) if (downsample or in_ch != out_ch) else None

    def _down(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, 2) if self.downsample else x

    def _shortcut(self, x: Tensor) -> Tensor:
        if self.skip is None:
            return x
        if self.preactivation:
            return self._down(self.skip(x))
        return self.skip(self._down(x))   # first block: pool the 3-channel image before the 1x1 conv

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(x) if self.preactivation else x
        h = self.conv2(F.relu(self.conv1(h)))
        return self._down(h) + self._shortcut(x)
