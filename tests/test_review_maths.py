"""The maths a review compared with the authors' code and the papers (issue 23): orthogonal regulariser, ADA's
start and cap, LeCam. (The batch plan is tested in test_config.py, the converter's EMA in test_convert.py and
g_norm's trainable parameters in test_transfer.py.)"""

import pytest
import torch
from accelerate import Accelerator
from torch import nn

from smallgan.config import ConfigError, load_config
from smallgan.regularizers import lecam_penalty, orthogonal_regularization
from smallgan.training.ada import AdaptiveAugment


def _authors_ortho_gradient(w: torch.Tensor, beta: float) -> torch.Tensor:
    """What BigGAN-PyTorch's utils.ortho adds to a weight's gradient: 2 beta (W W^T (.) (1 - I)) W, W as (out, -1)."""
    flat = w.flatten(1)
    return (2 * beta * ((flat @ flat.t()) * (1 - torch.eye(flat.shape[0]))) @ flat).view_as(w)


@pytest.mark.parametrize("module", [nn.Linear(10, 6, bias=False), nn.Linear(3, 12, bias=False),
                                    nn.Conv2d(3, 5, 3, bias=False)], ids=["wide", "tall", "conv"])
def test_orthogonal_gradient_is_the_authors(module):
    torch.manual_seed(0)
    nn.init.normal_(module.weight)
    beta = 1e-2
    orthogonal_regularization(module, beta).backward()
    torch.testing.assert_close(module.weight.grad, _authors_ortho_gradient(module.weight.detach(), beta))


def _ada(*sets: str) -> AdaptiveAugment:
    cfg = load_config(None, ["train.diffaug=translation", "train.ada_interval=1", "train.ada_kimg=0.1", *sets])
    return AdaptiveAugment(cfg.train, images_per_step=100, accelerator=Accelerator(cpu=True))


def _overfit(ada: AdaptiveAugment, steps: int) -> None:
    for step in range(1, steps + 1):
        ada.observe(torch.ones(8))              # r_t = 1: D is sure of every real image
        logged = ada.end_iteration(step)
    assert logged["r_t"].item() == 1.0 and logged["augment_p"].item() == ada.p.item()   # logged as before


def test_ada_starts_at_zero_and_stops_at_its_cap():
    assert load_config(None).train.augment_start() == 1.0           # no ADA: DiffAugment as published
    ada = _ada("train.ada_target=0.6")
    assert ada.p.item() == 0.0                                       # StyleGAN2-ADA starts at 0
    _overfit(ada, 40)                                                # 1 per 0.1 kimg of 100 images: 4 steps to 0.4
    assert ada.p.item() == pytest.approx(0.8)                        # the default cap, not 1
    capped = _ada("train.ada_target=0.6", "train.ada_p_max=0.5", "train.augment_p=0.3")
    assert capped.p.item() == pytest.approx(0.3)                     # a given augment_p is where p starts
    _overfit(capped, 40)
    assert capped.p.item() == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="train.ada_p_max"):
        load_config(None, ["train.ada_p_max=0"])


def test_lecam_is_one_sided_as_the_authors_code():
    anchors = torch.tensor([0.5, -0.3])                              # a_R, a_F
    real = torch.tensor([-1.0, 0.0, 1.0], requires_grad=True)
    fake = torch.tensor([-1.0, 0.2, 1.0], requires_grad=True)
    penalty = 0.3 * lecam_penalty(real, fake, anchors)
    # relu(D(x) - a_F)^2 and relu(a_R - D(G(z)))^2: [0, 0.3, 1.3] and [1.5, 0.3, 0].
    expected = 0.3 * ((0.3 ** 2 + 1.3 ** 2) / 3 + (1.5 ** 2 + 0.3 ** 2) / 3)
    assert penalty.item() == pytest.approx(expected)
    penalty.backward()
    # A real output below the fake anchor, or a fake one above the real anchor, is not pulled back.
    assert real.grad[0].item() == 0.0 and fake.grad[2].item() == 0.0
    assert real.grad[2].item() > 0 and fake.grad[0].item() < 0
