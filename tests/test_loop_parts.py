"""The parts of the training loop: capabilities from the registry, schedules in images (EMA half-life,
train.max_kimg) and their reading of old per-iteration keys, the non-finite step skip on public PyTorch API,
stopping on signals, and resuming a checkpoint written before the schedules changed."""

import copy
import dataclasses
import json
import math
import os
import signal
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from smallgan import runs
from smallgan.config import ConfigError, config_from_dict, load_config, take_notes
from smallgan.ema import HalfLife
from smallgan.registry import Capabilities, build_discriminator, capabilities, capabilities_of
from smallgan.training.loop import Trainer, train
from smallgan.training.phases import UnitScaler, optimizer_step
from smallgan.training.stats import read_metrics
from smallgan.training.schedule import schedule
from smallgan.training.stopping import Stopping, limit_reached
from tiny import TINY_BASE

TINY = [*TINY_BASE, "train.batch=8", "train.d_steps=1", "train.log_every=1", "train.sv_every=0",
        "train.ema_start_kimg=0.016"]


def tiny(tmp_path, *extra: str, name: str = "run"):
    return load_config("tiny-cpu", [*TINY, f"train.out_dir={tmp_path}", f"train.name={name}", *extra])


# ---------------------------------------------------------------------------------------------
# Capabilities: declared at registration, read through the registry


def test_capabilities_are_declared_by_the_registry_and_follow_the_config():
    assert capabilities(load_config("tiny-cpu").model) == Capabilities(d_stages=True)    # FreezeD can count blocks
    fast = load_config("fastgan-tiny64").model
    assert capabilities(fast) == Capabilities(splits_real_fake=True, reconstructs=True)
    assert capabilities(dataclasses.replace(fast, decoder=False)) == Capabilities(splits_real_fake=True)
    assert capabilities_of(build_discriminator(fast)).splits_real_fake            # a bare module: by its class
    assert capabilities_of(nn.Linear(2, 2)) == Capabilities()


# ---------------------------------------------------------------------------------------------
# Schedules in images


def test_ema_decay_follows_a_half_life_in_images():
    s = HalfLife(halflife_kimg=1.1035, images_per_step=16, start_kimg=0.8)     # tiny-cpu
    assert s(49) == 0.0 and s(50) == pytest.approx(0.99, abs=1e-6)            # a copy until 800 images
    twice = HalfLife(halflife_kimg=1.1035, images_per_step=32, start_kimg=0.8)
    assert twice(25) == pytest.approx(s(50) ** 2)        # the same horizon in images at twice the batch
    ramp = HalfLife(halflife_kimg=10.0, images_per_step=100, rampup=0.05)
    assert ramp(1) == pytest.approx(0.5 ** (100 / 5))    # half-life 0.05 x 100 images so far
    assert ramp(10_000) == pytest.approx(0.5 ** (100 / 10_000))                # then the 10 kimg cap
    assert HalfLife(halflife_kimg=0.0, images_per_step=8)(3) == 0.0            # 0: G itself


def test_old_per_iteration_ema_keys_are_converted_with_a_note():
    cfg = load_config("tiny-cpu", ["train.ema_decay=0.99", "train.ema_start=50"])
    t = cfg.train
    assert t.ema_halflife_kimg == pytest.approx(16 * math.log(0.5) / math.log(0.99) / 1000)   # 1.1035
    assert t.ema_start_kimg == 0.8
    notes = [line for line in take_notes(cfg) if "deprecated" in line]   # printed by the CLI or the Trainer
    assert len(notes) == 2 and "train.ema_halflife_kimg=1.103" in notes[0] and "ema_start_kimg=0.8" in notes[1]
    # Converted with the final batch and D steps, whatever the order of the settings.
    t = load_config("tiny-cpu", ["train.ema_decay=0.99", "train.batch=32", "train.d_steps=2"]).train
    assert t.ema_halflife_kimg == pytest.approx(64 * math.log(0.5) / math.log(0.99) / 1000)
    # Of an old key and its replacement, the later setting wins.
    assert load_config("tiny-cpu", ["train.ema_decay=0.99", "train.ema_halflife_kimg=5"]).train.ema_halflife_kimg == 5
    assert load_config("tiny-cpu", ["train.ema_halflife_kimg=5", "train.ema_decay=0.5"]).train.ema_halflife_kimg \
        == pytest.approx(0.016)
    with pytest.raises(ConfigError, match="train.ema_decay must be in"):
        load_config("tiny-cpu", ["train.ema_decay=1.0"])


