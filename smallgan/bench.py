"""Training-step benchmark: img/s and peak memory of one full iteration (d_steps D updates + one G update,
with EMA and orthogonal regularisation as the recipe says), through the real Trainer on synthetic images.

Used by `smallgan bench` and the benchmarks package (benchmarks/): its one step timer (:func:`time_iterations`),
one peak-memory reading (:func:`peak_memory`) and one synthetic image set (:func:`synthetic_images`).
Warm-up iterations are excluded from the timing.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from dataclasses import dataclass
from collections.abc import Callable
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


def synthetic_images(cfg: Config, n_images: int, seed: int = 0) -> SyntheticImages:
    """Seeded random uint8 images at the config's resolution, with a label per class when it has classes."""
    r, n_classes = cfg.model.resolution, cfg.model.n_classes
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n_images, 3, r, r), dtype=torch.uint8, generator=g)
    if n_classes > 1:
        return SyntheticImages(images, torch.randint(0, n_classes, (n_images,), generator=g),
                               [f"class{i}" for i in range(n_classes)])
    return SyntheticImages(images, torch.zeros(n_images, dtype=torch.long), [])


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def reset_peak_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_memory() -> dict[str, Any]:
    """The peak since :func:`reset_peak_memory`: CUDA max allocated (and reserved) on a GPU, else the process's
    peak RSS (which cannot be reset: it covers the whole process)."""
    if torch.cuda.is_available():
        return {"peak_mem_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1),
                "peak_reserved_mb": round(torch.cuda.max_memory_reserved() / 2**20, 1),
                "peak_mem_kind": "cuda max allocated"}
    return {"peak_mem_mb": round(_peak_rss_mb(), 1), "peak_mem_kind": "process peak RSS"}


@dataclass
class StepTiming:
    s_per_iter: float                      # mean over the timed iterations
    warmup_s: list[float]                  # each warm-up iteration (compilation shows here)
    losses: dict[str, torch.Tensor]        # of the last timed iteration


def time_iterations(step: Callable[[], dict[str, torch.Tensor]], *, iters: int, warmup: int) -> StepTiming:
    """The one step timer of the benchmarks: ``warmup`` untimed calls of ``step`` (a Trainer's
    ``train_iteration``), then ``iters`` timed ones, the device synchronised around the timing; the peak
    memory is reset after the warm-up."""
    warm = []
    for _ in range(warmup):
        t0 = time.perf_counter()
        step()
        _sync()
        warm.append(round(time.perf_counter() - t0, 4))
    reset_peak_memory()
    t0 = time.perf_counter()
    losses: dict[str, torch.Tensor] = {}
    for _ in range(iters):
        losses = step()
    _sync()
    return StepTiming((time.perf_counter() - t0) / iters, warm, losses)


def run_benchmark(cfg: Config, *, iters: int = 10, warmup: int = 3, device: str = "auto") -> dict[str, Any]:
    """Time `iters` training iterations after `warmup` ones; returns figures for one row of the table."""
    from smallgan.registry import count_params
    from smallgan.training.loop import Trainer

    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # must happen before Accelerate looks at the devices
    cuda = torch.cuda.is_available() and device != "cpu"
    data = synthetic_images(cfg, max(64, cfg.train.batch * 4))
    with tempfile.TemporaryDirectory() as tmp:
        cfg.train.out_dir, cfg.train.name = tmp, "bench"
        trainer = Trainer(cfg, dataset=data)
        rss_before = _peak_rss_mb()
        timing = time_iterations(trainer.train_iteration, iters=iters, warmup=warmup)
        memory = peak_memory()
        finite = all(torch.isfinite(v).item() for v in timing.losses.values())
        g_params, d_params = count_params(trainer.G), count_params(trainer.D)
        dev = str(trainer.accelerator.device)
        precision = trainer.precision   # train.precision=auto, resolved for the device
    t = cfg.train
    return {
        "arch": cfg.model.arch, "resolution": cfg.model.resolution, "ch": cfg.model.ch, "batch": t.batch,
        "d_steps": t.d_steps, "precision": precision, "device": dev, "G_params": g_params, "D_params": d_params,
        "s_per_iter": round(timing.s_per_iter, 5),
        # Real images through D per second (batch x d_steps per iteration), the unit of the training log.
        "img_s": round(t.batch * t.d_steps / timing.s_per_iter, 2),
        "peak_mem_mb": memory["peak_mem_mb"], "peak_mem_kind": memory["peak_mem_kind"],
        "rss_growth_mb": None if cuda else round(_peak_rss_mb() - rss_before, 1),
        "losses_finite": finite,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
    }
