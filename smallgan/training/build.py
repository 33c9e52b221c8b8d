"""What a run trains, built from its config: G, D and G's EMA, their optimisers and loss scalers, and the
perceptual loss of a D that reconstructs. Models come from the same seed on every process, so all ranks start
from identical weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from smallgan.config import Config, TrainConfig
from smallgan.device import fused_adam_supported
from smallgan.ema import EMA, HalfLife
from smallgan.layers.spectral_norm import iterate_once_per_step
from smallgan.registry import build_discriminator, build_generator, capabilities
from smallgan.training.phases import UnitScaler
from smallgan.training.speed import apply_speed_options
from smallgan.training.transfer import apply_freezing, trainable


@dataclass
class Parts:
    """The trained networks with everything a checkpoint holds for them."""

    G: nn.Module
    D: nn.Module
    ema: EMA
    g_opt: torch.optim.Optimizer
    d_opt: torch.optim.Optimizer
    g_scaler: torch.amp.GradScaler
    d_scaler: torch.amp.GradScaler


def ema_schedule(t: TrainConfig, images_per_step: int) -> HalfLife:
    """The EMA decay of each iteration, from train.ema_halflife_kimg, ema_rampup and ema_start_kimg."""
    return HalfLife(t.ema_halflife_kimg, images_per_step, rampup=t.ema_rampup, start_kimg=t.ema_start_kimg)


def build_models(cfg: Config, n_classes: int, device: torch.device, world: int, images_per_step: int,
                 note: Callable[[str], None]) -> tuple[nn.Module, nn.Module, EMA]:
    """G, D (one spectral-norm power iteration per optimiser step, not per forward) and G's EMA, on `device`,
    with what train.finetune and train.freeze_d leave out of training frozen."""
    t = cfg.train
    torch.manual_seed(t.seed)
    G = build_generator(cfg.model, n_classes=n_classes)
    D = build_discriminator(cfg.model, n_classes=n_classes)
    if t.sync_bn and world > 1 and device.type == "cuda":
        G = torch.nn.SyncBatchNorm.convert_sync_batchnorm(G)
    elif t.sync_bn:
        note("train.sync_bn needs several CUDA processes; using plain BatchNorm")
    frozen = apply_freezing(G, D, t, cfg.model)
    if frozen:
        note(frozen)
    G, D = G.to(device), D.to(device)
    iterate_once_per_step(G)
    iterate_once_per_step(D)
    ema = EMA(G, ema_schedule(t, images_per_step))
    apply_speed_options(G, D, t, device, note=note)  # after the EMA copy: it keeps the plain forward
    return G, D, ema


def build_optimizers(G: nn.Module, D: nn.Module, t: TrainConfig, device: torch.device,
                     note: Callable[[str], None]) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    # Fused Adam: one kernel per step, and it skips a non-finite step on the device (no host sync). Where this
    # PyTorch has no fused kernel for the device, the foreach Adam and one host sync per step (phases.py).
    fused = fused_adam_supported(device)
    if not fused:
        note(f"this PyTorch has no fused Adam for {device.type}; using the foreach one (a host sync per step)")
    adam: dict[str, Any] = dict(betas=tuple(t.betas), eps=t.adam_eps, fused=fused)
    return torch.optim.Adam(trainable(G), lr=t.g_lr, **adam), torch.optim.Adam(trainable(D), lr=t.d_lr, **adam)


def build_scalers(device_type: str, precision: str) -> tuple[torch.amp.GradScaler, torch.amp.GradScaler]:
    """One per network: dynamic loss scaling for fp16; for fp32 and bf16 a UnitScaler, which only skips
    non-finite steps."""
    if precision == "fp16":
        return torch.amp.GradScaler(device_type), torch.amp.GradScaler(device_type)
    return UnitScaler(device_type), UnitScaler(device_type)


def build_parts(cfg: Config, n_classes: int, device: torch.device, *, world: int, precision: str,
                images_per_step: int, note: Callable[[str], None]) -> Parts:
    G, D, ema = build_models(cfg, n_classes, device, world, images_per_step, note)
    g_opt, d_opt = build_optimizers(G, D, cfg.train, device, note)
    g_scaler, d_scaler = build_scalers(device.type, precision)
    return Parts(G, D, ema, g_opt, d_opt, g_scaler, d_scaler)


def build_perceptual(cfg: Config, accelerator: Any) -> nn.Module | None:
    """LPIPS for a D that reconstructs (FastGAN's self-supervised D), frozen and outside D's state; else None."""
    if not capabilities(cfg.model).reconstructs:
        return None
    from smallgan.perceptual import build_lpips

    with accelerator.main_process_first():  # one process downloads the VGG weights, the others find them cached
        return build_lpips(cfg.train.lpips_weights).to(accelerator.device)
