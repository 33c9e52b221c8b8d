"""Architecture registry: a recipe names an architecture (``model.arch``) and this builds it.

The built-in architectures (:mod:`smallgan.models`) are listed here, once; another one joins with
:func:`register`. Nothing else needs to know which architectures exist.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

from torch import nn

from smallgan.errors import ConfigError
from smallgan.models import biggan, biggan_deep, fastgan
from smallgan.models.config import ModelConfig


@dataclass(frozen=True)
class Capabilities:
    """How the training loop drives an architecture's D: declared at registration, never probed on modules."""

    # D(x, y, n_real=k) is told that the first k images are real: its BatchNorm sees reals and fakes as separate
    # batches, and it returns (logits, (decoded, target) pairs for the reals) (FastGAN, sec. 3.2).
    splits_real_fake: bool = False
    # D decodes real images: the loop adds FastGAN's reconstruction loss (LPIPS) to D's objective.
    reconstructs: bool = False
    # D.stages() lists its blocks from the input on, each with what runs with it: train.freeze_d counts them.
    d_stages: bool = False


def _plain(cfg: ModelConfig) -> Capabilities:
    return Capabilities()


@dataclass(frozen=True)
class Architecture:
    name: str
    generator: Callable[[ModelConfig], nn.Module]       # built from a config whose n_classes >= 1
    discriminator: Callable[[ModelConfig], nn.Module]
    resolutions: tuple[int, ...]
    check: Callable[[ModelConfig], None] | None = None  # raises ConfigError for impossible settings
    description: str = ""
    # A function of the config, as ablation switches remove parts (FastGAN's model.decoder=false).
    capabilities: Callable[[ModelConfig], Capabilities] = _plain


_ARCHITECTURES: dict[str, Architecture] = {}


def register(arch: Architecture) -> Architecture:
    _ARCHITECTURES[arch.name] = arch
    return arch


register(Architecture(
    name="biggan",
    generator=biggan.Generator,
    discriminator=biggan.Discriminator,
    resolutions=tuple(biggan.G_WIDTHS),
    check=biggan.check,
    description="BigGAN (Brock et al. 2019): ResBlocks, skip-z, shared embedding, projection D",
    capabilities=lambda cfg: Capabilities(d_stages=True),
))
register(Architecture(
    name="biggan-deep",
    generator=biggan_deep.Generator,
    discriminator=biggan_deep.Discriminator,
    resolutions=biggan_deep.RESOLUTIONS,
    check=biggan_deep.check,
    description="BigGAN-deep: bottleneck ResBlocks, 2 per resolution, full z in every CBN (64-512 px)",
    capabilities=lambda cfg: Capabilities(d_stages=True),
))
register(Architecture(
    name="fastgan",
    generator=fastgan.Generator,
    discriminator=fastgan.Discriminator,
    resolutions=fastgan.RESOLUTIONS,
    check=fastgan.check,
    description="FastGAN (Liu et al. 2021): GLU up-blocks, skip-layer excitation, self-supervised D (64-1024 px)",
    capabilities=lambda cfg: Capabilities(splits_real_fake=True, reconstructs=cfg.decoder),
))


def list_architectures() -> list[str]:
    return sorted(_ARCHITECTURES)


def get_architecture(name: str) -> Architecture:
    if name not in _ARCHITECTURES:
        raise ConfigError(f"unknown model.arch {name!r}; available: {', '.join(sorted(_ARCHITECTURES))}")
    return _ARCHITECTURES[name]


def resolved(cfg: ModelConfig, n_classes: int | None = None) -> ModelConfig:
    """A copy with n_classes filled in (from the dataset when the recipe says 0) and d_ch resolved."""
    n = cfg.n_classes or n_classes or 1
    return dataclasses.replace(cfg, n_classes=n, d_ch=cfg.d_ch or cfg.ch)


def capabilities(cfg: ModelConfig) -> Capabilities:
    """What the architecture of `cfg` declares for the training loop (see :class:`Capabilities`)."""
    return get_architecture(cfg.arch).capabilities(resolved(cfg))


def capabilities_of(module: nn.Module) -> Capabilities:
    """The capabilities of the registered architecture whose G or D class built `module`, under its default
    config (plain ones for unregistered modules): for code handed bare modules, such as GANPhases in tests."""
    for arch in _ARCHITECTURES.values():
        classes = tuple(c for c in (arch.generator, arch.discriminator) if isinstance(c, type))
        if classes and isinstance(module, classes):
            return arch.capabilities(resolved(ModelConfig(arch=arch.name)))
    return Capabilities()


def check_model_config(cfg: ModelConfig) -> None:
    arch = get_architecture(cfg.arch)
    if cfg.resolution not in arch.resolutions:
        sizes = ", ".join(map(str, arch.resolutions))
        raise ConfigError(f"model.resolution={cfg.resolution} is not supported by {cfg.arch}; choose one of {sizes}")
    if arch.check is not None:
        arch.check(resolved(cfg))


def build_generator(cfg: ModelConfig, n_classes: int | None = None) -> nn.Module:
    cfg = resolved(cfg, n_classes)
    check_model_config(cfg)
    return get_architecture(cfg.arch).generator(cfg)


def build_discriminator(cfg: ModelConfig, n_classes: int | None = None) -> nn.Module:
    cfg = resolved(cfg, n_classes)
    check_model_config(cfg)
    return get_architecture(cfg.arch).discriminator(cfg)


def count_params(module: nn.Module) -> int:
    """Parameters of a module (or a network on the meta device: counting allocates nothing)."""
    return sum(p.numel() for p in module.parameters())
