"""FastGAN's building blocks (Liu et al. 2021, sec. 3 and the authors' last public code).

G:  ``UpBlock``: nearest upsample x2 -> conv3x3 -> BatchNorm -> GLU; with ``noise=True`` (the "complex" block)
    the conv is followed by noise injection and a second conv -> noise -> BN -> GLU stage.
D:  ``DownBlock`` (small branch): conv4x4 stride 2 -> BN -> LeakyReLU(0.2);
    ``DownBlockComp`` (big branch): the mean of that path plus a conv3x3 stage and of avgpool -> conv1x1.
    ``Decoder``: simple up-blocks from an 8x8 map to an RGB image (tanh), D's self-supervision on real images.

Every conv is spectrally normalised and every weight initialised N(0, 0.02) (BatchNorm scales N(1, 0.02)), as in
the authors' code. Convs followed by BatchNorm have no bias (BN's shift replaces it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from smallgan.layers.spectral_norm import spectral_norm

INIT_STD = 0.02


def normal_init(module: nn.Module) -> nn.Module:
    nn.init.normal_(module.weight, 0.0, INIT_STD)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)
    return module


def normal_sn_conv(
    in_ch: int, out_ch: int, kernel_size: int, *, stride: int = 1, padding: int | None = None, bias: bool = False,
    eps: float = 1e-6,
) -> nn.Conv2d:
    """N(0, 0.02)-initialised, spectrally normalised conv; 'same' padding unless given."""
    pad = kernel_size // 2 if padding is None else padding
    conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=pad, bias=bias)
    return spectral_norm(normal_init(conv), eps)


def batch_norm(channels: int, eps: float = 1e-5) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels, eps=eps)
    nn.init.normal_(bn.weight, 1.0, INIT_STD)
    nn.init.zeros_(bn.bias)
    return bn


class NoiseInjection(nn.Module):
    """``x + w * N(0, 1)``, one noise value per pixel shared by all channels, w a learned scalar starting at 0.

    The noise is drawn on every call, in eval mode too (as in StyleGAN and the authors' code): it supplies the
    stochastic detail G learned to use; seed the global RNG for reproducible samples.
    """

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        return x + self.weight.to(x.dtype) * torch.randn(b, 1, h, w, device=x.device, dtype=x.dtype)


class UpBlock(nn.Module):
    """``(B, in_ch, H, W) -> (B, out_ch, 2H, 2W)``; each conv outputs 2 x out_ch channels that GLU halves."""

    def __init__(self, in_ch: int, out_ch: int, *, noise: bool = False, bn_eps: float = 1e-5,
                 sn_eps: float = 1e-6) -> None:
        super().__init__()
        stages: list[nn.Module] = [nn.Upsample(scale_factor=2, mode="nearest")]
        for i in range(2 if noise else 1):
            stages.append(normal_sn_conv(in_ch if i == 0 else out_ch, 2 * out_ch, 3, eps=sn_eps))
            if noise:
                stages.append(NoiseInjection())
            stages += [batch_norm(2 * out_ch, bn_eps), nn.GLU(dim=1)]
        self.body = nn.Sequential(*stages)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


def _down_stage(in_ch: int, out_ch: int, kernel_size: int, stride: int, padding: int, bn_eps: float,
                sn_eps: float) -> list[nn.Module]:
    return [normal_sn_conv(in_ch, out_ch, kernel_size, stride=stride, padding=padding, eps=sn_eps),
            batch_norm(out_ch, bn_eps), nn.LeakyReLU(0.2)]


class DownBlock(nn.Module):
    """``(B, in_ch, H, W) -> (B, out_ch, H/2, W/2)``: conv4x4 stride 2 -> BN -> LeakyReLU(0.2)."""

    def __init__(self, in_ch: int, out_ch: int, *, bn_eps: float = 1e-5, sn_eps: float = 1e-6) -> None:
        super().__init__()
        self.body = nn.Sequential(*_down_stage(in_ch, out_ch, 4, 2, 1, bn_eps, sn_eps))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class DownBlockComp(nn.Module):
    """The big branch's down-block: the mean of a conv path and a pooled 1x1 path (both to ``out_ch``, H/2)."""

    def __init__(self, in_ch: int, out_ch: int, *, bn_eps: float = 1e-5, sn_eps: float = 1e-6) -> None:
        super().__init__()
        self.main = nn.Sequential(*_down_stage(in_ch, out_ch, 4, 2, 1, bn_eps, sn_eps),
                                  *_down_stage(out_ch, out_ch, 3, 1, 1, bn_eps, sn_eps))
        self.direct = nn.Sequential(nn.AvgPool2d(2), *_down_stage(in_ch, out_ch, 1, 1, 0, bn_eps, sn_eps))

    def forward(self, x: Tensor) -> Tensor:
        return (self.main(x) + self.direct(x)) / 2


class Decoder(nn.Module):
    """``(B, in_ch, 8, 8) -> (B, 3, S, S)`` in [-1, 1]: one simple up-block per doubling, then conv3x3 -> tanh.

    ``widths`` are the output widths of the up-blocks (8 -> 16 -> ... -> S), so S = 8 * 2 ** len(widths).
    """

    def __init__(self, in_ch: int, widths: list[int], *, bn_eps: float = 1e-5, sn_eps: float = 1e-6) -> None:
        super().__init__()
        chans = [in_ch, *widths]
        self.blocks = nn.Sequential(*[UpBlock(a, b, bn_eps=bn_eps, sn_eps=sn_eps) for a, b in zip(chans, chans[1:])])
        self.to_rgb = normal_sn_conv(chans[-1], 3, 3, eps=sn_eps)
        self.size = 8 * 2 ** len(widths)

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.to_rgb(self.blocks(x)))


# ---------------------------------------------------------------------------------------------
# Image helpers for D's small branch and the reconstruction targets


def resize(x: Tensor, size: int) -> Tensor:
    """Square resize: area averaging to shrink (exact 2^k pooling, no aliasing), bilinear to enlarge."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    if size < x.shape[-1]:
        return F.interpolate(x, size=(size, size), mode="area")
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def quadrant(x: Tensor, part: int) -> Tensor:
    """Quadrant `part` of a square map: 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right."""
    h = x.shape[-1] // 2
    row, col = divmod(part, 2)
    return x[..., row * h:(row + 1) * h, col * h:(col + 1) * h]
