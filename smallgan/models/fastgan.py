"""FastGAN (Liu et al., ICLR 2021): the few-shot baseline, as tables plus the modules that read them.

Generator: z -> 4x4 (transposed conv, BN, GLU) -> up-blocks to the output size, "complex" ones (two stages with
noise injection) at 8, 32, 128, 512 and simple ones at 16, 64, 256, 1024; skip-layer excitation lets each map
at r gate the map at 16r (4->64, 8->128, 16->256, 32->512, 64->1024), wherever both exist. So at 64 px the
only link is 4->64, at 128 px 4->64 and 8->128; from 256 px on, more as the size allows. 8->128, 16->256,
32->512 are the paper's; 4->64 comes from the authors' code, 64->1024 from the paper (not in that code).

Discriminator (self-supervised): a big branch on the image (a stem down to at most 256 px, then DownBlockComp
to 8x8, with its own SLE links 256->32, 128->16, 64->8 where they exist) and a small branch on a copy at
``small_size(R) = min(128, R / 2)``, each ending in 5x5 patch logits. On real images three decoders rebuild
``small_size`` images: the big branch's 8x8 map vs the whole image, a random quadrant of its 16x16 map vs that
quadrant of the image, and the small branch's 8x8 map vs the whole image; the training loop scores them with
LPIPS (smallgan.perceptual) and adds the distance to D's loss.

Where this differs from the authors' code, on purpose:
- G returns one image. D makes the small branch's input by resizing whatever image it is given, for generated
  images as for real ones, instead of G emitting a second 128 px image: the training loop, sampling, EMA and
  metrics all see one tensor in [-1, 1], and D cannot tell real from fake by how the small copy was made.
- Small sizes: the small branch and the decoders work at R / 2 below 256 px (the code had no 128 px D at all).
- Resizes average (area) instead of picking nearest pixels.
- D's BatchNorm sees real and fake images as separate batches, as in the code's two D calls: the loop passes
  ``n_real`` (the registration declares ``Capabilities(splits_real_fake=True)``, smallgan.registry).
Ablations (Table 3 of the paper): ``model.sle=false`` removes every SLE link (G and D), ``model.decoder=false``
removes the decoders and with them the reconstruction loss.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from smallgan.errors import ConfigError
from smallgan.layers.excitation import SkipLayerExcitation
from smallgan.layers.fastgan_blocks import (
    Decoder, DownBlock, DownBlockComp, UpBlock, batch_norm, normal_init, normal_sn_conv, quadrant, resize,
)
from smallgan.layers.spectral_norm import float32_region, spectral_norm
from smallgan.models.config import ModelConfig

RESOLUTIONS = (64, 128, 256, 512, 1024)

# G width at each feature-map resolution, in multiples of ngf (model.ch; the paper's ngf is 64).
G_FACTORS: dict[int, float] = {4: 16, 8: 8, 16: 4, 32: 2, 64: 2, 128: 1, 256: 0.5, 512: 0.25, 1024: 0.125}
NOISY_UP = frozenset({8, 32, 128, 512})       # up-blocks with two stages and noise injection
G_SLE = ((4, 64), (8, 128), (16, 256), (32, 512), (64, 1024))   # (gating map, gated map) resolutions

# D width at each feature-map resolution, in multiples of ndf (model.d_ch); the small branch is half as wide,
# the decoders use G's factors times ndf / 2, and the big head widens the 8x8 map to 16 x ndf.
D_FACTORS: dict[int, float] = {512: 0.125, 256: 0.25, 128: 0.5, 64: 1, 32: 2, 16: 4, 8: 8}
D_HEAD = 16
D_SLE = ((256, 32), (128, 16), (64, 8))
TRUNK_MAX = 256      # the big branch's first map is at most this size
SMALL_MAX = 128      # the small branch and the decoders work at most at this size
LAST = 8             # both branches end at 8x8, then a 4x4 conv without padding gives 5x5 logits


def small_size(resolution: int) -> int:
    return min(SMALL_MAX, resolution // 2)


def g_width(cfg: ModelConfig, r: int) -> int:
    return max(1, int(cfg.ch * G_FACTORS[r]))


def d_width(cfg: ModelConfig, r: int, scale: float = 1.0) -> int:
    return max(1, int(cfg.d_ch * D_FACTORS[r] * scale))


def halvings(size: int, stop: int) -> list[int]:
    """size / 2, size / 4, ..., stop: the output sizes of the stride-2 stages from `size` down to `stop`."""
    out = []
    while size > stop:
        size //= 2
        out.append(size)
    return out


def up_path(resolution: int) -> list[int]:
    """Output resolutions of G's up-blocks: 8, 16, ..., resolution."""
    return [r for r in G_FACTORS if 4 < r <= resolution]


