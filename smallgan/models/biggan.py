"""BigGAN generator and discriminator (Brock et al. 2019, appendix B).

The architecture is the two tables below; everything else is built from them. A table row is a *stage*:
one residual block here, ``cfg.deep_blocks`` blocks in BigGAN-deep. Stages are named by the resolution
they output (``b64``); a resolution that repeats gets a suffix (``b8_2``). ``cfg.g_attention`` /
``cfg.d_attention`` list feature-map resolutions: a self-attention block follows the first stage that
outputs that resolution (at 128 px: after G's up-block to 64 and after D's first down-block, as in the paper).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from smallgan.errors import ConfigError
from smallgan.layers.attention import SelfAttention
from smallgan.layers.projection import ProjectionHead, sum_pool
from smallgan.layers.resblocks import DBlock, GBlock
from smallgan.layers.conditional_bn import SHARED_INITS, shared_embedding
from smallgan.layers.spectral_norm import sn_conv2d, sn_linear
from smallgan.models.config import ModelConfig

BOTTOM = 4  # G starts from a 4x4 map; D ends at 4x4 (8x8 at 32 px)

# G: width (in multiples of ch) of the 4x4 input map, then the output width of each up-block.
G_WIDTHS: dict[int, tuple[int, ...]] = {
    32: (4, 4, 4, 4),
    64: (16, 16, 8, 4, 2),
    128: (16, 16, 8, 4, 2, 1),
    256: (16, 16, 8, 8, 4, 2, 1),
    512: (16, 16, 8, 8, 4, 2, 1, 1),
}

# D: per block, (output width in multiples of d_ch, downsample x2?); the input is the RGB image.
# 512 px is in neither the paper nor the authors' code (which has no 512 px D); ours mirrors the 512 px G
# table (16, 16, 8, 8, 4, 2, 1, 1) read backwards, i.e. the 256 px table with one more d_ch-wide block in front.
D_BLOCKS: dict[int, tuple[tuple[int, bool], ...]] = {
    32: ((4, True), (4, True), (4, False), (4, False)),
    64: ((1, True), (2, True), (4, True), (8, True), (16, False)),
    128: ((1, True), (2, True), (4, True), (8, True), (16, True), (16, False)),
    256: ((1, True), (2, True), (4, True), (8, True), (8, True), (16, True), (16, False)),
    512: ((1, True), (1, True), (2, True), (4, True), (8, True), (8, True), (16, True), (16, False)),
}


@dataclass(frozen=True)
class BlockSpec:
    name: str           # "b64": the resolution the stage outputs (suffix _2, _3 when it repeats)
    in_ch: int
    out_ch: int
    resolution: int     # output resolution in px
    resample: bool      # G: upsample x2 ; D: downsample x2
    attention: bool     # a self-attention block follows this stage


def build_specs(
    channels: list[int], in_res: int, resample: list[bool], attention: list[int], *, up: bool,
) -> list[BlockSpec]:
    """Stages from a channel table: stage i maps channels[i] to channels[i + 1]."""
    specs, seen, res = [], Counter(), in_res
    for i, (in_ch, out_ch) in enumerate(zip(channels, channels[1:])):
        if resample[i]:
            res = res * 2 if up else res // 2
        seen[res] += 1
        name = f"b{res}" if seen[res] == 1 else f"b{res}_{seen[res]}"
        specs.append(BlockSpec(name, in_ch, out_ch, res, resample[i], seen[res] == 1 and res in attention))
    return specs


def generator_specs(cfg: ModelConfig) -> list[BlockSpec]:
    channels = [w * cfg.ch for w in G_WIDTHS[cfg.resolution]]
    return build_specs(channels, BOTTOM, [True] * (len(channels) - 1), cfg.g_attention, up=True)


def discriminator_specs(cfg: ModelConfig) -> list[BlockSpec]:
    rows = D_BLOCKS[cfg.resolution]
    channels = [3] + [w * cfg.d_ch for w, _ in rows]
    return build_specs(channels, cfg.resolution, [down for _, down in rows], cfg.d_attention, up=False)


# ---------------------------------------------------------------------------------------------
# Checks shared with BigGAN-deep


def check_attention(cfg: ModelConfig, arch: str, g_specs: list[BlockSpec], d_specs: list[BlockSpec]) -> None:
    for key, wanted, specs, role in (("g_attention", cfg.g_attention, g_specs, "generator"),
                                     ("d_attention", cfg.d_attention, d_specs, "discriminator")):
        available = sorted({s.resolution for s in specs}, reverse=True)
        for r in wanted:
            if r not in available:
                choices = ", ".join(map(str, available))
                raise ConfigError(
                    f"model.{key} has {r}, but the {cfg.resolution} px {arch} {role} has no {r}x{r} stage; "
                    f"choose from {choices} (or [] for none)"
                )
            ch = next(s.out_ch for s in specs if s.resolution == r)
            if ch < 8:
                width = "ch" if role == "generator" else "d_ch"
                raise ConfigError(
                    f"self-attention at {r}x{r} in the {role} needs >= 8 channels there, got {ch}; "
                    f"increase model.{width} or remove {r} from model.{key}"
                )


def check_basics(cfg: ModelConfig) -> None:
    if cfg.z_dim < 1 or cfg.shared_dim < 1:
        raise ConfigError("model.z_dim and model.shared_dim must be >= 1")
    if cfg.shared_init not in SHARED_INITS:
        raise ConfigError(f"model.shared_init must be one of {', '.join(SHARED_INITS)}, got {cfg.shared_init!r}")
    if cfg.n_classes < 1:
        raise ConfigError("model.n_classes must be resolved to >= 1 before building (1 = unconditional)")


def check(cfg: ModelConfig) -> None:
    """Refuse settings the BigGAN tables cannot build, with the fix in the message."""
    if cfg.resolution not in G_WIDTHS:
        raise ConfigError(f"model.resolution={cfg.resolution} is not supported by biggan; choose one of "
                          f"{', '.join(map(str, G_WIDTHS))}")
    check_basics(cfg)
    g_specs = generator_specs(cfg)
    if cfg.hier:
        chunks = len(g_specs) + 1
        if cfg.z_dim % chunks:
            lo, hi = cfg.z_dim // chunks * chunks, (cfg.z_dim // chunks + 1) * chunks
            suggestion = f"{lo} or {hi}" if lo > 0 else f"{hi}"
            raise ConfigError(
                f"model.z_dim={cfg.z_dim} does not split into {chunks} equal chunks (hierarchical latents: "
                f"{len(g_specs)} G blocks + 1 at {cfg.resolution} px); use model.z_dim={suggestion}, "
                "or model.hier=false"
            )
    check_attention(cfg, "biggan", g_specs, discriminator_specs(cfg))


def check_inputs(z: Tensor, y: Tensor, z_dim: int) -> None:
    if z.ndim != 2 or z.shape[1] != z_dim or y.shape != (z.shape[0],):
        raise ValueError(f"expected z (B, {z_dim}) and y (B,), got {tuple(z.shape)} and {tuple(y.shape)}")


# ---------------------------------------------------------------------------------------------
# Modules


class ToRGB(nn.Module):
    """G output: BatchNorm with its own affine (unconditional) -> ReLU -> SN conv3x3 -> tanh (authors' code)."""

    def __init__(self, channels: int, *, bn_eps: float, sn_eps: float) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, eps=bn_eps)
        self.conv = sn_conv2d(channels, 3, 3, eps=sn_eps)

    def forward(self, h: Tensor) -> Tensor:
        return torch.tanh(self.conv(F.relu(self.bn(h))))


