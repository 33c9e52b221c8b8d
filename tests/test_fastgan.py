"""FastGAN: shapes, SLE, decoders and their crops, reconstruction on reals only, ablations, LPIPS loading."""

from __future__ import annotations

import dataclasses
import os
import shutil

import pytest
import torch
from accelerate import Accelerator
from torch import nn
from torch.nn.utils import parametrize

from smallgan.augment import DiffAugment
from smallgan.config import ConfigError, ModelConfig, load_config
from smallgan.errors import SmallganError
from smallgan.layers.excitation import SkipLayerExcitation
from smallgan.layers.fastgan_blocks import NoiseInjection, quadrant, resize
from smallgan.layers.spectral_norm import SpectralNorm
from smallgan.losses import D_LOSSES
from smallgan.models import fastgan
from smallgan.perceptual import VGG_FILE, build_lpips, resolve_vgg_weights, unit_normalize
from smallgan.registry import build_discriminator, build_generator
from smallgan.training.loss import GANLoss
from smallgan.training.phases import GANPhases, optimizer_step


def tiny(resolution: int = 64, **kw) -> ModelConfig:
    base = dict(arch="fastgan", resolution=resolution, ch=4, d_ch=4, z_dim=16, n_classes=1, g_attention=[],
                d_attention=[])
    base.update(kw)
    return ModelConfig(**base)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


