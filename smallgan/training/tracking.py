"""Where a run shows itself besides ``metrics.jsonl``: the Accelerate trackers (TensorBoard by default when it is
installed, W&B on request) get the scalars and the image grids; ``reals.png`` shows the training images as the
loop sees them, ``samples/step-*.png`` the progress grids and ``samples/latest.png`` the newest."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from smallgan.config import Config
from smallgan.ema import EMA, prepare_for_sampling
from smallgan.errors import ConfigError
from smallgan.io import atomic_write
from smallgan.sampling.generator import TrainedGenerator, standing_batch
from smallgan.sampling.images import make_grid, save_grid
from smallgan.training.batches import FIXED_LATENTS_STREAM, STANDING_STATS_STREAM, derive_seed

# train.log_with: auto = TensorBoard when the `tensorboard` package is installed (its writer costs a few ms per
# log interval), else none. The module each tracker needs, to refuse a missing one before training starts.
TRACKER_MODULES = {"tensorboard": "tensorboard", "wandb": "wandb"}
TENSORBOARD_DIR = "tensorboard"   # runs/NAME/tensorboard/: `tensorboard --logdir runs` shows every run
REALS_FILE, LATEST_FILE = "reals.png", "latest.png"


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def resolve_log_with(setting: str) -> str | None:
    """The tracker train.log_with asks for (None: none); an explicit tracker that is not installed is refused."""
    if setting in ("", "none"):
        return None
    if setting == "auto":
        return "tensorboard" if _installed("tensorboard") else None
    if setting not in TRACKER_MODULES:
        raise ConfigError(f"train.log_with must be one of auto, none, {', '.join(TRACKER_MODULES)}, got {setting!r}")
    if not _installed(TRACKER_MODULES[setting]):
        raise ConfigError(f"--log-with {setting}: the {setting} package is not installed; `pip install {setting}`, "
                          "or --log-with none")
    return setting


def start_trackers(accelerator: Any, run_dir: Path, config: dict[str, Any]) -> None:
    """Open the run's tracker (main process): TensorBoard writes to runs/NAME/tensorboard/, W&B names the run
    after its folder. A continued run appends to the same place; the steps carry on."""
    if not accelerator.log_with:
        return
    accelerator.init_trackers(TENSORBOARD_DIR if _tracker_names(accelerator) == ["tensorboard"] else "smallgan",
                              config=config, init_kwargs={"wandb": {"name": run_dir.name, "dir": str(run_dir)}})


def _tracker_names(accelerator: Any) -> list[str]:
    return [str(getattr(t, "value", t)) for t in accelerator.log_with]


def log_scalars(accelerator: Any, record: dict[str, Any], step: int) -> None:
    """The numbers of a record (a log interval, an evaluation) to every tracker, at `step`."""
    if accelerator.trackers:
        accelerator.log({k: v for k, v in record.items() if isinstance(v, (int, float))}, step=step)


def log_grid(accelerator: Any, tag: str, grid: Tensor, step: int) -> None:
    """One (3, H, W) uint8 grid as an image of every tracker, at `step`."""
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.log_images({tag: grid.unsqueeze(0).numpy()}, step=step, dataformats="NCHW")
        elif tracker.name == "wandb":
            tracker.log_images({tag: [grid.permute(1, 2, 0).numpy()]}, step=step)


def publish_samples(accelerator: Any, images: Tensor, path: Path, step: int) -> Path:
    """A progress grid of `images`: samples/step-*.png, a copy as samples/latest.png, and the trackers."""
    grid = make_grid(images)
    save_grid(grid.unsqueeze(0), path, padding=0)
    atomic_write(path.parent / LATEST_FILE, lambda tmp: shutil.copyfile(path, tmp))
    log_grid(accelerator, "samples", grid, step)
    return path


class ProgressGrids:
    """The EMA generator prepared for sampling (its own spectral-norm vectors and BatchNorm statistics, see
    :func:`~smallgan.ema.prepare_for_sampling`), made once per step and rollback for grids, evaluation and export;
    and the progress grids of it, from fixed latents (every grid of a run, and of its reruns, shows the same z
    and classes)."""

    def __init__(self, cfg: Config, class_names: list[str], accelerator: Any, run_dir: Path, batch_size: int) -> None:
        self.cfg, self.class_names, self.accelerator = cfg, class_names, accelerator
        self.run_dir, self.batch_size = run_dir, batch_size
        self._generator: tuple[tuple[int, int], torch.nn.Module] | None = None   # ((step, rollbacks), module)
        self._grid: tuple[tuple[int, int], Path] | None = None   # the last grid this session wrote

    def generator(self, ema: EMA, counters: Any) -> torch.nn.Module:
        key = (counters.step, counters.rollbacks)
        if self._generator is None or self._generator[0] != key:
            module = prepare_for_sampling(ema.shadow, batch_size=standing_batch(self.cfg),
                                          seed=derive_seed(self.cfg.train.seed, STANDING_STATS_STREAM))
            self._generator = (key, module)
        return self._generator[1]

    def write(self, ema: EMA, counters: Any) -> Path | None:
        """samples/step-*.png of this step (main process; once per step and rollback)."""
        key, step = (counters.step, counters.rollbacks), counters.step
        if not self.accelerator.is_main_process:
            return None
        if self._grid is not None and self._grid[0] == key:
            return self._grid[1]
        G = TrainedGenerator(self.generator(ema, counters), self.cfg, self.class_names, step=step)
        z, y = G.random_inputs(self.cfg.sample.n, self.cfg.sample.trunc,
                               seed=derive_seed(self.cfg.train.seed, FIXED_LATENTS_STREAM))
        with self.accelerator.autocast():
            images = G.generate(z, y, batch_size=self.batch_size)
        path = self.run_dir / "samples" / f"step-{step:07d}.png"
        self._grid = (key, publish_samples(self.accelerator, images, path, step))
        return path


def write_reals(accelerator: Any, stream: Any, n: int, run_dir: Path, step: int) -> Path:
    """reals.png: the first n real images of the stream as D gets them (flips included, DiffAugment off), to
    compare the progress grids with; also logged to the trackers."""
    x, _ = stream.batch(0, min(n, len(stream)))
    grid = make_grid(x.detach().float().cpu().contiguous())
    log_grid(accelerator, "reals", grid, step)
    return save_grid(grid.unsqueeze(0), run_dir / REALS_FILE, padding=0)


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory so far: CUDA's max allocated on a GPU, else the process's peak resident set (Linux: KiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
