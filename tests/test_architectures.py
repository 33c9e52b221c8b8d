"""What every registered architecture must do, whichever it is: the tests iterate the registry (as timm's tests
iterate ``list_models()``), so an architecture added to it is tested here without a line of new test code.

Architecture-specific behaviour (skip-z, SLE, decoders, paper parameter counts) is in test_models.py and
test_fastgan.py.
"""

from __future__ import annotations

import copy
import inspect

import pytest
import torch

from smallgan.errors import ConfigError
from smallgan.registry import build_discriminator, build_generator, count_params, get_architecture, list_architectures
from tiny import tiny_model as tiny

ARCHS = list_architectures()
# From 256 px on, building and running even a few-channel network takes seconds on a CPU.
ARCH_RESOLUTIONS = [pytest.param(a, r, marks=[pytest.mark.slow] if r >= 256 else [])
                    for a in ARCHS for r in get_architecture(a).resolutions]


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


@pytest.mark.parametrize("arch,res", ARCH_RESOLUTIONS)
def test_backward_reaches_every_parameter(arch: str, res: int) -> None:
    """Every parameter of G and D takes part in a training step (DDP without find_unused_parameters needs it);
    with the reconstruction decoders of a D that has them (FastGAN: D(x, y, n_real=...))."""
    torch.manual_seed(0)
    cfg = tiny(arch, res)
    G, D = build_generator(cfg), build_discriminator(cfg)
    z, y = torch.randn(2, cfg.z_dim), torch.arange(2) % cfg.n_classes
    x = G(z, y)
    assert x.shape == (2, 3, res, res) and x.abs().max() <= 1 and torch.isfinite(x).all()
    if "n_real" in inspect.signature(D.forward).parameters:
        logits, pairs = D(x, y, n_real=2)
        loss = logits.sum() + sum((a - b).abs().mean() for a, b in pairs)
    else:
        loss = D(x, y).sum()
    loss.backward()
    missing = [n for n, p in [*G.named_parameters(), *D.named_parameters()] if p.grad is None]
    assert not missing, missing


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_one_trainer_iteration(arch: str, tmp_path) -> None:
    """The real loop's iteration (D steps, G step, EMA) on every registered architecture, at its smallest
    resolution and a few channels: finite losses, and G's weights move."""
    from smallgan.bench import bench_config, synthetic_images
    from smallgan.training.loop import Trainer

    cfg = bench_config(arch, min(get_architecture(arch).resolutions), 4, 4, 1, "no",
                       [f"train.out_dir={tmp_path}", "train.name=run", "model.g_attention=[]",
                        "model.d_attention=[]"])
    trainer = Trainer(cfg, dataset=synthetic_images(cfg, 8))
    before = {k: v.detach().clone() for k, v in trainer.G.named_parameters()}
    losses = trainer.train_iteration()
    assert losses and all(torch.isfinite(v).all() for v in losses.values()), losses
    assert any(not torch.equal(before[k], v) for k, v in trainer.G.named_parameters())


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