class Generator(nn.Module):
    """``G(z: (B, z_dim), y: (B,) long) -> (B, 3, R, R)`` in [-1, 1]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        check(cfg)
        self.z_dim, self.n_classes, self.resolution = cfg.z_dim, cfg.n_classes, cfg.resolution
        self.hier = cfg.hier
        self.specs = generator_specs(cfg)
        # Skip-z (section 3): one chunk for the 4x4 linear, one per block, each joined to the shared embedding.
        self.chunk = cfg.z_dim // (len(self.specs) + 1) if cfg.hier else cfg.z_dim
        cond_dim = cfg.shared_dim + (self.chunk if cfg.hier else 0)
        self.shared = shared_embedding(cfg.n_classes, cfg.shared_dim, cfg.shared_init)
        self.bottom_ch = self.specs[0].in_ch
        self.linear = sn_linear(self.chunk, self.bottom_ch * BOTTOM * BOTTOM, eps=cfg.sn_eps)
        self.blocks = nn.ModuleDict()
        self.attention = nn.ModuleDict()
        for s in self.specs:
            self.blocks[s.name] = GBlock(s.in_ch, s.out_ch, cond_dim, upsample=s.resample, bn_eps=cfg.bn_eps,
                                         sn_eps=cfg.sn_eps)
            if s.attention:
                self.attention[s.name] = SelfAttention(s.out_ch, sn_eps=cfg.sn_eps)
        self.to_rgb = ToRGB(self.specs[-1].out_ch, bn_eps=cfg.bn_eps, sn_eps=cfg.sn_eps)

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        check_inputs(z, y, self.z_dim)
        emb = self.shared(y)
        if self.hier:
            z0, *zs = torch.split(z, self.chunk, dim=1)
            conds = [torch.cat([emb, zi], dim=1) for zi in zs]
        else:
            z0, conds = z, [emb] * len(self.specs)
        h = self.linear(z0).view(z.shape[0], self.bottom_ch, BOTTOM, BOTTOM)
        for (name, block), c in zip(self.blocks.items(), conds):
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
        self.blocks = nn.ModuleDict()
        self.attention = nn.ModuleDict()
        for i, s in enumerate(self.specs):
            self.blocks[s.name] = DBlock(s.in_ch, s.out_ch, downsample=s.resample, preactivation=i > 0,
                                         sn_eps=cfg.sn_eps)
            if s.attention:
                self.attention[s.name] = SelfAttention(s.out_ch, sn_eps=cfg.sn_eps)
        self.head = ProjectionHead(self.specs[-1].out_ch, cfg.n_classes, sn_eps=cfg.sn_eps)

    def stages(self) -> list[list[nn.Module]]:
        """Each block with its attention, from the input on (what train.freeze_d freezes, FreezeD)."""
        return [[block, *([self.attention[name]] if name in self.attention else [])]
                for name, block in self.blocks.items()]

    def features(self, x: Tensor) -> Tensor:
        """The pooled feature vector h, (B, C), that the head projects."""
        h = x
        for name, block in self.blocks.items():
            h = block(h)
            if name in self.attention:
                h = self.attention[name](h)
        return sum_pool(h)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.head(self.features(x), y)