class L1Distance(nn.Module):
    """A stand-in for LPIPS with its output shape (B, 1, 1, 1); records the batches it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        self.calls.append((a.detach(), b.detach()))
        return (a - b).abs().mean(dim=(1, 2, 3), keepdim=True)


def phases_for(G: nn.Module, D: nn.Module, perceptual: nn.Module | None, micro_batch: int = 2) -> GANPhases:
    return GANPhases(accelerator=Accelerator(cpu=True), G=G, D=D, G_raw=G, D_raw=D, augment=DiffAugment(""),
                     loss=GANLoss(D_LOSSES["fastgan-hinge"], perceptual=perceptual), micro_batch=micro_batch,
                     accumulation=1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def random_lpips() -> nn.Module:
    torch.manual_seed(0)
    return build_lpips("random")   # the path real weights take, with an untrained trunk (no download)


@pytest.mark.parametrize("res", fastgan.RESOLUTIONS)
def test_shapes_and_range_at_every_resolution(res: int) -> None:
    cfg = tiny(res)
    G, D = build_generator(cfg), build_discriminator(cfg)
    with torch.no_grad():
        x = G(torch.randn(2, 16), torch.zeros(2, dtype=torch.long))
        assert x.shape == (2, 3, res, res) and x.abs().max() <= 1 and torch.isfinite(x).all()
        logits, pairs = D(x, n_real=1)
    s = fastgan.small_size(res)
    assert logits.shape == (2, 50)                    # 5x5 patch logits of each branch
    assert len(pairs) == 3 and all(a.shape == b.shape == (1, 3, s, s) for a, b in pairs)
    assert s == min(128, res // 2)


def test_every_parameter_trains() -> None:
    cfg = tiny(128)    # SLE 4->64 and 8->128 in G, 128->16 and 64->8 in D, all three decoders
    G, D = build_generator(cfg), build_discriminator(cfg)
    x = G(torch.randn(2, 16))
    logits, pairs = D(x, n_real=1)
    (logits.mean() + sum((a - b).abs().mean() for a, b in pairs)).backward()
    # Every parameter of both networks takes part (DDP without find_unused_parameters needs this).
    missing = [n for n, p in [*G.named_parameters(), *D.named_parameters()] if p.grad is None]
    assert not missing, missing[:5]
    assert D(x.detach()).shape == (2, 50)             # the G phase's call: logits only


def test_convs_spectrally_normalised_and_initialised_n_0_002() -> None:
    cfg = tiny(64, ch=16, d_ch=16)
    for net in (build_generator(cfg), build_discriminator(cfg)):
        convs = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        assert convs and all(parametrize.is_parametrized(m, "weight") for m in convs)
        assert all(isinstance(m.parametrizations.weight[0], SpectralNorm) for m in convs)
        raw = torch.cat([m.parametrizations.weight.original.flatten() for m in convs])
        assert 0.018 < raw.std().item() < 0.022 and abs(raw.mean().item()) < 1e-3
        bn = torch.cat([m.weight for m in net.modules() if isinstance(m, nn.BatchNorm2d)])
        assert abs(bn.mean().item() - 1) < 0.01 and 0.01 < bn.std().item() < 0.03


def test_sle_gates_the_high_map_by_the_low_map() -> None:
    sle = SkipLayerExcitation(low_ch=6, high_ch=5).eval()   # eval: no power iteration between calls
    high, low = torch.randn(2, 5, 16, 16), torch.randn(2, 6, 4, 4)
    out = sle(high, low)
    gate = out / high
    # One gate per (image, channel), in (0, 1), the same at every pixel.
    assert torch.allclose(gate, gate[..., :1, :1].expand_as(gate), atol=1e-5)
    assert (gate > 0).all() and (gate < 1).all()
    assert not torch.allclose(sle(high, low + torch.randn_like(low)), out)
    assert torch.equal(sle(high, low), out)           # and nothing else changes it

    # In G the 64x64 map is gated by the 4x4 map; the link is the only one at 64 px.
    G = build_generator(tiny(64))
    assert list(G.sle) == ["sle64"]
    seen = {}
    G.sle["sle64"].register_forward_hook(lambda m, args, out: seen.update(high=args[0], low=args[1]))
    G(torch.randn(2, 16))
    assert seen["high"].shape[-1] == 64 and seen["low"].shape[-1] == 4
    assert sorted(build_generator(tiny(256)).sle) == ["sle128", "sle256", "sle64"]
    assert sorted(build_generator(tiny(1024)).sle) == ["sle1024", "sle128", "sle256", "sle512", "sle64"]


def test_decoders_reconstruct_the_whole_image_and_the_matching_quadrant() -> None:
    D = build_discriminator(tiny(128))
    s = fastgan.small_size(128)
    # Each quadrant of the real image has its own constant colour, so a target shows which crop it is.
    x = torch.zeros(2, 3, 128, 128)
    values = [-0.75, -0.25, 0.25, 0.75]
    for part, v in enumerate(values):
        quadrant(x, part).fill_(v)
    _, maps, small = D.branches(x)
    seen = []
    D.decoders["part"].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    decoded = []
    for part in range(4):
        (big, whole), (rec_part, target), (rec_small, whole2) = D.reconstructions(x, maps, small, part)
        assert big.shape == rec_part.shape == rec_small.shape == (2, 3, s, s)
        assert torch.equal(whole, resize(x, s)) and torch.equal(whole2, whole)
        assert torch.allclose(target, torch.full_like(target, values[part]))
        # The part decoder sees the matching 8x8 quadrant of the 16x16 feature map.
        assert seen[-1].shape[-1] == 8 and torch.equal(seen[-1], quadrant(maps[16], part))
        decoded.append(rec_part)
    assert not torch.allclose(decoded[0], decoded[3])


def test_reconstruction_loss_only_on_real_images() -> None:
    G, D = build_generator(tiny(64)), build_discriminator(tiny(64))
    for m in D.modules():   # freeze the power iteration so that repeated calls see the same weights
        if isinstance(m, SpectralNorm):
            m.train(False)
    real = torch.rand(2, 3, 64, 64) * 2 - 1
    x = torch.cat([real, torch.rand(3, 3, 64, 64) * 2 - 1]).requires_grad_(True)
    logits, pairs = D(x, n_real=2)
    assert logits.shape == (5, 50) and all(a.shape[0] == 2 for a, _ in pairs)
    (grad,) = torch.autograd.grad(sum((a - b).abs().mean() for a, b in pairs), x)
    assert grad[2:].abs().max() == 0 and grad[:2].abs().max() > 0
    # BatchNorm sees reals and fakes separately: the real logits do not depend on which fakes came along.
    other = torch.cat([real, torch.rand(3, 3, 64, 64)])
    assert torch.allclose(D(other, n_real=2)[0][:2], logits[:2], atol=1e-5)

    # Through the training phase: the perceptual loss is called on the reals only, against the reals.
    spy = L1Distance()
    phases = phases_for(G, D, spy)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    result = phases.discriminator(lambda: (real, torch.zeros(2, dtype=torch.long)), scaler, p=1.0)
    assert len(spy.calls) == 3 and all(a.shape[0] == 2 for a, _ in spy.calls)
    assert torch.equal(spy.calls[0][1], resize(real, fastgan.small_size(64)))
    assert result.terms["recon"] > 0


def test_a_few_cpu_steps_reduce_the_reconstruction_loss_on_a_fixed_batch(random_lpips) -> None:
    cfg = tiny(64)
    G, D = build_generator(cfg), build_discriminator(cfg)
    phases = phases_for(G, D, random_lpips, micro_batch=1)
    opt = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))   # the recipe's optimiser
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    # A fixed real image (blocky noise), the same at every step.
    real = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8) * 2 - 1, scale_factor=8)
    y = torch.zeros(1, dtype=torch.long)

    def recon() -> float:
        torch.manual_seed(1)   # the same quadrant each time
        with torch.no_grad():
            return phases.loss.reconstruction(D(real, n_real=1)[1]).item()

    before = recon()
    for _ in range(3):
        phases.discriminator(lambda: (real, y), scaler, p=1.0)
        assert float(optimizer_step(opt, scaler, list(D.parameters()))) == 0.0   # not skipped
    assert recon() < 0.95 * before


def test_ablation_switches_remove_the_parts() -> None:
    full = tiny(256, ch=8, d_ch=8)
    G, D = build_generator(full), build_discriminator(full)
    G_no_sle = build_generator(dataclasses.replace(full, sle=False))
    D_no_sle = build_discriminator(dataclasses.replace(full, sle=False))
    D_no_dec = build_discriminator(dataclasses.replace(full, decoder=False))
    sle_g = sum(n_params(m) for m in G.modules() if isinstance(m, SkipLayerExcitation))
    sle_d = sum(n_params(m) for m in D.modules() if isinstance(m, SkipLayerExcitation))
    assert sle_g > 0 and sle_d > 0
    assert n_params(G_no_sle) == n_params(G) - sle_g and n_params(D_no_sle) == n_params(D) - sle_d
    assert not [m for m in (*G_no_sle.modules(), *D_no_sle.modules()) if isinstance(m, SkipLayerExcitation)]
    assert D.reconstructs and not D_no_dec.reconstructs
    assert n_params(D_no_dec) == n_params(D) - n_params(D.decoders)
    # Without decoders the D phase runs without any perceptual loss and reconstructs nothing.
    x = torch.rand(2, 3, 256, 256) * 2 - 1
    assert D_no_dec(x, n_real=1)[1] == []
    phases = phases_for(G, D_no_dec, None, micro_batch=1)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    result = phases.discriminator(lambda: (x[:1], torch.zeros(1, dtype=torch.long)), scaler, p=1.0)
    assert torch.isfinite(result.loss) and "recon" not in result.terms


def test_noise_injection_starts_off_and_adds_noise_once_learned() -> None:
    noise = NoiseInjection()
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(noise(x), x)
    with torch.no_grad():
        noise.weight.fill_(0.5)
    diff = noise(x) - x
    assert diff.abs().max() > 0 and torch.allclose(diff, diff[:, :1].expand_as(diff))  # one value per pixel


def test_recipes_and_config_checks() -> None:
    cfg = load_config("fastgan-anime256")
    t = cfg.train
    assert (cfg.model.arch, cfg.model.resolution, cfg.model.z_dim, t.loss) == ("fastgan", 256, 256, "fastgan-hinge")
    assert (t.g_lr, t.d_lr, t.betas, t.batch, t.ema_start_kimg) == (2e-4, 2e-4, [0.5, 0.999], 8, 0)
    assert 0.5 ** (t.batch * t.d_steps / (t.ema_halflife_kimg * 1000)) == pytest.approx(0.999, abs=1e-7)  # per step
    with pytest.raises(ConfigError, match="model.n_classes=1"):
        load_config("fastgan-tiny64", ["model.n_classes=3"])
    with pytest.raises(ConfigError, match="model.n_classes=1"):
        build_generator(tiny(64, n_classes=0), n_classes=5)    # classes from a dataset are refused too
    with pytest.raises(ConfigError, match="g_attention"):
        load_config("fastgan-tiny64", ["model.g_attention=[32]"])
    with pytest.raises(ConfigError, match="64, 128, 256, 512, 1024"):
        load_config("fastgan-tiny64", ["model.resolution=32"])


# ---------------------------------------------------------------------------------------------
# LPIPS weights: resolved offline, a clear error when missing, loaded into the trunk when given


def test_lpips_without_weights_offline_says_where_to_put_them() -> None:
    with pytest.raises(SmallganError, match=VGG_FILE) as err:
        build_lpips()
    assert "--lpips-weights" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(SmallganError, match="does not exist"):
        build_lpips("/nonexistent/vgg16.pth")


def test_lpips_loads_a_vgg_file_into_its_trunk(tmp_path, random_lpips, monkeypatch) -> None:
    random_net = random_lpips
    # A file laid out as torchvision's vgg16-397923af.pth (features.<i>.*), with values of our own.
    state = {}
    for key, value in random_net.trunk.state_dict().items():
        _, index, kind = key.split(".")
        state[f"features.{index}.{kind}"] = torch.randn_like(value) * 0.05
    path = tmp_path / VGG_FILE
    torch.save(state, path)
    net = build_lpips(str(path))
    loaded = net.trunk.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in zip(random_net.trunk.state_dict(), state.values()))
    assert not any(p.requires_grad for p in net.parameters()) and not net.training
    a = torch.rand(1, 3, 16, 16) * 2 - 1
    assert net(a, a).item() == pytest.approx(0.0, abs=1e-6) and net(a, -a).item() > 0
    # Found in torch.hub's cache without being named (a cache of this test's own: the session's stays empty);
    # a wrong file is refused in one line.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache = torch.hub.get_dir() + "/checkpoints"
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(SmallganError, match="not a plain weights file"):
        build_lpips(str(tmp_path / "bad.pth"))
    torch.save({"features.0.weight": state["features.0.weight"]}, tmp_path / "partial.pth")
    with pytest.raises(SmallganError, match="does not hold VGG-16 weights"):
        build_lpips(str(tmp_path / "partial.pth"))
    os.makedirs(cache, exist_ok=True)
    shutil.copy(path, cache)
    assert str(resolve_vgg_weights()) == os.path.join(cache, VGG_FILE)


@pytest.mark.filterwarnings("ignore::UserWarning")   # lpips' own torchvision call is deprecated
def test_perceptual_distance_is_lpips_with_a_finite_gradient_at_zero_features(random_lpips) -> None:
    import lpips

    ours = random_lpips
    reference = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False).eval()
    reference.net.load_state_dict(ours.trunk.state_dict())
    a, b = torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.allclose(ours(a, b), reference(a, b), rtol=1e-5, atol=1e-7)
    assert ours(a, b).shape == (2, 1, 1, 1) and (ours(a, b) > 0).all()
    dead = torch.zeros(1, 8, 2, 2, requires_grad=True)     # a location where every channel is zero
    unit_normalize(dead).sum().backward()
    assert torch.isfinite(dead.grad).all()
