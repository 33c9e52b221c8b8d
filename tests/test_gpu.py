"""The GPU subset (`python -m pytest -m gpu`): what only a CUDA GPU exercises, at tiny sizes and few steps.

fp16 with one loss scaler per network (an overflow step skipped), bf16, channels_last, train.compile, exact resume,
sampling, evaluation with a random extractor and the Python API. Every test is marked `gpu` and skips itself
without CUDA, so the default `python -m pytest` (CPU) skips them. The bodies take the device from the `device`
fixture and compare against the CPU where that is the reference, so most of them also run on a CPU when called
with device "cpu" (how they were checked on a machine without a GPU).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from smallgan import checkpoint as ckpt
from smallgan.device import compiler_unavailable, native_bf16
from smallgan.training.loop import Trainer, train
from smallgan.training.phases import UnitScaler
from smallgan.training.stats import read_metrics
from tiny import states   # tiny-cpu at 4 channels, batch 8 = 4 x 2 accumulation, logging every step

# Deterministic cuBLAS for the resume test; read when cuBLAS starts, so set before any test touches the GPU.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.fixture
def device() -> str:
    return "cuda"


@pytest.fixture(autouse=True)
def _fresh_accelerate_state(monkeypatch):
    """Accelerate keeps one mixed precision per process; these tests use several. No Accelerate configuration of
    the machine (environment or `accelerate config` file) reaches them."""
    from accelerate.state import AcceleratorState

    import smallgan.device as dev

    monkeypatch.delenv(dev.ACCELERATE_ENV, raising=False)
    monkeypatch.setattr(dev, "accelerate_config_file", lambda: None)
    AcceleratorState._reset_state()
    yield
    AcceleratorState._reset_state()


def params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def smallgan_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "smallgan", *args], capture_output=True, text=True, timeout=600)


# ---------------------------------------------------------------------------------------------------------------
# Mixed precision


def test_fp16_scales_each_network_and_skips_an_overflow_step(tmp_path, device, tiny_cfg):
    trainer = Trainer(tiny_cfg("train.precision=fp16", "train.max_steps=10"))
    assert trainer.accelerator.device.type == device
    assert trainer.precision == "fp16" and trainer.accelerator.mixed_precision == "fp16"
    assert trainer.state.g_scaler is not trainer.state.d_scaler and trainer.state.g_scaler.is_enabled() and trainer.state.d_scaler.is_enabled()
    trainer.train_iteration()                      # creates the scales (and may itself skip: 2^16 can overflow)
    before = trainer.state.sync()
    skipped_before, streak_before = (before.skipped_d, before.skipped_g), before.bad_streak

    # D's scale so large that its scaled gradients overflow in fp16; G's small enough for a normal step.
    trainer.state.d_scaler.update(new_scale=2.0**100)
    trainer.state.g_scaler.update(new_scale=2.0**8)
    d_before, g_before = params(trainer.D), params(trainer.G)
    d_opt_before = {i: {k: v.clone() if torch.is_tensor(v) else v for k, v in s.items()}
                    for i, s in enumerate(trainer.state.d_opt.state.values())}
    losses = trainer.train_iteration()
    assert all(torch.isfinite(v).item() for v in losses.values())   # the forward is fine; the scaled grads are not
    c = trainer.state.sync()
    assert c.skipped_d - skipped_before[0] == trainer.cfg.train.d_steps and c.skipped_g == skipped_before[1]
    assert c.bad_streak == streak_before + 1
    assert same(params(trainer.D), d_before)                         # the skipped step left D as it was ...
    for i, s in enumerate(trainer.state.d_opt.state.values()):             # ... and Adam's moments and step count
        assert all(torch.equal(v, d_opt_before[i][k]) if torch.is_tensor(v) else v == d_opt_before[i][k]
                   for k, v in s.items())
    assert trainer.state.d_scaler.get_scale() == 2.0**99                   # backed off by one halving
    assert not same(params(trainer.G), g_before)                     # G has its own scaler: it stepped
    assert trainer.state.g_scaler.get_scale() == 2.0**8

    trainer.state.d_scaler.update(new_scale=2.0**8)
    d_before = params(trainer.D)
    trainer.train_iteration()
    c = trainer.state.sync()
    assert c.bad_streak == 0 and not same(params(trainer.D), d_before)


def test_bf16_training_steps(tmp_path, device, tiny_cfg):
    trainer = Trainer(tiny_cfg("train.precision=bf16", "train.max_steps=3"))
    assert trainer.accelerator.device.type == device and trainer.accelerator.mixed_precision == "bf16"
    assert all(isinstance(s, UnitScaler) for s in (trainer.state.g_scaler, trainer.state.d_scaler))
    before = params(trainer.G) | {f"D.{k}": v for k, v in params(trainer.D).items()}
    trainer.run()
    after = params(trainer.G) | {f"D.{k}": v for k, v in params(trainer.D).items()}
    assert sum(not torch.equal(before[k], after[k]) for k in before) > 10
    assert all(v.dtype == torch.float32 for v in after.values())     # bf16 computes; the weights stay float32
    records = read_metrics(trainer.run_dir / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(torch.isfinite(torch.tensor([r["d_loss"], r["g_loss"]])).all() for r in records)
    assert records[-1]["skipped_d"] == 0 and records[-1]["skipped_g"] == 0


def test_auto_precision_on_this_device(tmp_path, device, tiny_cfg):
    trainer = Trainer(tiny_cfg("train.max_steps=1"))           # train.precision = "auto", the default
    expected = "no" if device == "cpu" else ("bf16" if native_bf16() else "fp16")
    assert trainer.precision == expected == trainer.accelerator.mixed_precision
    trainer.run()
    assert json.loads((trainer.run_dir / "config.json").read_text())["train"]["precision"] == expected


# ---------------------------------------------------------------------------------------------------------------
# Speed options


def test_channels_last_on_the_device(tmp_path, device, tiny_cfg):
    nhwc = Trainer(tiny_cfg("train.channels_last=true", "train.precision=no", "train.max_steps=2", name="nhwc"))
    convs = [p for p in nhwc.G.parameters() if p.ndim == 4] + [p for p in nhwc.D.parameters() if p.ndim == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    x, _ = nhwc.stream.batch(0, 4)
    assert x.device.type == device and x.is_contiguous(memory_format=torch.channels_last)
    a = nhwc.train_iteration()
    del nhwc
    nchw = Trainer(tiny_cfg("train.channels_last=false", "train.precision=no", "train.max_steps=2", name="nchw"))
    b = nchw.train_iteration()
    # Same weights, data and latents in another memory layout: the same losses up to kernel choice (TF32 convs).
    for k in a:
        torch.testing.assert_close(a[k].float(), b[k].float(), rtol=1e-2, atol=1e-2)


def test_compile_trains_on_the_device(tmp_path, device, tiny_cfg):
    reason = compiler_unavailable(torch.device(device))
    if reason:
        pytest.skip(f"train.compile: {reason}")
    trainer = train(tiny_cfg("train.compile=true", "train.precision=bf16", "train.max_steps=2"))
    assert trainer.G._compiled_call_impl is not None and trainer.D._compiled_call_impl is not None
    records = read_metrics(trainer.run_dir / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2]
    assert all(torch.isfinite(torch.tensor([r["d_loss"], r["g_loss"]])).all() for r in records)
    G, _, _ = ckpt.load_generator(trainer.run_dir)                  # compiled in place: plain state_dict keys
    assert G.resolution == 32


# ---------------------------------------------------------------------------------------------------------------
# Exact resume


def test_resume_on_the_device_follows_the_same_trajectory(tmp_path, device, tiny_cfg):
    flags = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
             torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        straight = states(train(tiny_cfg("train.max_steps=6", "train.precision=bf16", name="straight")))
        again = states(train(tiny_cfg("train.max_steps=6", "train.precision=bf16", name="again")))
        first = train(tiny_cfg("train.max_steps=3", "train.precision=bf16", name="resumed"))
        assert first.counters.step == 3
        second = train(tiny_cfg("train.max_steps=6", "train.precision=bf16", name="resumed"), resume="latest")
        assert second.counters.step == 6
        resumed = states(second)
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = flags[:2]
        torch.use_deterministic_algorithms(flags[2], warn_only=flags[3])
    assert straight.keys() == resumed.keys()

    def gap(a: dict, b: dict) -> float:
        return max((a[k].float() - b[k].float()).abs().max().item() for k in a if a[k].is_floating_point())

    noise = gap(straight, again)        # two uninterrupted runs: 0 where every kernel is deterministic
    if noise == 0:
        mismatched = [k for k in straight if not torch.equal(straight[k], resumed[k])]
        assert not mismatched, mismatched[:5]
    else:                               # a resumed run is as close to the uninterrupted one as a rerun is
        assert gap(straight, resumed) <= 10 * noise, (gap(straight, resumed), noise)


# ---------------------------------------------------------------------------------------------------------------
# Sampling, evaluation, the Python API


@pytest.fixture
def trained_run(tmp_path, tiny_cfg) -> Path:
    trainer = train(tiny_cfg("train.max_steps=2", "train.sample_every=2"))
    assert (trainer.run_dir / "samples" / "step-0000002.png").is_file()
    return trainer.run_dir


def test_sampling_on_the_device_matches_the_cpu(trained_run, tmp_path, device):
    from smallgan import load_generator

    G = load_generator(trained_run, device=device)
    assert G.device.type == device
    images = G.sample(16, trunc=0.5, seed=0)
    assert images.dtype == torch.uint8 and images.shape == (16, 3, 32, 32) and images.device.type == "cpu"
    assert torch.equal(images, G.sample(16, trunc=0.5, seed=0))                 # seeded
    # The same images in other batch sizes and on the CPU, up to float rounding (TF32 convolutions on a GPU).
    for other in (G.sample(16, trunc=0.5, seed=0, batch_size=5),
                  load_generator(trained_run, device="cpu").sample(16, trunc=0.5, seed=0)):
        diff = (images.int() - other.int()).abs()
        assert diff.float().mean() < 1.0 and (diff > 8).float().mean() < 0.01, diff.max()
    out = tmp_path / "grid.png"
    r = smallgan_cli("sample", "--run", str(trained_run), "--grid", "--n", "4", "--trunc", "0.5",
                     "--device", device, "--out", str(out))
    assert r.returncode == 0 and out.is_file(), r.stderr[-2000:]


def test_evaluation_with_a_random_extractor_on_the_device(tmp_path, device, tiny_cfg):
    trainer = train(tiny_cfg("train.max_steps=4", "train.eval_every=2", "eval.extractor=tiny", "eval.n=16",
                         "eval.batch_size=64", "eval.metrics=kid,fid", "eval.best=fid"))
    assert next(trainer.quality.extractor.parameters()).device.type == device
    evals = [r for r in read_metrics(trainer.run_dir / "metrics.jsonl") if r.get("event") == "eval"]
    assert [r["step"] for r in evals] == [2, 4]
    assert all(r["n_fake"] == 16 and r["fid"] >= 0 and r["kid"] == r["kid"] for r in evals)
    assert (trainer.run_dir / "best" / "generator.safetensors").is_file()
    # `smallgan eval` on the run (the GPU when there is one), with the same random extractor.
    args = ["eval", "--run", str(trainer.run_dir), "--extractor", "tiny", "--n", "16", "--metrics", "fid,kid"]
    r = smallgan_cli(*args, *(["--cpu"] if device == "cpu" else []))
    assert r.returncode == 0, r.stderr[-2000:]
    record = read_metrics(trainer.run_dir / "metrics.jsonl")[-1]
    assert record["event"] == "eval" and record["n_fake"] == 16 and record["fid"] >= 0


def test_python_api_on_the_device(trained_run, tmp_path, device):
    import smallgan

    G = smallgan.load_generator(trained_run)                         # no device: the GPU when there is one
    assert G.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    G.to(device)
    images = G.sample(9, trunc=0.5, classes="circle", seed=0)
    assert images.shape == (9, 3, 32, 32)
    pil = G.sample(2, seed=1, as_pil=True)
    assert len(pil) == 2 and pil[0].size == (32, 32)
    path = smallgan.save_grid(images, tmp_path / "grid.png", nrow=3)
    assert path.is_file()
    with torch.no_grad():
        z, y = G.latents(4, trunc=0.5, seed=0), G.labels(4, ["circle", "square"])
        assert G.generate(z, y).shape == (4, 3, 32, 32)
