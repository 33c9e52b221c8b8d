"""Spectral norm that compiles, and a training step that compiles whole (issue 27).

* The spectral-norm layers (one class per base layer) compute what the ``torch.nn.utils.parametrize`` layout
  computed, with the same state-dict keys: bit for bit with per-layer power iterations (the CPU's), to float
  rounding with the batched ones (other devices').
* ``train.compile=true`` traces G and D with no graph break and no recompile after the first iteration, for
  every registered architecture. Dynamo's counters decide; the "eager" backend traces exactly what inductor
  would be given without generating code, so the test is cheap on a CPU.
"""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch._dynamo.utils import counters
from torch.nn.utils import parametrize

import smallgan.layers.fastgan_blocks as fastgan_blocks
import smallgan.layers.spectral_norm as sn_module
import smallgan.models.fastgan as fastgan_model
from smallgan.bench import SyntheticImages, bench_config
from smallgan.layers.spectral_norm import SpectralNorm, _spectral_norms, power_iteration_

batched_power_iteration = partial(power_iteration_, batched=True)   # the GPU's path, here on the CPU
from smallgan.registry import build_discriminator, build_generator, list_architectures
from tiny import tiny_model as tiny

ARCHS = list_architectures()


def _parametrize_spectral_norm(module: torch.nn.Module, eps: float = 1e-6) -> torch.nn.Module:
    """The layout before issue 27: torch's parametrize, a ``Parametrized*`` class per layer."""
    parametrize.register_parametrization(module, "weight", SpectralNorm(module.weight, eps))
    return module


def _per_layer_power_iteration(module: torch.nn.Module) -> None:
    """The power iteration before issue 27: one layer at a time, matrix-vector products."""
    for sn, weight in _spectral_norms(module):
        if weight.requires_grad:
            sn._power_iteration(weight.detach().float().flatten(1), 1)


def _build(arch: str, monkeypatch, old: bool) -> tuple[torch.nn.Module, torch.nn.Module]:
    with monkeypatch.context() as m:
        if old:
            for mod in (sn_module, fastgan_blocks, fastgan_model):
                m.setattr(mod, "spectral_norm", _parametrize_spectral_norm)
        torch.manual_seed(0)
        cfg = tiny(arch)
        return build_generator(cfg), build_discriminator(cfg)


def _once_per_step(*nets: torch.nn.Module) -> None:
    """As the training loop has it: no power iteration inside forward, one per step."""
    for net in nets:
        for mod in net.modules():
            if isinstance(mod, SpectralNorm):
                mod.iterate_in_forward = False


def _steps(G, D, iterate, n_classes: int, z_dim: int, steps: int = 3) -> dict[str, list[torch.Tensor]]:
    """`steps` power iterations + forward/backward through G and D: D's outputs, then the gradients and the
    spectral-norm vectors."""
    torch.manual_seed(1)
    out: dict[str, list[torch.Tensor]] = {"logits": [], "grads": [], "vectors": []}
    for _ in range(steps):
        iterate(G), iterate(D)
        z, y = torch.randn(4, z_dim), torch.arange(4) % n_classes
        logits = D(G(z, y), y)
        logits = logits if isinstance(logits, torch.Tensor) else logits[0]
        G.zero_grad(), D.zero_grad()
        logits.float().square().mean().backward()
        out["logits"].append(logits.detach())
    for net in (G, D):
        out["grads"] += [p.grad for p in net.parameters() if p.grad is not None]
        out["vectors"] += [t for sn, _ in _spectral_norms(net) for t in (sn.u, sn.v)]
    return out


