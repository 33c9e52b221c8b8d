"""Few-shot regularisers: augmentation probability p, adaptive p from r_t (ADA), LeCam, and their state."""

import pytest
import torch
from accelerate import Accelerator

from accumulation_check import accumulated_vs_full_gradient
from smallgan.augment import DiffAugment, color, translation
from smallgan.config import ConfigError, load_config
from smallgan.data import PreparedImages
from smallgan.training.ada import AdaptiveAugment
from smallgan.training.loop import Trainer, train
from smallgan.training.stats import read_metrics
from tiny import TINY, states, tiny

ADA = ["train.diffaug=translation", "train.ada_target=0.6", "train.augment_p=0", "train.ada_interval=2",
       "train.ada_kimg=0.1"]


def test_augment_p_applies_each_op_to_that_share_of_images():
    torch.manual_seed(0)
    x = torch.rand(400, 3, 8, 8, requires_grad=True)
    for p, share in ((torch.tensor(0.0), 0.0), (torch.tensor(1.0), 1.0), (0.25, 0.25)):
        out = DiffAugment("color", p=p)(x)
        changed = (out != x).flatten(1).any(1).float().mean().item()
        assert abs(changed - share) < 0.07, (p, changed)
    out.sum().backward()                      # differentiable through the masked choice
    assert x.grad.abs().sum() > 0


def _controller(**train_sets) -> AdaptiveAugment:
    cfg = load_config(None, [f"train.{k}={v}" for k, v in train_sets.items()])
    ada = AdaptiveAugment(cfg.train, images_per_step=100, accelerator=Accelerator(cpu=True))
    assert ada.strength is ada.p               # the augmentation is given the adapted value
    return ada


def test_p_stays_at_zero_below_the_target_and_rises_above_it():
    ada = _controller(diffaug="translation", ada_target=0.6, augment_p=0.0, ada_interval=2, ada_kimg=1.0)
    below = torch.tensor([3.0, 2.0, -1.0, -0.5, 1.0])          # r_t = 0.2
    for step in range(1, 9):
        ada.observe(below)
        logged = ada.end_iteration(step)
    assert ada.p.item() == 0.0 and logged["r_t"].item() == pytest.approx(0.2)
    for step in range(9, 13):                                   # r_t = 1: D is sure of every real image
        ada.observe(below.abs())
        ada.end_iteration(step)
    # Two adjustments of 100 images x 2 iterations / 1 kimg each; then clamped at train.ada_p_max (0.8).
    assert ada.p.item() == pytest.approx(0.4)
    for step in range(13, 40):
        ada.observe(below.abs())
        ada.end_iteration(step)
    assert ada.p.item() == pytest.approx(0.8)


def test_p_rises_within_ten_steps_when_d_overfits_sixteen_images(tmp_path):
    torch.manual_seed(0)
    images = (torch.rand(16, 3, 32, 32) * 255).to(torch.uint8)   # noise: D memorises it at once
    data = PreparedImages(images, torch.zeros(16, dtype=torch.long), [])
    trainer = Trainer(tiny(tmp_path, *ADA, "train.max_steps=10"), dataset=data)
    assert trainer.state.ada.p.item() == 0.0
    trainer.run()
    records = read_metrics(trainer.run_dir / "metrics.jsonl")
    assert all({"r_t", "augment_p"} <= set(r) for r in records)   # logged every interval
    assert max(r["r_t"] for r in records) > 0.6 and trainer.state.ada.p.item() > 0


@pytest.mark.slow
def test_p_and_lecam_averages_survive_an_exact_resume(tmp_path):
    sets = [*ADA, "train.lecam=0.3"]
    straight = train(tiny(tmp_path, *sets, "train.max_steps=6", name="straight"))
    train(tiny(tmp_path, *sets, "train.max_steps=3", name="resumed"))   # stops between two adjustments
    second = train(tiny(tmp_path, *sets, "train.max_steps=6", name="resumed"), resume="latest")
    a, b = states(straight), states(second)
    assert not [k for k in a if not torch.equal(a[k], b[k])]
    assert straight.state.ada.p.item() == second.state.ada.p.item() > 0
    assert torch.equal(straight.state.lecam.ema, second.state.lecam.ema) and second.state.lecam.updates.item() == 6


def test_accumulated_d_gradient_with_lecam_equals_full_batch():
    assert accumulated_vs_full_gradient(Accelerator(cpu=True), micro_batch=2, lecam=0.3) < 1e-5


@pytest.mark.parametrize("override, words", [
    ("train.ada_target=0.6", "set train.diffaug"),
    ("train.augment_p=1.5", "train.augment_p must be in [0, 1]"),
    ("train.ada_target=1.0", "train.ada_target must be in [0, 1)"),
    ("train.lecam=-1", "train.lecam >= 0"),
])
def test_bad_fewshot_settings_name_the_key(override, words):
    with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        load_config("tiny-cpu", ["train.diffaug=", override])


def test_defaults_keep_the_fixed_policy_and_its_random_draws():
    cfg = load_config("tiny-cpu", TINY)
    assert (cfg.train.augment_start(), cfg.train.ada_target, cfg.train.lecam) == (1.0, 0.0, 0.0)
    x = torch.rand(4, 3, 8, 8)
    torch.manual_seed(3)
    published = translation(color(x))        # DiffAugment as before p existed: no mask drawn
    torch.manual_seed(3)
    assert torch.equal(DiffAugment("color,translation", p=cfg.train.augment_start())(x), published)


def test_adaptive_p_and_lecam_add_no_host_sync(tmp_path, monkeypatch):
    trainer = Trainer(tiny(tmp_path, *ADA, "train.ada_interval=1", "train.lecam=0.3", "train.max_steps=5"))
    calls = []
    original = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda self: calls.append(1) or original(self))
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: calls.append(1) or [])
    for _ in range(2):
        trainer.train_iteration()                # an adjustment of p and two LeCam updates each
    monkeypatch.undo()
    assert not calls and trainer.state.lecam.updates.item() == 2


def test_a_non_finite_step_leaves_p_and_the_lecam_averages_finite():
    from smallgan.regularizers import LeCam

    ada = _controller(diffaug="translation", ada_target=0.6, augment_p=0.0, ada_interval=1, ada_kimg=1.0)
    lecam = LeCam(0.99, Accelerator(cpu=True))
    nan = torch.full((4,), float("nan"))
    ada.observe(nan)
    ada.end_iteration(1)
    lecam.update([nan], [nan])
    assert torch.isfinite(ada.p) and torch.isfinite(lecam.anchors()).all() and lecam.updates.item() == 0
