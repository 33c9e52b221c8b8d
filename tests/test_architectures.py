"""What every registered architecture must do, whichever it is: the tests iterate the registry (as timm's tests
iterate ``list_models()``), so an architecture added to it is tested here without a line of new test code.

Architecture-specific behaviour (skip-z, SLE, decoders, paper parameter counts) is in test_models.py and
test_fastgan.py.
"""

from __future__ import annotations

import copy

import pytest
import torch

from smallgan.errors import ConfigError
from smallgan.models.config import ModelConfig
from smallgan.registry import (
    build_discriminator, build_generator, check_model_config, count_params, get_architecture, list_architectures,
)

ARCHS = list_architectures()
# From 256 px on, building and running even a few-channel network takes seconds on a CPU.
ARCH_RESOLUTIONS = [pytest.param(a, r, marks=[pytest.mark.slow] if r >= 256 else [])
                    for a in ARCHS for r in get_architecture(a).resolutions]


def tiny(arch: str, resolution: int | None = None, **kw) -> ModelConfig:
    """A few-channel config the architecture accepts: conditional (3 classes) where it takes classes."""
    resolution = resolution or min(get_architecture(arch).resolutions)
    for n_classes in (3, 1):
        base = dict(arch=arch, resolution=resolution, ch=4, d_ch=4, z_dim=16, shared_dim=8, hier=False,
                    n_classes=n_classes, g_attention=[], d_attention=[])
        cfg = ModelConfig(**{**base, **kw})
        try:
            check_model_config(cfg)
        except ConfigError:
            continue
        return cfg
    raise AssertionError(f"no tiny config that {arch} accepts")


def test_the_builtin_architectures_are_registered():
    assert {"biggan", "biggan-deep", "fastgan"} <= set(ARCHS)
    assert all(get_architecture(a).description for a in ARCHS)


@pytest.mark.parametrize("arch,res", ARCH_RESOLUTIONS)
def test_generator_and_discriminator_shapes_at_every_resolution(arch: str, res: int) -> None:
    torch.manual_seed(0)
    cfg = tiny(arch, res)
    G, D = build_generator(cfg).eval(), build_discriminator(cfg).eval()
    assert (G.z_dim, G.n_classes, G.resolution) == (cfg.z_dim, cfg.n_classes, res)
    z, y = torch.randn(2, cfg.z_dim), torch.arange(2) % cfg.n_classes
    with torch.no_grad():
        x = G(z, y)
        logits = D(x, y)
    assert x.shape == (2, 3, res, res) and x.abs().max() <= 1 and torch.isfinite(x).all()
    assert logits.shape[0] == 2 and logits.dtype == torch.float32 and torch.isfinite(logits).all()


@pytest.mark.parametrize("arch", ARCHS)
def test_parameter_counts_are_the_same_on_the_meta_device_and_grow_with_width(arch: str) -> None:
    cfg = tiny(arch)
    G, D = build_generator(cfg), build_discriminator(cfg)
    with torch.device("meta"):   # what `smallgan info` counts: nothing allocated
        G_meta, D_meta = build_generator(cfg), build_discriminator(cfg)
        G_wide, D_wide = build_generator(tiny(arch, ch=8)), build_discriminator(tiny(arch, d_ch=8))
    assert count_params(G) == count_params(G_meta) == sum(p.numel() for p in G.parameters()) > 0
    assert count_params(D) == count_params(D_meta) > 0
    assert count_params(G_wide) > count_params(G) and count_params(D_wide) > count_params(D)


@pytest.mark.parametrize("arch", ARCHS)
def test_state_dict_round_trip_and_deepcopy(arch: str) -> None:
    torch.manual_seed(0)
    cfg = tiny(arch)
    G = build_generator(cfg)
    z, y = torch.randn(2, cfg.z_dim), torch.arange(2) % cfg.n_classes
    with torch.no_grad():
        G(z, y)   # a train-mode pass moves BatchNorm statistics off their initial values
    torch.manual_seed(1)
    again = build_generator(cfg)
    again.load_state_dict(G.state_dict())
    copied = copy.deepcopy(G)   # the EMA generator is a deepcopy
    outputs = []
    for net in (G, again, copied):
        torch.manual_seed(2)   # the same per-pixel noise where the architecture injects some
        with torch.no_grad():
            outputs.append(net.eval()(z, y))
    torch.testing.assert_close(outputs[1], outputs[0], rtol=0, atol=0)
    torch.testing.assert_close(outputs[2], outputs[0], rtol=0, atol=0)
