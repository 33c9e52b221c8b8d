"""An infinite, sharded, resumable stream of real micro-batches.

The whole prepared set is held as one uint8 tensor (on the training device when it fits: a few-shot set of
10k images at 64 px is 120 MB), so a step never decodes an image or waits on a DataLoader. Which images a
process sees is a pure function of (seed, rank, images consumed so far): resuming at a given count replays
exactly the same batches, and processes see disjoint shards.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch import Tensor

from smallgan.config import Config, ConfigError
from smallgan.data import random_flip, to_float
from smallgan.errors import SmallganError


def derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (seed, rank, step, ...), stable across runs and machines."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


# Each use of randomness has its own stream tag, so two uses never share a seed: without them the data
# permutation of epoch e and the latents of step e were both drawn from derive_seed(seed, rank, e).
STEP_STREAM, EPOCH_STREAM, FIXED_LATENTS_STREAM, STANDING_STATS_STREAM = 1, 2, 3, 4


def step_seed(seed: int, rank: int, step: int, retry: int = 0) -> int:
    """The seed of all randomness of training iteration `step` on process `rank` (latents, flips, augmentation).
    `retry`: how many times the run rolled back after diverging (training/rollback.py); 0 keeps the seeds of
    runs that never did, so their trajectories are unchanged."""
    return derive_seed(seed, STEP_STREAM, rank, step, *([retry] if retry else []))


def epoch_seed(seed: int, rank: int, epoch: int) -> int:
    """The seed of the shuffled order of epoch `epoch` of process `rank`'s shard."""
    return derive_seed(seed, EPOCH_STREAM, rank, epoch)


class RealStream:
    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        *,
        rank: int = 0,
        world: int = 1,
        seed: int = 0,
        flip: bool = True,
        device: torch.device | str = "cpu",
        on_device: bool = True,
        channels_last: bool = False,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise TypeError("RealStream expects uint8 images (N, 3, H, W)")
        shard = torch.arange(rank, images.shape[0], world)
        if len(shard) == 0:
            raise SmallganError(
                f"the dataset has {images.shape[0]} image(s), fewer than the {world} training processes; "
                "add images or use fewer processes"
            )
        self.device = torch.device(device)
        store = self.device if on_device else torch.device("cpu")
        self.images = images[shard].to(store)
        self.labels = labels[shard].to(store)
        if store.type == "cpu" and self.device.type == "cuda":
            self.images, self.labels = self.images.pin_memory(), self.labels.pin_memory()
        self.seed, self.rank, self.flip = seed, rank, flip
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __len__(self) -> int:
        return self.images.shape[0]

    def _indices(self, position: int, count: int) -> Tensor:
        """Indices for images position .. position+count-1 of this shard's endless shuffled epochs."""
        n = len(self)
        out, pos = [], position
        while pos < position + count:
            epoch, offset = divmod(pos, n)
            g = torch.Generator().manual_seed(epoch_seed(self.seed, self.rank, epoch))
            perm = torch.randperm(n, generator=g)
            take = min(n - offset, position + count - pos)
            out.append(perm[offset : offset + take])
            pos += take
        return torch.cat(out)

    def batch(self, position: int, count: int) -> tuple[Tensor, Tensor]:
        """(images float in [-1, 1] on the device, labels) for the given stream position."""
        idx = self._indices(position, count).to(self.images.device)
        x = self.images[idx].to(self.device, non_blocking=True)
        y = self.labels[idx].to(self.device, non_blocking=True)
        x = to_float(x)
        if self.flip:
            x = random_flip(x)
        return x.contiguous(memory_format=self.memory_format), y


def resolve_flip(setting: str, data_path: Path | None) -> bool:
    """data.flip: "true" / "false", or "dataset": what `smallgan prepare --flip` recorded (off when nothing)."""
    if setting != "dataset":
        return setting == "true"
    from data_tools.prepare import read_meta

    return bool((read_meta(data_path) or {}).get("flip", False)) if data_path is not None else False


@dataclass
class RealData:
    """A run's real images as this process streams them, and what the run takes from the dataset."""

    stream: RealStream
    class_names: list[str]   # [] when the run is unconditional
    n_classes: int           # model.n_classes, from the dataset when the recipe says 0
    path: Path | None        # the prepared dataset folder; None for a set passed in memory
    fingerprint: str         # of the images, labels and class names (smallgan.data.content_fingerprint)
    n_images: int            # in the whole set (every process)


def load_real_data(cfg: Config, accelerator: Any, console: Console, dataset: Any = None) -> RealData:
    """cfg.data.path prepared once (main process first), or `dataset` (``.images`` uint8, ``.labels``,
    ``.class_names``) as given, held in memory as uint8 and sharded over the processes."""
    from smallgan.data import content_fingerprint, load_prepared, resolve_dataset

    if dataset is None:
        with accelerator.main_process_first():
            data_path = resolve_dataset(cfg.data.path, cfg.model.resolution, console=console,
                                        workers=cfg.data.workers)
        dataset = load_prepared(data_path, resolution=cfg.model.resolution)
    else:
        data_path = None
    class_names = list(dataset.class_names)
    n_data_classes = max(len(class_names), 1)
    if cfg.model.n_classes not in (0, 1) and cfg.model.n_classes != n_data_classes:
        raise ConfigError(
            f"model.n_classes={cfg.model.n_classes} but the dataset {data_path} has {n_data_classes} classes; "
            "set model.n_classes=0 (from the data) or 1 (unconditional)"
        )
    n_classes = cfg.model.n_classes or n_data_classes
    labels = dataset.labels if n_classes > 1 else torch.zeros_like(dataset.labels)
    stream = RealStream(
        dataset.images, labels, rank=accelerator.process_index, world=accelerator.num_processes,
        seed=cfg.train.seed, flip=resolve_flip(cfg.data.flip, data_path), device=accelerator.device,
        on_device=cfg.data.on_device, channels_last=cfg.train.channels_last,
    )
    fingerprint = content_fingerprint(dataset.images, dataset.labels, class_names)
    return RealData(stream, class_names if n_classes > 1 else [], n_classes, data_path, fingerprint,
                    len(dataset.images))
