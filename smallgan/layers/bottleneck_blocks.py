"""BigGAN-deep bottleneck residual blocks (paper appendix B).

Both blocks squeeze to a quarter of the width (1x1), run two 3x3 convs, and expand back (1x1). The skip path
has no 1x1 conv over all channels:
- G (channels only shrink or stay): the skip keeps the first ``out_ch`` channels of x (slicing), then upsamples.
- D (channels only grow or stay): the skip average-pools x, then appends ``out_ch - in_ch`` new channels made by
  a learned 1x1 conv of x and concatenated to it (appendix B: "concatenated with the result of a 1x1 conv").
Bottleneck width: in_ch / 4 in G, out_ch / 4 in D (the authors' code).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from smallgan.layers.conditional_bn import ConditionalBatchNorm2d
from smallgan.layers.spectral_norm import sn_conv2d

BOTTLENECK_RATIO = 4


class DeepGBlock(nn.Module):
    def __init__(
        self, in_ch: int, out_ch: int, cond_dim: int, *, upsample: bool, bn_eps: float = 1e-5, sn_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if out_ch > in_ch:
            raise ValueError(f"BigGAN-deep G blocks never widen (skip by slicing): in {in_ch}, out {out_ch}")
        hidden = in_ch // BOTTLENECK_RATIO
        self.out_ch, self.upsample = out_ch, upsample
        cbn = dict(cond_dim=cond_dim, bn_eps=bn_eps, sn_eps=sn_eps)
        self.bn1 = ConditionalBatchNorm2d(in_ch, **cbn)
        self.conv1 = sn_conv2d(in_ch, hidden, 1, eps=sn_eps)
        self.bn2 = ConditionalBatchNorm2d(hidden, **cbn)
        self.conv2 = sn_conv2d(hidden, hidden, 3, eps=sn_eps)
        self.bn3 = ConditionalBatchNorm2d(hidden, **cbn)
        self.conv3 = sn_conv2d(hidden, hidden, 3, eps=sn_eps)
        self.bn4 = ConditionalBatchNorm2d(hidden, **cbn)
        self.conv4 = sn_conv2d(hidden, out_ch, 1, eps=sn_eps)

    def _up(self, x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=2, mode="nearest") if self.upsample else x

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        h = self.conv1(F.relu(self.bn1(x, c)))
        h = self._up(F.relu(self.bn2(h, c)))          # upsample in the narrow part: 4x cheaper
        h = self.conv2(h)
        h = self.conv3(F.relu(self.bn3(h, c)))
        h = self.conv4(F.relu(self.bn4(h, c)))
        return h + self._up(x[:, : self.out_ch])


class DeepDBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, *, downsample: bool, sn_eps: float = 1e-6) -> None:
        super().__init__()
        if out_ch < in_ch:
            raise ValueError(f"BigGAN-deep D blocks never narrow (skip by concatenation): in {in_ch}, out {out_ch}")
        hidden = out_ch // BOTTLENECK_RATIO
        self.downsample = downsample
        self.conv1 = sn_conv2d(in_ch, hidden, 1, eps=sn_eps)
        self.conv2 = sn_conv2d(hidden, hidden, 3, eps=sn_eps)
        self.conv3 = sn_conv2d(hidden, hidden, 3, eps=sn_eps)
        self.conv4 = sn_conv2d(hidden, out_ch, 1, eps=sn_eps)
        self.extra = sn_conv2d(in_ch, out_ch - in_ch, 1, eps=sn_eps) if out_ch > in_ch else None

    def _down(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, 2) if self.downsample else x

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.relu(x))
        h = self.conv2(F.relu(h))
        h = self.conv3(F.relu(h))
        h = self.conv4(self._down(F.relu(h)))         # pool before the widening 1x1: 4x cheaper
        s = self._down(x)
        if self.extra is not None:
            s = torch.cat([s, self.extra(s)], dim=1)
        return h + s
