"""BigGAN and BigGAN-deep: shapes, conditioning, skip-z, projection head, persistence, mixed precision, sizes."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from smallgan.config import ConfigError, ModelConfig
from smallgan.layers.bottleneck_blocks import DeepGBlock
from smallgan.layers.resblocks import GBlock
from smallgan.layers.spectral_norm import SpectralNorm, top_singular_values
from smallgan.models import biggan, biggan_deep
from smallgan.registry import build_discriminator, build_generator, check_model_config, list_architectures

def tiny(arch: str = "biggan", resolution: int = 32, **kw) -> ModelConfig:
    """A few-channel model; attention at 16x16, where even ch=4 gives >= 8 channels."""
    base = dict(arch=arch, resolution=resolution, ch=4, d_ch=4, z_dim=0, shared_dim=8, n_classes=3,
                g_attention=[16], d_attention=[16], hier=True)
    base.update(kw)
    cfg = ModelConfig(**base)
    if not cfg.z_dim:   # a z that splits evenly for this resolution (BigGAN-deep does not split)
        cfg.z_dim = 2 * len(biggan.G_WIDTHS[resolution])
    return cfg


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("arch", ["biggan", "biggan-deep"])
def test_every_layer_spectrally_normalised_and_orthogonally_initialised(arch: str) -> None:
    cfg = tiny(arch, 64, shared_init="ortho")   # the authors' init; the N(0, 1) default: test_quality_fixes.py
    G, D = build_generator(cfg), build_discriminator(cfg)
    layers = [m for net in (G, D) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding))]
    assert len(layers) > 20
    for m in layers:
        sn = parametrize.is_parametrized(m, "weight") and isinstance(m.parametrizations.weight[0], SpectralNorm)
        assert sn == (m is not G.shared), m   # all but G's shared embedding (authors: SN there cripples G)
        w = (m.parametrizations.weight.original if sn else m.weight).detach().flatten(1)
        gram = w @ w.t() if w.shape[0] <= w.shape[1] else w.t() @ w
        torch.testing.assert_close(gram, torch.eye(gram.shape[0]), atol=1e-4, rtol=0)
    assert isinstance(D.head.embed.parametrizations.weight[0], SpectralNorm)


def test_blocks_named_by_resolution_and_attention_as_in_paper() -> None:
    cfg = tiny("biggan", 128, ch=8, d_ch=8, g_attention=[64], d_attention=[64])
    G, D = biggan.Generator(cfg), biggan.Discriminator(cfg)
    assert list(G.blocks) == ["b8", "b16", "b32", "b64", "b128"] and list(G.attention) == ["b64"]
    assert list(D.blocks) == ["b64", "b32", "b16", "b8", "b4", "b4_2"] and list(D.attention) == ["b64"]
    assert G.attention["b64"].channels == 2 * 8 and D.attention["b64"].channels == 8
    deep = dataclasses.replace(cfg, arch="biggan-deep")
    Gd, Dd = biggan_deep.Generator(deep), biggan_deep.Discriminator(deep)
    assert [len(s) for s in Gd.blocks.values()] == [2] * 5 and list(Dd.blocks)[-1] == "b4"
    # 512 px D (not in the authors' code): mirrors the 512 px G table.
    specs = biggan.discriminator_specs(tiny("biggan", 512, d_ch=1))
    assert [(s.in_ch, s.out_ch) for s in specs] == [(3, 1), (1, 1), (1, 2), (2, 4), (4, 8), (8, 8), (8, 16), (16, 16)]
    assert [s.resolution for s in specs] == [256, 128, 64, 32, 16, 8, 4, 4]


@pytest.mark.parametrize("arch", ["biggan", "biggan-deep"])
def test_class_conditioning_and_unconditional(arch: str) -> None:
    cfg = tiny(arch, 64)
    G, D = build_generator(cfg).eval(), build_discriminator(cfg).eval()
    z = torch.randn(2, cfg.z_dim)
    x0, x1 = G(z, torch.tensor([0, 0])), G(z, torch.tensor([1, 1]))
    assert not torch.allclose(x0, x1)
    assert not torch.allclose(D(x0, torch.tensor([0, 0])), D(x0, torch.tensor([2, 2])))
    uncond = dataclasses.replace(cfg, n_classes=1)
    Gu, Du = build_generator(uncond), build_discriminator(uncond)
    assert Du.head.embed is None and n_params(Du) < n_params(D)
    y = torch.zeros(2, dtype=torch.long)
    assert Du(Gu(z, y), y).shape == (2,)


def test_projection_term_is_embedding_dot_features() -> None:
    cfg = tiny("biggan", 32, n_classes=5)
    D = biggan.Discriminator(cfg).eval()
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    y1, y2 = torch.tensor([0, 1, 2]), torch.tensor([4, 3, 2])
    h = D.features(x)
    emb = D.head.embed.weight
    torch.testing.assert_close(D(x, y1) - D(x, y2), ((emb[y1] - emb[y2]) * h).sum(1), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(D(x, y1), D.head.linear(h)[:, 0] + (emb[y1] * h).sum(1), rtol=1e-5, atol=1e-5)


def _record_conditions(G: nn.Module) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    for m in G.modules():
        if isinstance(m, (GBlock, DeepGBlock)):
            m.register_forward_pre_hook(lambda _m, args: seen.append(args[1]))
    return seen


def test_skip_z_chunks_feed_linear_and_blocks() -> None:
    cfg = tiny("biggan", 128, z_dim=18)     # 5 blocks + 1 -> chunks of 3
    G = biggan.Generator(cfg)
    assert G.chunk == 3 and G.linear.in_features == 3
    seen = _record_conditions(G)
    z, y = torch.randn(2, 18), torch.tensor([1, 2])
    G(z, y)
    emb = G.shared(y)
    assert len(seen) == 5
    for i, c in enumerate(seen):
        torch.testing.assert_close(c, torch.cat([emb, z[:, 3 * (i + 1): 3 * (i + 2)]], 1))
    flat = biggan.Generator(dataclasses.replace(cfg, hier=False))
    assert flat.linear.in_features == 18 and flat.blocks["b8"].bn1.gain.in_features == cfg.shared_dim


def test_deep_generator_sees_full_z_everywhere() -> None:
    cfg = tiny("biggan-deep", 64, z_dim=10)
    G = biggan_deep.Generator(cfg)
    seen = _record_conditions(G)
    z, y = torch.randn(2, 10), torch.tensor([0, 1])
    G(z, y)
    assert len(seen) == 2 * 4 and G.linear.in_features == 10 + cfg.shared_dim
    for c in seen:
        torch.testing.assert_close(c, torch.cat([G.shared(y), z], 1))


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"model\.z_dim=100 .* 6 equal chunks.*model\.z_dim=96 or 102"):
        check_model_config(tiny("biggan", 128, z_dim=100))
    check_model_config(tiny("biggan", 128, z_dim=102))
    check_model_config(tiny("biggan", 128, z_dim=100, hier=False))
    check_model_config(tiny("biggan-deep", 128, z_dim=100))   # deep never splits z
    with pytest.raises(ConfigError, match=r"model\.d_attention has 64.*choose from 32, 16, 8, 4"):
        check_model_config(tiny("biggan", 64, d_attention=[64]))
    with pytest.raises(ConfigError, match=r"model\.g_attention has 12"):
        check_model_config(tiny("biggan-deep", 64, g_attention=[12]))
    with pytest.raises(ConfigError, match=r"needs >= 8 channels.*model\.d_ch"):
        check_model_config(tiny("biggan", 128, d_attention=[64]))
    with pytest.raises(ConfigError, match="not supported by biggan-deep"):
        check_model_config(tiny("biggan-deep", 32))
    with pytest.raises(ConfigError, match=r"model\.deep_blocks"):
        check_model_config(tiny("biggan-deep", 64, deep_blocks=0))
    with pytest.raises(ConfigError, match=r"model\.d_ch=1 is too small.*model\.d_ch >= 2"):
        check_model_config(tiny("biggan-deep", 64, d_ch=1, d_attention=[]))
    assert {"biggan", "biggan-deep"} <= set(list_architectures())


@pytest.mark.parametrize("arch", ["biggan", "biggan-deep"])
def test_state_dict_round_trip_and_deepcopy(arch: str) -> None:
    cfg = tiny(arch, 64)
    G, D = build_generator(cfg), build_discriminator(cfg)
    z, y = torch.randn(2, cfg.z_dim), torch.tensor([0, 2])
    G.train()
    for _ in range(2):      # move BN running stats and SN vectors away from their initial values
        D(G(z, y), y)
    sd = G.state_dict()
    sn_keys = [k for k in sd if k.endswith((".u", ".v"))]
    assert len(sn_keys) == 2 * sum(isinstance(m, SpectralNorm) for m in G.modules())
    assert any(k.endswith("running_mean") for k in sd)
    torch.manual_seed(123)
    G2, D2 = build_generator(cfg), build_discriminator(cfg)
    G2.load_state_dict(sd)
    D2.load_state_dict(D.state_dict())
    for a, b in ((G, G2), (D, D2)):
        a.eval(), b.eval()
    torch.testing.assert_close(G2(z, y), G(z, y), rtol=0, atol=0)
    x = G(z, y)
    torch.testing.assert_close(D2(x, y), D(x, y), rtol=0, atol=0)
    ema = copy.deepcopy(G)  # the EMA is a deepcopy of G
    torch.testing.assert_close(ema(z, y), G(z, y), rtol=0, atol=0)
    with torch.no_grad():
        next(ema.parameters()).add_(1.0)
    assert not torch.allclose(ema(z, y), G(z, y))


@pytest.mark.parametrize("arch", ["biggan", "biggan-deep"])
def test_bfloat16_autocast_forward(arch: str) -> None:
    cfg = tiny(arch, 64)
    G, D = build_generator(cfg), build_discriminator(cfg)
    with torch.no_grad():   # make attention non-trivial
        for m in list(G.modules()) + list(D.modules()):
            if hasattr(m, "gamma"):
                m.gamma.fill_(0.5)
    z, y = torch.randn(2, cfg.z_dim), torch.tensor([0, 1])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x = G(z, y)
        out = D(x, y)
    assert torch.isfinite(x).all() and x.abs().max() <= 1
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    out.sum().backward()
    for m in G.modules():
        if isinstance(m, SpectralNorm):
            assert m.u.dtype == torch.float32 and m.v.dtype == torch.float32
    sigmas = top_singular_values(G)
    assert sigmas and all(s > 0 for s in sigmas.values())


def test_paper_parameter_counts() -> None:
    """Paper table 1 row "ch 96, shared, skip-z": G ~70.4M, D ~88.0M at ImageNet 128 px (built on meta: no init cost)."""
    cfg = ModelConfig(arch="biggan", resolution=128, ch=96, d_ch=96, shared_dim=128, z_dim=120, hier=True,
                      n_classes=1000, g_attention=[64], d_attention=[64])
    with torch.device("meta"):
        G, D = biggan.Generator(cfg), biggan.Discriminator(cfg)
        deep = dataclasses.replace(cfg, arch="biggan-deep", ch=128, d_ch=128, z_dim=128)
        Gd, Dd = biggan_deep.Generator(deep), biggan_deep.Discriminator(deep)
    assert n_params(G) == pytest.approx(70.4e6, rel=0.005)
    assert n_params(D) == pytest.approx(88.0e6, rel=0.005)
    # Appendix B: BigGAN-deep is better "with fewer parameters" despite ch 128.
    assert n_params(Gd) + n_params(Dd) < n_params(G) + n_params(D)
