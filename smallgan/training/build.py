"""What a run trains, built from its config: the training state (G, D and G's EMA, their optimisers and loss
scalers, the few-shot state) and the perceptual loss of a D that reconstructs. Models come from the same seed on
every process, so all ranks start from identical weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from smallgan.config import Config, TrainConfig
from smallgan.device import accelerate_cpu, choose_precision, fused_adam_supported
from smallgan.ema import EMA, HalfLife
from smallgan.layers.spectral_norm import iterate_once_per_step
from smallgan.registry import build_discriminator, build_generator, capabilities
from smallgan.regularizers import LeCam
from smallgan.training.ada import AdaptiveAugment
from smallgan.training.phases import UnitScaler
from smallgan.training.speed import apply_speed_options
from smallgan.training.tracking import resolve_log_with
from smallgan.training.state import TrainState
from smallgan.training.transfer import apply_freezing, trainable


def make_accelerator(cfg: Config, run_dir: Path):
    """The Accelerator of a run and the mixed precision it uses (train.precision=auto resolved for the device)."""
    from accelerate import Accelerator, PartialState
    from accelerate.utils import DistributedDataParallelKwargs

    # broadcast_buffers=False: with DDP's default, rank 0's buffers (spectral-norm u, BN statistics) are copied
    # in every forward, which breaks backward after an in-place u update (PyTorch #22095). Spectral-norm
    # vectors stay equal across ranks anyway: same init, same weights, same updates.
    ddp = DistributedDataParallelKwargs(broadcast_buffers=False)
    cpu = accelerate_cpu()
    # The device Accelerate will train on, asked before the Accelerator exists: its mixed precision is fixed then.
    precision = choose_precision(cfg.train.precision, PartialState(cpu=cpu).device)
    accelerator = Accelerator(cpu=cpu, mixed_precision=precision.value, kwargs_handlers=[ddp],
                              log_with=resolve_log_with(cfg.train.log_with), project_dir=str(run_dir))
    return accelerator, precision


def ema_schedule(t: TrainConfig, images_per_step: int) -> HalfLife:
    """The EMA decay of each iteration, from train.ema_halflife_kimg, ema_rampup and ema_start_kimg."""
    return HalfLife(t.ema_halflife_kimg, images_per_step, rampup=t.ema_rampup, start_kimg=t.ema_start_kimg)


def build_models(cfg: Config, n_classes: int, device: torch.device, world: int,
                 images_per_step: int) -> tuple[nn.Module, nn.Module, EMA, list[str]]:
    """G, D (one spectral-norm power iteration per optimiser step, not per forward) and G's EMA, on `device`,
    with what train.finetune and train.freeze_d leave out of training frozen; and notes for the user."""
    t, notes = cfg.train, []
    torch.manual_seed(t.seed)
    G = build_generator(cfg.model, n_classes=n_classes)
    D = build_discriminator(cfg.model, n_classes=n_classes)
    if t.sync_bn and world > 1 and device.type == "cuda":
        G = torch.nn.SyncBatchNorm.convert_sync_batchnorm(G)
    elif t.sync_bn:
        notes.append("train.sync_bn needs several CUDA processes; using plain BatchNorm")
    frozen = apply_freezing(G, D, t, cfg.model)
    if frozen:
        notes.append(frozen)
    G, D = G.to(device), D.to(device)
    iterate_once_per_step(G)
    iterate_once_per_step(D)
    ema = EMA(G, ema_schedule(t, images_per_step))
    notes += apply_speed_options(G, D, t, device)  # after the EMA copy: it keeps the plain forward
    return G, D, ema, notes


def build_optimizers(G: nn.Module, D: nn.Module, t: TrainConfig,
                     device: torch.device) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    # Fused Adam: one kernel per step, and it skips a non-finite step on the device (no host sync). Where this
    # PyTorch has no fused kernel for the device, the foreach Adam and one host sync per step (phases.py), with a
    # note from build_state.
    adam: dict[str, Any] = dict(betas=tuple(t.betas), eps=t.adam_eps, fused=fused_adam_supported(device))
    return torch.optim.Adam(trainable(G), lr=t.g_lr, **adam), torch.optim.Adam(trainable(D), lr=t.d_lr, **adam)


def build_scalers(device_type: str, precision: str) -> tuple[torch.amp.GradScaler, torch.amp.GradScaler]:
    """One per network: dynamic loss scaling for fp16; for fp32 and bf16 a UnitScaler, which only skips
    non-finite steps."""
    if precision == "fp16":
        return torch.amp.GradScaler(device_type), torch.amp.GradScaler(device_type)
    return UnitScaler(device_type), UnitScaler(device_type)


def build_state(cfg: Config, n_classes: int, accelerator: Any, *, precision: str, images_per_step: int,
                data: dict[str, Any]) -> tuple[TrainState, list[str]]:
    """The training state of a new run (weights from the seed, or train.init's), and notes for the user."""
    device, t = accelerator.device, cfg.train
    G, D, ema, notes = build_models(cfg, n_classes, device, accelerator.num_processes, images_per_step)
    if not fused_adam_supported(device):
        notes.append(f"this PyTorch has no fused Adam for {device.type}; using the foreach one (a host sync per step)")
    # Few-shot regularisers (docs/fewshot-regularisers.md): r_t always, adaptive p and LeCam when asked.
    ada = AdaptiveAugment(t, images_per_step, accelerator)
    lecam = LeCam(t.lecam_decay, accelerator) if t.lecam > 0 else None
    state = TrainState(G, D, ema, build_optimizers(G, D, t, device), build_scalers(device.type, precision),
                       ada=ada, lecam=lecam, data=data, accelerator=accelerator)
    return state, notes


def build_perceptual(cfg: Config, accelerator: Any) -> nn.Module | None:
    """LPIPS for a D that reconstructs (FastGAN's self-supervised D), frozen and outside D's state; else None."""
    if not capabilities(cfg.model).reconstructs:
        return None
    from smallgan.perceptual import build_lpips

    with accelerator.main_process_first():  # one process downloads the VGG weights, the others find them cached
        return build_lpips(cfg.train.lpips_weights).to(accelerator.device)