def g_links(cfg: ModelConfig) -> list[tuple[int, int]]:
    return [(lo, hi) for lo, hi in G_SLE if hi <= cfg.resolution] if cfg.sle else []


def d_links(cfg: ModelConfig) -> list[tuple[int, int]]:
    start = min(cfg.resolution, TRUNK_MAX)
    return [(src, dst) for src, dst in D_SLE if src <= start] if cfg.sle else []


def check(cfg: ModelConfig) -> None:
    """Refuse settings FastGAN cannot build, with the fix in the message."""
    if cfg.resolution not in RESOLUTIONS:
        raise ConfigError(f"model.resolution={cfg.resolution} is not supported by fastgan; choose one of "
                          f"{', '.join(map(str, RESOLUTIONS))}")
    if cfg.n_classes != 1:
        raise ConfigError(f"fastgan is unconditional but model.n_classes resolves to {cfg.n_classes}; "
                          "set model.n_classes=1 (images of all classes are then pooled)")
    if cfg.z_dim < 1:
        raise ConfigError("model.z_dim must be >= 1 (the paper's nz is 256)")
    if cfg.g_attention or cfg.d_attention:
        raise ConfigError("fastgan has no self-attention; set model.g_attention=[] and model.d_attention=[]")


class Generator(nn.Module):
    """``G(z: (B, z_dim), y: (B,) ignored) -> (B, 3, R, R)`` in [-1, 1]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        check(cfg)
        self.z_dim, self.n_classes, self.resolution = cfg.z_dim, 1, cfg.resolution
        eps = dict(bn_eps=cfg.bn_eps, sn_eps=cfg.sn_eps)
        c4 = g_width(cfg, 4)
        # z as a 1x1 map -> 4x4. On a 1x1 input this transposed conv is a linear map z -> (2 c4 x 4 x 4), whose
        # matrix is the weight (in, out*k*k) that spectral norm's flatten(1) sees: sigma is exact.
        self.init = nn.Sequential(
            spectral_norm(normal_init(nn.ConvTranspose2d(cfg.z_dim, 2 * c4, 4, bias=False)), cfg.sn_eps),
            batch_norm(2 * c4, cfg.bn_eps), nn.GLU(dim=1),
        )
        self.blocks = nn.ModuleDict()
        for r in up_path(cfg.resolution):
            self.blocks[f"b{r}"] = UpBlock(g_width(cfg, r // 2), g_width(cfg, r), noise=r in NOISY_UP, **eps)
        self.links = {hi: lo for lo, hi in g_links(cfg)}   # gated resolution -> gating resolution
        self.sle = nn.ModuleDict({
            f"sle{hi}": SkipLayerExcitation(g_width(cfg, lo), g_width(cfg, hi), sn_eps=cfg.sn_eps)
            for hi, lo in self.links.items()
        })
        self.to_rgb = normal_sn_conv(g_width(cfg, cfg.resolution), 3, 3, eps=cfg.sn_eps)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"expected z (B, {self.z_dim}), got {tuple(z.shape)}")
        h = self.init(z[:, :, None, None])
        maps = {4: h}
        for r in up_path(self.resolution):
            h = self.blocks[f"b{r}"](h)
            if r in self.links:
                h = self.sle[f"sle{r}"](h, maps[self.links[r]])
            maps[r] = h
        return torch.tanh(self.to_rgb(h))


class Discriminator(nn.Module):
    """``D(x: (B, 3, R, R), y ignored) -> (B, 50)`` patch logits (5x5 of each branch); the losses average them.

    With ``n_real=k`` the first k images are real: the branches run on reals and fakes separately (BatchNorm
    statistics per kind) and the call returns ``(logits, pairs)``, with pairs the decoders' ``(decoded,
    target)`` images for the reals ([] without decoders).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        check(cfg)
        self.n_classes, self.resolution = 1, cfg.resolution
        eps = dict(bn_eps=cfg.bn_eps, sn_eps=cfg.sn_eps)
        start = min(cfg.resolution, TRUNK_MAX)
        self.small_size = small_size(cfg.resolution)

        # Big branch. Stem to `start` px: stride-2 4x4 convs from larger images (BN after all but the first),
        # a 3x3 conv otherwise.
        stem: list[nn.Module] = []
        in_ch = 3
        for r in halvings(cfg.resolution, start):
            stem += [normal_sn_conv(in_ch, d_width(cfg, r), 4, stride=2, padding=1, eps=cfg.sn_eps)]
            stem += [batch_norm(d_width(cfg, r), cfg.bn_eps)] if in_ch != 3 else []
            stem += [nn.LeakyReLU(0.2)]
            in_ch = d_width(cfg, r)
        if not stem:
            stem = [normal_sn_conv(3, d_width(cfg, start), 3, eps=cfg.sn_eps), nn.LeakyReLU(0.2)]
        self.stem = nn.Sequential(*stem)
        self.trunk_res = halvings(start, LAST)
        self.trunk = nn.ModuleDict({
            f"b{r}": DownBlockComp(d_width(cfg, 2 * r), d_width(cfg, r), **eps) for r in self.trunk_res
        })
        self.links = {dst: src for src, dst in d_links(cfg)}
        self.sle = nn.ModuleDict({
            f"sle{dst}": SkipLayerExcitation(d_width(cfg, src), d_width(cfg, dst), sn_eps=cfg.sn_eps)
            for dst, src in self.links.items()
        })
        head = cfg.d_ch * D_HEAD
        self.head_big = nn.Sequential(
            normal_sn_conv(d_width(cfg, LAST), head, 1, eps=cfg.sn_eps), batch_norm(head, cfg.bn_eps),
            nn.LeakyReLU(0.2), normal_sn_conv(head, 1, 4, padding=0, eps=cfg.sn_eps),
        )

        # Small branch on the image resized to small_size: a stride-2 conv, then DownBlocks to 8x8.
        s = self.small_size
        small: list[nn.Module] = [normal_sn_conv(3, d_width(cfg, s // 2, 0.5), 4, stride=2, padding=1,
                                                 eps=cfg.sn_eps), nn.LeakyReLU(0.2)]
        small += [DownBlock(d_width(cfg, 2 * r, 0.5), d_width(cfg, r, 0.5), **eps) for r in halvings(s // 2, LAST)]
        self.small = nn.Sequential(*small)
        self.head_small = normal_sn_conv(d_width(cfg, LAST, 0.5), 1, 4, padding=0, eps=cfg.sn_eps)

        # Decoders (self-supervision, sec. 3.2): 8x8 maps -> small_size RGB images.
        self.decoders = nn.ModuleDict()
        if cfg.decoder:
            widths = [max(1, int(cfg.d_ch / 2 * G_FACTORS[r])) for r in G_FACTORS if LAST < r <= s]
            for name, in_ch in (("big", d_width(cfg, LAST)), ("part", d_width(cfg, 2 * LAST)),
                                ("small", d_width(cfg, LAST, 0.5))):
                self.decoders[name] = Decoder(in_ch, widths, **eps)

    def compile(self, *args, **kwargs) -> None:
        """torch.compile the branches and decoders, not forward: forward draws the decoded quadrant as a Python
        int (a graph break in a compiled forward, and a recompile per quadrant)."""
        self.branches = torch.compile(self.branches, *args, **kwargs)
        for decoder in self.decoders.values():
            decoder.compile(*args, **kwargs)

    @property
    def reconstructs(self) -> bool:
        """Whether the decoders exist (model.decoder; the registry declares it to the loop as a capability)."""
        return len(self.decoders) > 0

    def branches(self, x: Tensor) -> tuple[Tensor, dict[int, Tensor], Tensor]:
        """(logits (B, 50), big-branch maps by resolution, small-branch 8x8 map)."""
        h = self.stem(x)
        maps = {h.shape[-1]: h}
        for r in self.trunk_res:
            h = self.trunk[f"b{r}"](h)
            if r in self.links:
                h = self.sle[f"sle{r}"](h, maps[self.links[r]])
            maps[r] = h
        small = self.small(resize(x, self.small_size))
        with float32_region(x.device):   # logits in float32 under autocast, not a cast after the rounding
            logits = torch.cat([self.head_big(h.float()).flatten(1), self.head_small(small.float()).flatten(1)], dim=1)
        return logits, maps, small

    def reconstructions(self, x: Tensor, maps: dict[int, Tensor], small: Tensor,
                        part: int) -> list[tuple[Tensor, Tensor]]:
        """``(decoded, target)`` pairs for the images `x` whose maps these are; targets are detached data."""
        if not self.reconstructs:
            return []
        x, s = x.detach(), self.small_size
        whole = resize(x, s)
        return [
            (self.decoders["big"](maps[LAST]), whole),
            # clone(): a dense copy at offset 0, so a compiled decoder sees the same strides for every quadrant
            (self.decoders["part"](quadrant(maps[2 * LAST], part).clone()), resize(quadrant(x, part), s)),
            (self.decoders["small"](small), whole),
        ]

    def forward(self, x: Tensor, y: Tensor | None = None,
                n_real: int | None = None) -> Tensor | tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        if n_real is None:
            return self.branches(x)[0]
        logits, pairs = [], []
        if n_real > 0:
            real_logits, maps, small = self.branches(x[:n_real])
            logits.append(real_logits)
            # One quadrant per batch, drawn from the global RNG (seeded per step by the loop).
            part = int(torch.randint(4, ()))   # a CPU draw: no device sync
            pairs = self.reconstructions(x[:n_real], maps, small, part)
        if n_real < x.shape[0]:
            logits.append(self.branches(x[n_real:])[0])
        return torch.cat(logits), pairs
