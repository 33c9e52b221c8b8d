"""Skip-layer excitation (SLE), FastGAN's cheap long-range skip (Liu et al. 2021, sec. 3.1).

A low-resolution map gates a high-resolution one channel by channel:
``x_high * sigmoid(conv1x1(swish(conv4x4(adaptive_avg_pool_4x4(x_low)))))``. The pool and the 4x4 conv with
no padding reduce the low map to 1x1 whatever its size, so the two maps never need the same resolution (unlike a
residual skip), and the gate is a per-channel multiplication, the squeeze-and-excitation form. Swish (SiLU) is the
activation of the authors' last code; the paper's figure draws a LeakyReLU.
"""

from __future__ import annotations

from torch import Tensor, nn

from smallgan.layers.fastgan_blocks import normal_sn_conv


class SkipLayerExcitation(nn.Module):
    """``SLE(x_high: (B, C_high, H, W), x_low: (B, C_low, h, w)) -> (B, C_high, H, W)``."""

    def __init__(self, low_ch: int, high_ch: int, *, sn_eps: float = 1e-6) -> None:
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(4),
            normal_sn_conv(low_ch, high_ch, 4, padding=0, eps=sn_eps),   # 4x4 -> 1x1
            nn.SiLU(),
            normal_sn_conv(high_ch, high_ch, 1, eps=sn_eps),
            nn.Sigmoid(),
        )

    def forward(self, x_high: Tensor, x_low: Tensor) -> Tensor:
        return x_high * self.gate(x_low)
