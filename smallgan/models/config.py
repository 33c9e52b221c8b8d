"""The model section of the config (``[model]`` in a recipe): what every architecture is built from.

It lives here, below :mod:`smallgan.config`, because the architectures read it and the config validates it
through the registry that builds them; :mod:`smallgan.config` re-exports it with the other sections.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ModelConfig:
    arch: str = "biggan"              # registry name: biggan | biggan-deep | fastgan (see smallgan.registry)
    resolution: int = 64              # output size in pixels (square)
    ch: int = 64                      # G width multiplier (the paper's ch; 96 for ImageNet, 64 in ablations)
    d_ch: int = 0                     # D width multiplier; 0 = same as ch
    z_dim: int = 120                  # latent size; with hier=True it must split evenly over the G blocks + 1
    shared_dim: int = 128             # shared class-embedding size (paper: 128)
    # Shared embedding init: normal (N(0, 1): the class weighs as much as z in every CBN from step 0) | ortho (the
    # authors' code: norm <= 1). normal doubled class accuracy on builtin:digits in 3 CPU minutes (0.18 -> 0.42,
    # benchmarks/quality.py) and was neutral on builtin:shapes; see layers/conditional_bn.py.
    shared_init: str = "normal"
    hier: bool = True                 # hierarchical latents (skip-z); BigGAN-deep ignores it (z is never split)
    n_classes: int = 0                # 0 = take it from the dataset; 1 = unconditional
    # Feature-map resolutions with self-attention (the paper: 64 in G and D at 128 px; here 32 for the 64 px default).
    g_attention: list[int] = field(default_factory=lambda: [32])
    d_attention: list[int] = field(default_factory=lambda: [32])
    bn_eps: float = 1e-5              # BatchNorm eps (authors' launch scripts)
    sn_eps: float = 1e-6              # spectral-norm eps (authors' code)
    deep_blocks: int = 2              # BigGAN-deep: ResBlocks per resolution (paper: 2)
    sle: bool = True                  # FastGAN: skip-layer excitation in G and D (false = the paper's "w/o SLE")
    decoder: bool = True              # FastGAN: D's decoders + LPIPS reconstruction of reals (false = "w/o decoder")

