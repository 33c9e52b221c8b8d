"""BigGAN-deep generator and discriminator (Brock et al. 2019, appendix B).

Differences from BigGAN (smallgan.models.biggan):
- bottleneck residual blocks (smallgan.layers.bottleneck_blocks), ``cfg.deep_blocks`` per stage (paper: 2);
- z is not split: every CBN sees the full ``[shared(y), z]`` and so does the first linear layer (``cfg.hier``
  is ignored);
- skips without a 1x1 conv over all channels: G drops channels by slicing; D keeps all channels and appends the
  new ones from a learned 1x1 conv (concatenation, appendix B);
- D starts with a conv3x3 from RGB to d_ch, and every D stage downsamples.
Within a G stage the blocks keep the width and resolution and the last one upsamples and narrows; within a D
stage the first block downsamples and widens and the others keep it (the order of the paper's tables).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from smallgan.errors import ConfigError
from smallgan.layers.attention import SelfAttention
from smallgan.layers.bottleneck_blocks import BOTTLENECK_RATIO, DeepDBlock, DeepGBlock
from smallgan.layers.projection import ProjectionHead, sum_pool
from smallgan.layers.conditional_bn import shared_embedding
from smallgan.layers.spectral_norm import sn_conv2d, sn_linear
from smallgan.models.biggan import (
    BOTTOM, BlockSpec, ToRGB, build_specs, check_attention, check_basics, check_inputs, generator_specs,
)
from smallgan.models.config import ModelConfig

# G uses BigGAN's tables (biggan.G_WIDTHS, 64 px and up). D: width (multiples of d_ch) of the RGB input conv,
# then the output width of each (downsampling) stage. 512 px (not in the paper) puts one more d_ch-wide stage in
# front of the 256 px table, mirroring the 512 px G table.
DEEP_D_WIDTHS: dict[int, tuple[int, ...]] = {
    64: (1, 2, 4, 8, 16),
    128: (1, 2, 4, 8, 16, 16),
    256: (1, 2, 4, 8, 8, 16, 16),
    512: (1, 1, 2, 4, 8, 8, 16, 16),
}
RESOLUTIONS = tuple(DEEP_D_WIDTHS)


def discriminator_specs(cfg: ModelConfig) -> list[BlockSpec]:
    channels = [w * cfg.d_ch for w in DEEP_D_WIDTHS[cfg.resolution]]
    return build_specs(channels, cfg.resolution, [True] * (len(channels) - 1), cfg.d_attention, up=False)


def check(cfg: ModelConfig) -> None:
    """Refuse settings the BigGAN-deep tables cannot build, with the fix in the message."""
    if cfg.resolution not in DEEP_D_WIDTHS:
        raise ConfigError(f"model.resolution={cfg.resolution} is not supported by biggan-deep; choose one of "
                          f"{', '.join(map(str, RESOLUTIONS))}")
    check_basics(cfg)
    if cfg.deep_blocks < 1:
        raise ConfigError(f"model.deep_blocks must be >= 1 (paper: 2), got {cfg.deep_blocks}")
    g_specs, d_specs = generator_specs(cfg), discriminator_specs(cfg)
    # Bottleneck width: in_ch / 4 in G, out_ch / 4 in D; it must stay >= 1.
    for key, width, specs, attr in (("ch", cfg.ch, g_specs, "in_ch"), ("d_ch", cfg.d_ch, d_specs, "out_ch")):
        narrowest = min(getattr(s, attr) for s in specs)
        if narrowest < BOTTLENECK_RATIO:
            need = math.ceil(BOTTLENECK_RATIO * width / narrowest)
            raise ConfigError(
                f"model.{key}={width} is too small for biggan-deep bottlenecks (a block {narrowest} wide would "
                f"squeeze to {narrowest // BOTTLENECK_RATIO} channels); use model.{key} >= {need}"
            )
    check_attention(cfg, "biggan-deep", g_specs, d_specs)


class Generator(nn.Module):
    """``G(z: (B, z_dim), y: (B,) long) -> (B, 3, R, R)`` in [-1, 1]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        check(cfg)
        self.z_dim, self.n_classes, self.resolution = cfg.z_dim, cfg.n_classes, cfg.resolution
        self.specs = generator_specs(cfg)
        cond_dim = cfg.shared_dim + cfg.z_dim
        self.shared = shared_embedding(cfg.n_classes, cfg.shared_dim, cfg.shared_init)
        self.bottom_ch = self.specs[0].in_ch
        self.linear = sn_linear(cond_dim, self.bottom_ch * BOTTOM * BOTTOM, eps=cfg.sn_eps)
        self.blocks = nn.ModuleDict()
        self.attention = nn.ModuleDict()
        n = cfg.deep_blocks
        for s in self.specs:
            self.blocks[s.name] = nn.ModuleList(
                DeepGBlock(s.in_ch, s.out_ch if i == n - 1 else s.in_ch, cond_dim, upsample=i == n - 1,
                           bn_eps=cfg.bn_eps, sn_eps=cfg.sn_eps)
                for i in range(n)
            )
            if s.attention:
                self.attention[s.name] = SelfAttention(s.out_ch, sn_eps=cfg.sn_eps)
        self.to_rgb = ToRGB(self.specs[-1].out_ch, bn_eps=cfg.bn_eps, sn_eps=cfg.sn_eps)

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        check_inputs(z, y, self.z_dim)
        c = torch.cat([self.shared(y), z], dim=1)
        h = self.linear(c).view(z.shape[0], self.bottom_ch, BOTTOM, BOTTOM)
        for name, stage in self.blocks.items():
            for block in stage:
                h = block(h, c)
            if name in self.attention:
                h = self.attention[name](h)
        return self.to_rgb(h)


class Discriminator(nn.Module):
    """``D(x: (B, 3, R, R), y: (B,) long) -> (B,)`` float32 logits (projection discriminator)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        check(cfg)
        self.n_classes, self.resolution = cfg.n_classes, cfg.resolution
        self.specs = discriminator_specs(cfg)
        self.from_rgb = sn_conv2d(3, self.specs[0].in_ch, 3, eps=cfg.sn_eps)
        self.blocks = nn.ModuleDict()
        self.attention = nn.ModuleDict()
        n = cfg.deep_blocks
        for s in self.specs:
            self.blocks[s.name] = nn.ModuleList(
                DeepDBlock(s.in_ch if i == 0 else s.out_ch, s.out_ch, downsample=i == 0, sn_eps=cfg.sn_eps)
                for i in range(n)
            )
            if s.attention:
                self.attention[s.name] = SelfAttention(s.out_ch, sn_eps=cfg.sn_eps)
        self.head = ProjectionHead(self.specs[-1].out_ch, cfg.n_classes, sn_eps=cfg.sn_eps)

    def stages(self) -> list[list[nn.Module]]:
        """Each resolution's blocks with its attention, from the input on, the input conv in the first (what
        train.freeze_d freezes, FreezeD)."""
        return [[*([self.from_rgb] if i == 0 else []), stage, *([self.attention[name]] if name in self.attention
                                                                  else [])]
                for i, (name, stage) in enumerate(self.blocks.items())]

    def features(self, x: Tensor) -> Tensor:
        """The pooled feature vector h, (B, C), that the head projects."""
        h = self.from_rgb(x)
        for name, stage in self.blocks.items():
            for block in stage:
                h = block(h)
            if name in self.attention:
                h = self.attention[name](h)
        return sum_pool(h)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.head(self.features(x), y)