@pytest.mark.parametrize("arch", ARCHS)
def test_spectral_norm_matches_the_parametrize_implementation(arch, monkeypatch):
    G, D = _build(arch, monkeypatch, old=False)
    G0, D0 = _build(arch, monkeypatch, old=True)
    assert len(set(map(type, (m for m in G0.modules() if parametrize.is_parametrized(m))))) > 3   # the old layout
    for new, old in ((G, G0), (D, D0)):
        assert list(new.state_dict()) == list(old.state_dict())       # checkpoints, converter, fixture
        for k, v in old.state_dict().items():
            torch.testing.assert_close(new.state_dict()[k], v, rtol=0, atol=0)
        sn_types = {type(m) for m in new.modules() if parametrize.is_parametrized(m)}
        assert sn_types and len(sn_types) <= 4                           # one class per base layer type
    _once_per_step(G, D, G0, D0)
    cfg = tiny(arch)
    new = _steps(G, D, batched_power_iteration, cfg.n_classes, cfg.z_dim)
    old = _steps(G0, D0, _per_layer_power_iteration, cfg.n_classes, cfg.z_dim)
    # To 1e-6 of each group's largest magnitude (the batched products sum in another order than the per-layer
    # ones): a conv bias before a BatchNorm has a true gradient of zero, so its gradient is float noise, a few
    # ulps of the large ones, that no two summation orders share.
    for key in ("logits", "grads", "vectors"):
        assert len(new[key]) == len(old[key]) > 2
        scale = max(t.abs().max().item() for t in old[key])
        for a, b in zip(new[key], old[key]):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6 * scale)


def test_on_the_cpu_the_new_layers_compute_bit_for_bit_what_parametrize_did(monkeypatch):
    (G, D), (G0, D0) = _build("biggan", monkeypatch, old=False), _build("biggan", monkeypatch, old=True)
    _once_per_step(G, D, G0, D0)
    cfg = tiny("biggan")
    new = _steps(G, D, power_iteration_, cfg.n_classes, cfg.z_dim)   # per layer on the CPU
    old = _steps(G0, D0, _per_layer_power_iteration, cfg.n_classes, cfg.z_dim)
    for key in new:
        assert all(torch.equal(a, b) for a, b in zip(new[key], old[key], strict=True)), key


@pytest.mark.parametrize("batched", [True, False])
def test_power_iteration_leaves_frozen_weights_alone(batched):
    torch.manual_seed(0)
    G = build_generator(tiny("biggan"))
    sns = _spectral_norms(G)
    frozen, trained = sns[0], sns[-1]
    frozen[1].requires_grad_(False)
    with torch.no_grad():
        for _, w in sns:
            w.mul_(torch.rand_like(w))   # no longer the weights the vectors were iterated on
    before = [(sn.u.clone(), sn.v.clone()) for sn in (frozen[0], trained[0])]
    power_iteration_(G, batched=batched)
    assert torch.equal(frozen[0].u, before[0][0]) and torch.equal(frozen[0].v, before[0][1])
    assert not torch.equal(trained[0].u, before[1][0])


def _trainer(arch: str, tmp_path, backend: str):
    from smallgan.training.loop import Trainer

    res = 64 if arch != "biggan" else 32
    cfg = bench_config(arch, res, 4, 4, 2, "no", ["train.compile=true", f"train.compile_backend={backend}"])
    n = 16
    data = SyntheticImages(torch.randint(0, 256, (n, 3, res, res), dtype=torch.uint8),
                           torch.zeros(n, dtype=torch.long), [])
    cfg.train.out_dir, cfg.train.name = str(tmp_path), "compiled"
    return Trainer(cfg, dataset=data)


@pytest.mark.parametrize("arch", ARCHS)
def test_training_step_compiles_without_graph_breaks_or_recompiles(arch, tmp_path):
    torch._dynamo.reset()
    counters.clear()
    try:
        trainer = _trainer(arch, tmp_path, "eager")
        trainer.train_iteration()   # the first iteration traces: G (with and without grad), D, its phases
        graphs = counters["stats"]["unique_graphs"]
        assert graphs > 0, "nothing was compiled"
        for _ in range(2):
            losses = trainer.train_iteration()
        assert not counters["graph_break"], dict(counters["graph_break"])
        assert counters["stats"]["unique_graphs"] == graphs, "recompiled after the first iteration"
        assert all(torch.isfinite(v).all() for v in losses.values())
    finally:
        torch._dynamo.reset()
