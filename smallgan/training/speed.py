"""Opt-in speed and memory options for G and D (train.channels_last, train.compile,
train.activation_checkpointing). Each is measured by `smallgan bench` before it becomes a default:
see docs/speed.md."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from smallgan.device import compiler_unavailable  # looked up in this module by apply_speed_options


def _blocks(model: nn.Module) -> list[nn.Module]:
    """The residual blocks of a model (`model.blocks`: a ModuleDict of blocks or of lists of blocks)."""
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        return []
    out: list[nn.Module] = []
    for stage in blocks.values() if isinstance(blocks, nn.ModuleDict) else blocks:
        out += list(stage) if isinstance(stage, (nn.ModuleList, nn.Sequential)) else [stage]
    return out


def enable_activation_checkpointing(model: nn.Module) -> int:
    """Recompute each block's activations during backward instead of storing them (memory for time).

    Apply after the EMA copy is made (the copy must keep the plain forward). Spectral-norm power iterations
    run outside forward (once per step), so a recomputed forward equals the first one; BatchNorm running
    statistics are updated twice per step, which standing statistics at sampling time make irrelevant.
    """
    blocks = _blocks(model)
    for block in blocks:
        plain = block.forward

        def forward(*args, _plain=plain, **kwargs):
            if torch.is_grad_enabled():
                return checkpoint(_plain, *args, use_reentrant=False, **kwargs)
            return _plain(*args, **kwargs)

        block.forward = forward
    return len(blocks)


def apply_speed_options(G: nn.Module, D: nn.Module, train_cfg, device: torch.device) -> list[str]:
    """channels_last, activation checkpointing and torch.compile, in that order, as the config asks; returns
    notes on what could not be applied."""
    notes = []
    if train_cfg.channels_last:
        G.to(memory_format=torch.channels_last)
        D.to(memory_format=torch.channels_last)
    if train_cfg.activation_checkpointing:
        n = enable_activation_checkpointing(G) + enable_activation_checkpointing(D)
        if n == 0:
            notes.append("train.activation_checkpointing: this architecture exposes no blocks; ignored")
    if train_cfg.compile:
        backend = train_cfg.compile_backend
        reason = compiler_unavailable(device) if backend == "inductor" else None   # the others generate no code
        if reason:
            notes.append(f"train.compile: {reason}; training without compilation")
        else:
            # Module.compile() compiles in place: state_dict keys stay free of `_orig_mod.` prefixes.
            G.compile(backend=backend)
            D.compile(backend=backend)
    return notes
