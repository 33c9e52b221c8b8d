"""Training-step benchmark: img/s and peak memory of one full iteration (d_steps D updates + one G update,
with EMA and orthogonal regularisation as the recipe says), through the real Trainer on synthetic images.

Used by `smallgan bench` and benchmarks/bench_train.py. Warm-up iterations are excluded from the timing.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import torch

from smallgan.config import Config, load_config

# Base recipe per architecture; the benchmark overrides size, width, batch, precision.
BASE_RECIPE = {"biggan": "tiny-cpu", "biggan-deep": "tiny-cpu", "fastgan": "fastgan-tiny64"}


@dataclass
class SyntheticImages:
    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]


def bench_config(
    arch: str, resolution: int, ch: int, batch: int, d_steps: int, precision: str, extra: list[str] | None = None
) -> Config:
    """A recipe for one micro-batch per step (no accumulation): what a single device does per iteration."""
    from smallgan.registry import get_architecture

    get_architecture(arch)  # a clear error for an unknown name
    overrides = [
        f"model.arch={arch}", f"model.resolution={resolution}", f"model.ch={ch}", "model.d_ch=0",
        f"train.batch={batch}", f"train.micro_batch={batch}", f"train.d_steps={d_steps}",
        f"train.precision={precision}", "train.ema_start_kimg=0", "train.diffaug=", "model.n_classes=1",
        # The paper's step: tiny-cpu's mode seeking is that recipe's choice (the bench's `mode-seeking` variant)
        "train.mode_seeking=0",
    ]
    if arch.startswith("biggan"):
        # z must split into (G blocks + 1) chunks with skip-z: 20 per chunk as in the paper at 128 px.
        blocks = {32: 3, 64: 4, 128: 5, 256: 6, 512: 7}[resolution]
        attention = {32: 16, 64: 32}.get(resolution, 64)
        overrides += [f"model.z_dim={20 * (blocks + 1)}", f"model.g_attention=[{attention}]",
                      f"model.d_attention=[{attention}]"]
    return load_config(BASE_RECIPE.get(arch, "tiny-cpu"), [*overrides, *(extra or [])])


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_benchmark(cfg: Config, *, iters: int = 10, warmup: int = 3, device: str = "auto") -> dict[str, Any]:
    """Time `iters` training iterations after `warmup` ones; returns figures for one row of the table."""
    from smallgan.registry import count_params
    from smallgan.training.loop import Trainer

    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # must happen before Accelerate looks at the devices
    cuda = torch.cuda.is_available() and device != "cpu"
    n_images = max(64, cfg.train.batch * 4)
    r = cfg.model.resolution
    data = SyntheticImages(torch.randint(0, 256, (n_images, 3, r, r), dtype=torch.uint8),
                           torch.zeros(n_images, dtype=torch.long), [])
    with tempfile.TemporaryDirectory() as tmp:
        cfg.train.out_dir, cfg.train.name = tmp, "bench"
        trainer = Trainer(cfg, dataset=data)
        sync = torch.cuda.synchronize if cuda else (lambda: None)
        for _ in range(warmup):
            trainer.train_iteration()
        sync()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        rss_before = _peak_rss_mb()
        t0 = time.perf_counter()
        for _ in range(iters):
            losses = trainer.train_iteration()
        sync()
        seconds = (time.perf_counter() - t0) / iters
        finite = all(torch.isfinite(v).item() for v in losses.values())
        g_params, d_params = count_params(trainer.G), count_params(trainer.D)
        dev = str(trainer.accelerator.device)
        precision = trainer.precision   # train.precision=auto, resolved for the device
    t = cfg.train
    return {
        "arch": cfg.model.arch, "resolution": r, "ch": cfg.model.ch, "batch": t.batch, "d_steps": t.d_steps,
        "precision": precision, "device": dev, "G_params": g_params, "D_params": d_params,
        "s_per_iter": round(seconds, 5),
        # Real images through D per second (batch x d_steps per iteration), the unit of the training log.
        "img_s": round(t.batch * t.d_steps / seconds, 2),
        "peak_mem_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else round(_peak_rss_mb(), 1),
        "peak_mem_kind": "cuda max allocated" if cuda else "process peak RSS",
        "rss_growth_mb": None if cuda else round(_peak_rss_mb() - rss_before, 1),
        "losses_finite": finite,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
    }
