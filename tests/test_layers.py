"""Layers, regulariser and latent sampling: the maths each one promises, checked on tiny tensors (CPU)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from smallgan.errors import SmallganError
from smallgan.latents import sample_latents, truncated_normal
from smallgan.layers.attention import SelfAttention
from smallgan.layers.bottleneck_blocks import DeepDBlock, DeepGBlock
from smallgan.layers.conditional_bn import ConditionalBatchNorm2d
from smallgan.layers.spectral_norm import SpectralNorm, sn_conv2d, sn_embedding, sn_linear, top_singular_values
from smallgan.regularizers import orthogonal_regularization, regularized_weights


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _sn(module: nn.Module) -> SpectralNorm:
    return module.parametrizations.weight[0]


# ---------------------------------------------------------------------------------------------
# Spectral norm


@pytest.mark.parametrize("make", [lambda: sn_conv2d(6, 10, 3), lambda: sn_linear(12, 5), lambda: sn_embedding(7, 9)])
def test_spectral_norm_top_singular_value_is_one(make) -> None:
    layer = make()
    with torch.no_grad():   # a non-orthogonal raw weight with a clear spectral gap
        raw = layer.parametrizations.weight.original
        raw.copy_(torch.randn_like(raw) * 3.0)
        raw.view(raw.shape[0], -1)[0] *= 4.0
    layer.train()
    for _ in range(30):     # one power iteration per training-mode access
        w = layer.weight
    assert torch.linalg.matrix_norm(w.detach().flatten(1), ord=2).item() == pytest.approx(1.0, abs=1e-3)
    sigma = top_singular_values(layer)["weight"]
    assert sigma == pytest.approx(torch.linalg.matrix_norm(raw.detach().flatten(1), ord=2).item(), rel=1e-3)


def test_spectral_norm_iterates_only_in_training_mode_and_persists_state() -> None:
    conv = sn_conv2d(4, 8, 3)
    sd = conv.state_dict()
    assert {"parametrizations.weight.0.u", "parametrizations.weight.0.v", "parametrizations.weight.original"} <= set(sd)
    with torch.no_grad():
        conv.parametrizations.weight.original.mul_(torch.rand_like(conv.parametrizations.weight.original))
    u0 = _sn(conv).u.clone()
    conv.eval()
    conv(torch.randn(1, 4, 5, 5))
    assert torch.equal(_sn(conv).u, u0)
    x = torch.randn(1, 4, 5, 5)
    before = conv(x)
    with torch.no_grad():   # an EMA that averages buffers leaves u, v shorter than 1: sigma must not change
        _sn(conv).u.mul_(0.5), _sn(conv).v.mul_(0.7)
    torch.testing.assert_close(conv(x), before)
    u1 = _sn(conv).u.clone()
    conv.train()
    conv(x)
    assert not torch.allclose(_sn(conv).u, u1) and _sn(conv).u.norm().item() == pytest.approx(1.0, abs=1e-5)


def test_spectral_norm_runs_in_float32_under_autocast() -> None:
    lin = sn_linear(16, 8)
    x = torch.randn(4, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = lin(x)
        w = lin.weight
        sigma = _sn(lin).sigma(lin.parametrizations.weight.original)
    assert out.dtype == torch.bfloat16          # the layer itself does run in low precision
    assert w.dtype == torch.float32 and sigma.dtype == torch.float32
    assert _sn(lin).u.dtype == torch.float32 and _sn(lin).v.dtype == torch.float32


def test_spectral_norm_two_forwards_then_one_backward_and_deepcopy() -> None:
    conv = sn_conv2d(3, 4, 3)
    loss = conv(torch.randn(2, 3, 6, 6)).square().mean() + conv(torch.randn(2, 3, 6, 6)).square().mean()
    loss.backward()   # the in-place power iteration between the two forwards must not break autograd
    assert conv.parametrizations.weight.original.grad is not None
    twin = copy.deepcopy(conv).eval()
    conv.eval()
    x = torch.randn(1, 3, 6, 6)
    assert torch.equal(twin(x), conv(x))
    twin.train()
    twin(x)           # the copy's buffers are its own
    assert not torch.equal(_sn(twin).u, _sn(conv).u)


# ---------------------------------------------------------------------------------------------
# Conditional BatchNorm and self-attention


def test_conditional_bn_formula() -> None:
    cbn = ConditionalBatchNorm2d(6, cond_dim=5, bn_eps=1e-5).train()
    x, c = torch.randn(4, 6, 3, 3), torch.randn(4, 5)
    out = cbn(x, c)
    cbn.gain.eval(), cbn.bias.eval()   # reuse the u, v of that forward (no further power iteration)
    normed = F.batch_norm(x, None, None, training=True, eps=1e-5)
    gain = c @ cbn.gain.weight.t()
    bias = c @ cbn.bias.weight.t()
    expected = normed * (1 + gain[:, :, None, None]) + bias[:, :, None, None]
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    assert cbn.gain.bias is None and cbn.bias.bias is None and not cbn.norm.affine
    assert not torch.allclose(cbn(x, torch.randn(4, 5)), out)


def _sagan_reference(att: SelfAttention, x: torch.Tensor) -> torch.Tensor:
    """SA-GAN as written: bmm + softmax over pooled keys, no 1/sqrt(d) scaling."""
    b, c, h, w = x.shape
    theta = att.theta(x).view(b, c // 8, h * w)
    phi = F.max_pool2d(att.phi(x), 2).view(b, c // 8, h * w // 4)
    g = F.max_pool2d(att.g(x), 2).view(b, c // 2, h * w // 4)
    beta = torch.softmax(torch.bmm(theta.transpose(1, 2), phi), dim=-1)
    o = att.o(torch.bmm(g, beta.transpose(1, 2)).view(b, c // 2, h, w))
    return x + att.gamma * o


def test_self_attention_matches_sagan_and_starts_as_identity() -> None:
    att = SelfAttention(16).eval()
    x = torch.randn(2, 16, 8, 8)
    assert torch.equal(att(x), x)                 # gamma = 0 at init
    with torch.no_grad():
        att.gamma.fill_(0.7)
    torch.testing.assert_close(att(x), _sagan_reference(att, x), rtol=1e-4, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = att(x)
    torch.testing.assert_close(low.float(), _sagan_reference(att, x), rtol=0.05, atol=0.05)


def test_self_attention_refuses_too_few_channels() -> None:
    with pytest.raises(ValueError, match="8 channels"):
        SelfAttention(4)


def test_bottleneck_skips_slice_in_g_and_concatenate_in_d() -> None:
    g = DeepGBlock(16, 8, cond_dim=3, upsample=True).eval()
    x, c = torch.randn(2, 16, 4, 4), torch.randn(2, 3)
    h = g.conv1(F.relu(g.bn1(x, c)))
    h = g.conv2(F.interpolate(F.relu(g.bn2(h, c)), scale_factor=2))
    h = g.conv4(F.relu(g.bn4(g.conv3(F.relu(g.bn3(h, c))), c)))
    skip = g(x, c) - h
    torch.testing.assert_close(skip, F.interpolate(x[:, :8], scale_factor=2), rtol=1e-4, atol=1e-5)
    assert g.conv1.out_channels == 16 // 4

    d = DeepDBlock(8, 16, downsample=True).eval()
    x = torch.randn(2, 8, 8, 8)
    h = d.conv3(F.relu(d.conv2(F.relu(d.conv1(F.relu(x))))))
    h = d.conv4(F.avg_pool2d(F.relu(h), 2))
    skip = d(x) - h
    pooled = F.avg_pool2d(x, 2)
    torch.testing.assert_close(skip[:, :8], pooled, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(skip[:, 8:], d.extra(pooled), rtol=1e-4, atol=1e-5)
    assert d.extra.in_channels == 8 and d.extra.out_channels == 8 and d.conv1.out_channels == 16 // 4


# ---------------------------------------------------------------------------------------------
# Orthogonal regularisation


def _naive(module: nn.Module, beta: float) -> torch.Tensor:
    total = torch.zeros(())
    for _, p in regularized_weights(module):
        w = p.flatten(1)
        gram = w @ w.t()
        total = total + (gram * (1 - torch.eye(w.shape[0]))).square().sum()
    return beta / 2 * total     # the 1/2 makes the gradient the authors' 2 beta (W W^T (.) (1 - I)) W


def test_ortho_reg_zero_for_orthogonal_weights() -> None:
    for shape in [(8, 8), (4, 16)]:   # orthonormal rows: W W^T = I
        lin = nn.Linear(shape[1], shape[0])
        nn.init.orthogonal_(lin.weight)
        assert orthogonal_regularization(lin, 1.0).item() == pytest.approx(0.0, abs=1e-5)
    lin = nn.Linear(4, 16)            # tall orthogonal (orthonormal columns): rows are not orthogonal
    nn.init.orthogonal_(lin.weight)
    assert orthogonal_regularization(lin, 1.0).item() > 1e-3


def test_ortho_reg_matches_naive_formula_and_skips_embeddings() -> None:
    model = nn.ModuleDict({
        "tall": nn.Linear(3, 40), "wide": nn.Linear(30, 5), "conv": nn.Conv2d(4, 6, 3),
        "sn": sn_conv2d(5, 7, 3), "shared": nn.Embedding(10, 4), "proj": sn_embedding(10, 4),
        "bn": nn.BatchNorm2d(6),
    })
    names = {n for n, _ in regularized_weights(model)}
    assert names == {"tall.weight", "wide.weight", "conv.weight", "sn.parametrizations.weight.original"}
    beta = 0.3
    reg = orthogonal_regularization(model, beta)
    assert reg.item() > 0
    torch.testing.assert_close(reg, _naive(model, beta), rtol=1e-4, atol=1e-4)
    reg.backward()
    assert model["sn"].parametrizations.weight.original.grad is not None   # the raw weight is regularised
    assert model["shared"].weight.grad is None and model["conv"].bias.grad is None


# ---------------------------------------------------------------------------------------------
# Latents


def _truncnorm_var(t: float) -> float:
    phi = math.exp(-t * t / 2) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + math.erf(t / math.sqrt(2)))
    return 1 - 2 * t * phi / (2 * cdf - 1)


@pytest.mark.parametrize("t", [0.5, 1.0, 2.0])
def test_truncated_normal_bounds_and_variance(t: float) -> None:
    g = torch.Generator().manual_seed(1)
    z = truncated_normal((400, 500), t, generator=g)
    assert z.shape == (400, 500)
    assert z.abs().max().item() <= t
    assert z.var().item() == pytest.approx(_truncnorm_var(t), rel=0.02)
    assert abs(z.mean().item()) < 0.01


def test_truncated_normal_without_threshold_is_plain_normal_and_seeded() -> None:
    a = truncated_normal((1000, 50), 0.0, generator=torch.Generator().manual_seed(3))
    b = truncated_normal((1000, 50), None, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert a.abs().max().item() > 3.0 and a.var().item() == pytest.approx(1.0, rel=0.03)
    c = truncated_normal((64, 8), 0.04, generator=torch.Generator().manual_seed(4))
    d = truncated_normal((64, 8), 0.04, generator=torch.Generator().manual_seed(4))
    assert torch.equal(c, d) and c.abs().max().item() <= 0.04


def test_sample_latents_labels() -> None:
    z, y = sample_latents(300, 12, 5, trunc=1.5, generator=torch.Generator().manual_seed(0))
    assert z.shape == (300, 12) and z.abs().max() <= 1.5
    assert y.dtype == torch.long and set(y.tolist()) == set(range(5))
    _, y = sample_latents(4, 12, 5, classes=3)
    assert y.tolist() == [3, 3, 3, 3]
    _, y = sample_latents(3, 12, 5, classes=[0, 4, 2])
    assert y.tolist() == [0, 4, 2]
    with pytest.raises(SmallganError, match="0..4"):
        sample_latents(2, 12, 5, classes=[0, 5])
    with pytest.raises(SmallganError, match="labels for 3 samples"):
        sample_latents(3, 12, 5, classes=[0, 1])
