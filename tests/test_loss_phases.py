"""The loss as named terms per phase (training/loss.py), lazy R1 (train.r1_every), and what the phases return
instead of side attributes and callbacks."""

import copy

import pytest
import torch
from accelerate import Accelerator

from smallgan.augment import DiffAugment
from smallgan.config import ModelConfig, load_config
from smallgan.losses import d_hinge, r1_penalty
from smallgan.registry import build_discriminator, build_generator
from smallgan.training.loss import GANLoss, build_loss, total
from smallgan.training.phases import GANPhases

MODEL = ModelConfig(arch="biggan", resolution=32, ch=4, z_dim=16, shared_dim=8, n_classes=2, g_attention=[],
                    d_attention=[])
GAMMA = 0.7


def _phases(loss: GANLoss, micro_batch: int = 3):
    torch.manual_seed(0)
    G, D = build_generator(MODEL), build_discriminator(MODEL)
    phases = GANPhases(accelerator=Accelerator(cpu=True), G=G, D=D, G_raw=G, D_raw=D, augment=DiffAugment(""),
                       loss=loss, micro_batch=micro_batch, accumulation=1)
    return phases, G, D


def _d_gradients_of_one_step(r1_every: int, r1: bool):
    """D's gradients after one D step of the phases, and the same step written out as the loop computed it
    before the loss had terms: hinge + gamma / 2 x R1 on the one D forward of reals and fakes."""
    phases, G, D = _phases(GANLoss(d_hinge, r1_gamma=GAMMA, r1_every=r1_every))
    reference_G, reference_D = copy.deepcopy(G), copy.deepcopy(D)   # spectral norm's u moves in each forward
    real, y_real = torch.rand(3, 3, 32, 32) * 2 - 1, torch.tensor([0, 1, 0])
    z, y_fake = torch.randn(3, 16), torch.tensor([1, 1, 0])
    phases._latents = lambda: (z, y_fake)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    result = phases.discriminator(lambda: (real, y_real), scaler, p=1.0, r1=r1)

    with torch.no_grad():
        fake = reference_G(z, y_fake)
    x = torch.cat([real, fake]).requires_grad_(True)
    logits = reference_D(x, torch.cat([y_real, y_fake])).float()
    real_logits, fake_logits = logits.split([3, 3])
    loss = d_hinge(real_logits, fake_logits)
    if r1:
        loss = loss + 0.5 * GAMMA * r1_every * r1_penalty(real_logits, x)
    (loss / 1).backward()
    ours = [p.grad for p in D.parameters() if p.grad is not None]
    theirs = [p.grad for p in reference_D.parameters() if p.grad is not None]
    return result, ours, theirs, loss.detach()


def test_r1_every_1_is_the_penalty_at_every_step_bit_for_bit():
    result, ours, theirs, loss = _d_gradients_of_one_step(r1_every=1, r1=True)
    assert len(ours) == len(theirs) > 5 and all(torch.equal(a, b) for a, b in zip(ours, theirs))
    assert torch.equal(result.loss, loss) and set(result.terms) == {"adv", "r1"}


def test_a_lazy_r1_step_weighs_the_penalty_by_r1_every():
    result, ours, theirs, loss = _d_gradients_of_one_step(r1_every=4, r1=True)
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs)) and torch.equal(result.loss, loss)
    skipped, ours, theirs, loss = _d_gradients_of_one_step(r1_every=4, r1=False)   # the steps between
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs)) and set(skipped.terms) == {"adv"}


def test_r1_is_due_every_r1_every_th_d_step_and_never_without_gamma():
    lazy = build_loss(load_config(None, ["train.r1_gamma=1", "train.r1_every=4"]).train)
    assert [lazy.r1_due(i) for i in range(9)] == [True, False, False, False, True, False, False, False, True]
    assert not any(build_loss(load_config(None).train).r1_due(i) for i in range(4))   # r1_gamma = 0
    assert load_config(None).train.r1_every == 16                                     # StyleGAN2's interval
    with pytest.raises(Exception, match="train.r1_every"):
        load_config(None, ["train.r1_every=0"])


def test_the_phases_return_their_terms_and_logits():
    loss = GANLoss(d_hinge, lecam=0.3, mode_seeking=0.5)
    phases, _, _ = _phases(loss, micro_batch=4)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    reals = lambda: (torch.rand(4, 3, 32, 32) * 2 - 1, torch.tensor([0, 1, 0, 1]))  # noqa: E731
    d = phases.discriminator(reals, scaler, p=1.0, anchors=torch.tensor([0.2, -0.2]))
    assert set(d.terms) == {"adv", "lecam"} and [t.shape for t in d.real_logits] == [torch.Size([4])]
    assert len(d.fake_logits) == 1 and not d.real_logits[0].requires_grad
    g = phases.generator(scaler, p=1.0)
    assert set(g.terms) == {"adv", "mode_seeking"}
    # The loss is the weighted sum of the terms, in their order.
    terms = {"adv": (1.0, torch.tensor(2.0)), "lecam": (0.3, torch.tensor(1.0))}
    assert total(terms).item() == pytest.approx(2.3)


def test_the_trainer_computes_r1_only_on_due_d_steps(tmp_path, monkeypatch):
    from smallgan.training import loss as loss_module
    from smallgan.training.loop import Trainer

    calls = []
    plain = loss_module.r1_penalty
    monkeypatch.setattr(loss_module, "r1_penalty", lambda *a: calls.append(1) or plain(*a))
    cfg = load_config("tiny-cpu", ["model.ch=4", "model.z_dim=32", "model.shared_dim=8", "train.batch=8",
                                   "train.micro_batch=8", "train.d_steps=2", "train.r1_gamma=1", "train.r1_every=3",
                                   "train.sample_every=0", "train.sv_every=0", "sample.n=4",
                                   f"train.out_dir={tmp_path}"])
    trainer = Trainer(cfg)
    for _ in range(3):        # D steps 0..5: R1 at 0 and 3
        trainer.train_iteration()
    assert len(calls) == 2
