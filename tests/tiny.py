"""Tiny sizes shared by the tests (a helper module, not a test module; conftest.py's ``tiny_cfg`` fixture wraps
:func:`tiny`): the tiny-cpu recipe at 4 channels, and a few-channel model config each architecture accepts."""

from __future__ import annotations

from pathlib import Path

import torch

from smallgan.config import Config, ConfigError, load_config
from smallgan.models.config import ModelConfig
from smallgan.registry import check_model_config, get_architecture

TINY_MODEL = ["model.ch=4", "model.z_dim=32", "model.shared_dim=8"]
# Every training test's base: 4 channels, micro-batches of 4, no progress grids, 4-image sample grids.
TINY_BASE = [*TINY_MODEL, "train.micro_batch=4", "train.sample_every=0", "sample.n=4"]
# Batch 8 = 4 x 2 accumulation, logging every step, a spectral-norm check every 2 steps, EMA from step 2.
TINY = [*TINY_BASE, "train.batch=8", "train.log_every=1", "train.sv_every=2", "train.ema_start=2"]


def tiny(out_dir: str | Path, *extra: str, name: str = "run") -> Config:
    """tiny-cpu at :data:`TINY` sizes, its run folder ``out_dir/name``; ``extra`` overrides last."""
    return load_config("tiny-cpu", [*TINY, f"train.out_dir={out_dir}", f"train.name={name}", *extra])


def states(trainer) -> dict[str, torch.Tensor]:
    """Copies of G's, D's and the EMA's state dicts, keyed G.*, D.*, EMA.*."""
    out = {f"G.{k}": v.clone() for k, v in trainer.G.state_dict().items()}
    out.update({f"D.{k}": v.clone() for k, v in trainer.D.state_dict().items()})
    out.update({f"EMA.{k}": v.clone() for k, v in trainer.ema.state_dict().items()})
    return out


def tiny_model(arch: str, resolution: int | None = None, **kw) -> ModelConfig:
    """A few-channel config the architecture accepts: conditional (3 classes) where it takes classes."""
    resolution = resolution or min(get_architecture(arch).resolutions)
    for n_classes in (3, 1):
        base = dict(arch=arch, resolution=resolution, ch=4, d_ch=4, z_dim=16, shared_dim=8, hier=False,
                    n_classes=n_classes, g_attention=[], d_attention=[])
        cfg = ModelConfig(**{**base, **kw})
        try:
            check_model_config(cfg)
        except ConfigError:
            continue
        return cfg
    raise AssertionError(f"no tiny config that {arch} accepts")