def test_a_saved_config_with_old_ema_keys_loads_silently(capsys):
    saved = load_config("anime64").to_dict()
    for key in ("ema_halflife_kimg", "ema_rampup", "ema_start_kimg", "max_kimg"):
        del saved["train"][key]
    saved["train"].update(ema_decay=0.999, ema_start=1000, max_steps=50000)
    capsys.readouterr()
    cfg = config_from_dict(saved)
    assert cfg.train.ema_halflife_kimg == pytest.approx(354.71, abs=0.01) and cfg.train.ema_start_kimg == 512
    recipe = load_config("anime64")                      # the shipped recipe says the same in kimg
    recipe.train.ema_halflife_kimg = cfg.train.ema_halflife_kimg
    assert cfg == recipe
    assert "deprecated" not in capsys.readouterr().err


def test_every_recipe_keeps_its_per_iteration_ema():
    expected = {"tiny-cpu": (0.99, 50), "fastgan-tiny64": (0.99, 0), "fastgan-anime256": (0.999, 0),
                "anime64": (0.999, 1000), "anime128": (0.999, 1000), "deep-anime128": (0.999, 1000),
                "imagenet128": (0.9999, 20000)}
    for recipe, (decay, start) in expected.items():
        t = load_config(recipe).train
        schedule = HalfLife(t.ema_halflife_kimg, t.batch * t.d_steps, start_kimg=t.ema_start_kimg)
        assert schedule(start) == pytest.approx(decay, abs=1e-6), recipe
        assert start == 0 or schedule(start - 1) == 0.0, recipe


def test_max_kimg_and_max_steps_stop_at_whichever_comes_first():
    t = load_config("tiny-cpu", ["train.max_steps=100", "train.max_kimg=0.05"]).train
    assert schedule(t, 16).total == 4 and limit_reached(t) == "reached train.max_kimg=0.05"   # 64 >= 50 images
    assert schedule(load_config("tiny-cpu", ["train.max_steps=3", "train.max_kimg=1.0"]).train, 16).total == 3
    assert schedule(load_config("tiny-cpu", ["train.max_steps=0", "train.max_kimg=0.032"]).train, 16).total == 2
    assert schedule(load_config("tiny-cpu", ["train.max_steps=7"]).train, 16).total == 7
    with pytest.raises(ConfigError, match="max_kimg"):
        load_config("tiny-cpu", ["train.max_kimg=-1"])


def test_a_run_stops_at_max_kimg(tmp_path, capsys):
    trainer = train(tiny(tmp_path, "train.max_steps=50", "train.max_kimg=0.016"))   # 8 images an iteration
    assert trainer.counters.step == 2
    assert read_metrics(trainer.run_dir / "metrics.jsonl")[-1]["kimg"] == 0.016
    assert "reached train.max_kimg=0.016" in capsys.readouterr().err
    assert runs.latest_checkpoint(trainer.run_dir).name == "step-0000002"


# ---------------------------------------------------------------------------------------------
# Non-finite steps skipped with public API only


class ItemCounter:
    def __enter__(self):
        self.calls, self._item = 0, torch.Tensor.item

        def counting(tensor):
            self.calls += 1
            return self._item(tensor)

        torch.Tensor.item = counting
        return self

    def __exit__(self, *exc):
        torch.Tensor.item = self._item


