"""DiffAugment, EMA and losses: small pieces of the loop, tested on their own."""

import copy

import pytest
import torch
from torch import nn

from smallgan.augment import DiffAugment, color, cutout, translation
from smallgan.ema import EMA
from smallgan.errors import SmallganError
from smallgan.losses import d_hinge, d_hinge_random_margin, g_hinge, r1_penalty


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_diffaugment_keeps_shape_and_is_differentiable(policy):
    torch.manual_seed(0)
    x = torch.rand(4, 3, 16, 16, requires_grad=True)
    out = DiffAugment(policy)(x * 2 - 1)
    assert out.shape == x.shape
    out.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not torch.allclose(out, x * 2 - 1)


def test_translation_shifts_content_and_fills_zeros():
    torch.manual_seed(1)
    x = torch.ones(64, 1, 8, 8)
    out = translation(x)
    zero_rows = (out == 0).all(dim=3).any(dim=2) | (out == 0).all(dim=2).any(dim=2)
    assert zero_rows.any()                        # some images moved, leaving zero borders
    assert ((out == 0) | (out == 1)).all()        # integer shifts: no interpolation
    assert (out.sum(dim=(1, 2, 3)) >= 7 * 7).all()  # at most 1/8 of the size (1 px) shifted out per axis


def test_cutout_zeros_a_half_size_square_at_most():
    torch.manual_seed(2)
    x = torch.ones(32, 3, 16, 16)
    out = cutout(x)
    zeros = (out[:, 0] == 0).sum(dim=(1, 2))
    assert (zeros > 0).all() and (zeros <= 8 * 8).all()
    assert (out[:, 0] == out[:, 1]).all()          # same mask on every channel


def test_color_changes_each_image_independently():
    torch.manual_seed(3)
    x = torch.zeros(8, 3, 4, 4).uniform_(-0.5, 0.5)
    x = torch.cat([x[:1]] * 8)                    # identical images...
    out = color(x)
    assert not torch.allclose(out[0], out[1])     # ... get different random parameters


def test_unknown_policy_is_one_line():
    with pytest.raises(SmallganError, match="blur"):
        DiffAugment("color,blur")
    assert not DiffAugment("")
    x = torch.randn(2, 3, 4, 4)
    assert torch.equal(DiffAugment("")(x), x)


def test_ema_copies_before_start_then_follows_the_formula():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    ema = EMA(model, decay=0.9, start=2)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    ema.update(model, step=1)                      # before start: exact copy
    assert torch.equal(ema.shadow[0].weight, model[0].weight)
    before = ema.shadow[0].weight.clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
        model[1].running_mean.fill_(3.0)
    ema.update(model, step=2)
    expected = 0.9 * before + 0.1 * model[0].weight
    assert torch.allclose(ema.shadow[0].weight, expected, atol=1e-6)
    assert not torch.allclose(ema.shadow[0].weight, model[0].weight)
    assert torch.equal(ema.shadow[1].running_mean, model[1].running_mean)   # buffers copied
    assert all(not p.requires_grad for p in ema.shadow.parameters())
    clone = EMA(copy.deepcopy(model), 0.9)
    clone.load_state_dict(ema.state_dict())
    assert torch.equal(clone.shadow[0].weight, ema.shadow[0].weight)


def test_hinge_losses():
    real = torch.tensor([2.0, 0.5, -1.0])
    fake = torch.tensor([-2.0, 0.0, 1.0])
    assert d_hinge(real, fake).item() == pytest.approx((0 + 0.5 + 2) / 3 + (0 + 1 + 2) / 3)
    assert g_hinge(fake).item() == pytest.approx(1 / 3)
    torch.manual_seed(0)
    randomized = d_hinge_random_margin(real, fake)
    assert d_hinge(real, fake).item() - 2 * 0.2 <= randomized.item() <= d_hinge(real, fake).item()


def test_r1_penalty_matches_analytic_gradient():
    x = torch.randn(5, 3, requires_grad=True)
    w = torch.tensor([1.0, -2.0, 2.0])
    logits = x @ w                                  # grad wrt each x row is w, ||w||^2 = 9
    assert r1_penalty(logits, x).item() == pytest.approx(9.0)
