"""Built-in architectures; importing this package registers them (smallgan.registry)."""

from smallgan.models import biggan, biggan_deep, fastgan
from smallgan.registry import Architecture, Capabilities, register

register(Architecture(
    name="biggan",
    generator=biggan.Generator,
    discriminator=biggan.Discriminator,
    resolutions=tuple(biggan.G_WIDTHS),
    check=biggan.check,
    description="BigGAN (Brock et al. 2019): ResBlocks, skip-z, shared embedding, projection D",
))
register(Architecture(
    name="biggan-deep",
    generator=biggan_deep.Generator,
    discriminator=biggan_deep.Discriminator,
    resolutions=biggan_deep.RESOLUTIONS,
    check=biggan_deep.check,
    description="BigGAN-deep: bottleneck ResBlocks, 2 per resolution, full z in every CBN (64-512 px)",
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