def _model_and_adam(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    return model, torch.optim.Adam(model.parameters(), lr=0.1, fused=True)


def test_unit_scaler_steps_exactly_as_no_scaler_and_skips_non_finite_steps_on_the_device():
    model, opt = _model_and_adam()
    reference = copy.deepcopy(model)
    ref_opt = torch.optim.Adam(reference.parameters(), lr=0.1, fused=True)
    x = torch.randn(5, 4)
    scaler = UnitScaler("cpu")
    scaler.scale(model(x).square().mean()).backward()
    with ItemCounter() as items:
        skipped = optimizer_step(opt, scaler, list(model.parameters()))
    reference(x).square().mean().backward()
    ref_opt.step()
    assert items.calls == 0 and float(skipped) == 0.0
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), reference.parameters()))   # bit for bit
    before = [p.detach().clone() for p in model.parameters()]
    steps = [s["step"].clone() for s in opt.state.values()]
    nan_in_one = model(x).square().mean() + model[2].bias.sum() * float("nan")
    scaler.scale(nan_in_one).backward()
    with ItemCounter() as items:
        skipped = optimizer_step(opt, scaler, list(model.parameters()))
    assert items.calls == 0 and float(skipped) == 1.0
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))            # weights untouched
    assert all(torch.equal(s["step"], b) for s, b in zip(opt.state.values(), steps))     # Adam's count too
    assert scaler.get_scale() == 1.0 and scaler.state_dict() == {}    # a disabled scaler's state: same format
    scaler.load_state_dict({})


def test_fp16_style_dynamic_scaler_skips_and_backs_off_on_cpu():
    """The installed torch's GradScaler (CPU works) through the same public calls the fp16 path makes."""
    model, opt = _model_and_adam()
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    x = torch.randn(5, 4)
    before = [p.detach().clone() for p in model.parameters()]
    scaler.scale(model(x).square().mean() * float("inf")).backward()
    assert float(optimizer_step(opt, scaler, list(model.parameters()))) == 1.0
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    assert scaler.get_scale() == 512.0                                   # backed off
    scaler.scale(model(x).square().mean()).backward()
    assert float(optimizer_step(opt, scaler, list(model.parameters()))) == 0.0
    assert not all(torch.equal(p, b) for p, b in zip(model.parameters(), before))


# ---------------------------------------------------------------------------------------------
# Stopping and resuming


def test_first_signal_asks_to_stop_second_stops_now_and_handlers_are_restored():
    previous = signal.getsignal(signal.SIGTERM)
    with Stopping(0.0, SimpleNamespace(num_processes=1)) as stopping:
        assert stopping.reason(check_now=True) is None
        os.kill(os.getpid(), signal.SIGTERM)
        assert stopping.reason(check_now=False) == "stopped by SIGTERM"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is previous


def _states(trainer) -> dict[str, torch.Tensor]:
    out = {f"G.{k}": v for k, v in trainer.G.state_dict().items()}
    out.update({f"D.{k}": v for k, v in trainer.D.state_dict().items()})
    out.update({f"EMA.{k}": v for k, v in trainer.ema.state_dict().items()})
    return out


def test_a_checkpoint_with_the_old_per_iteration_ema_config_resumes_exactly(tmp_path):
    straight = train(tiny(tmp_path, "train.max_steps=3", name="straight"))
    first = train(tiny(tmp_path, "train.max_steps=2", name="old"))
    # Rewrite the checkpoint's saved config as before the schedules in images (state.pt has not changed).
    saved_path = runs.latest_checkpoint(first.run_dir) / "config.json"
    saved = json.loads(saved_path.read_text())
    for key in ("ema_halflife_kimg", "ema_rampup", "ema_start_kimg", "max_kimg"):
        del saved["train"][key]
    saved["train"].update(ema_decay=0.99, ema_start=2)
    saved_path.write_text(json.dumps(saved))
    second = Trainer(tiny(tmp_path, "train.max_steps=3", name="old"), resume="latest")
    assert second.counters.step == 2
    second.run()
    a, b = _states(straight), _states(second)
    assert a.keys() == b.keys() and not [k for k in a if not torch.equal(a[k], b[k])]
