"""High-level evaluation: real-set statistics (cached) and a generator against them (image folders: .folders).

Images flow as uint8 (N, 3, H, W) batches produced by a ``sample_fn(batch_size, start_index)``; this one
contract serves a generator (the caller seeds by index), a tensor of real images and a folder of files.
With an Accelerate ``Accelerator`` every process produces its own batches and the features are gathered,
so each process ends with the same statistics and the same numbers.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from smallgan.errors import SmallganError
from smallgan.metrics.features import FeatureExtractor
from smallgan.metrics.names import parse_metrics
from smallgan.metrics.registry import MetricInputs, calc_metric, is_registered
from smallgan.metrics.stats import FeatureStats

SampleFn = Callable[[int, int], torch.Tensor]  # (batch_size, start_index) -> uint8 (B, 3, H, W)
ProgressFn = Callable[[int, int], None]         # (images done, total)

STATS_DIR = "fid_stats"
MAX_KEPT_REAL = 10_000  # raw real features kept for KID / precision-recall (a random subset beyond this)


# ---------------------------------------------------------------------------------------------
# Feature extraction over a sample_fn, split across processes


@dataclass
class Extracted:
    stats: FeatureStats
    logits: torch.Tensor | None  # (n, K) on CPU, when the extractor has logits and they were asked for


@torch.no_grad()
def extract(
    sample_fn: SampleFn,
    n: int,
    extractor: FeatureExtractor,
    *,
    batch_size: int = 64,
    accelerator: Any = None,
    max_kept: int | None = None,
    keep_logits: bool = False,
    progress: ProgressFn | None = None,
    moments: bool = True,
) -> Extracted:
    """Features of images 0..n-1 of ``sample_fn``, identical on every process.

    Each round, process r asks for ``batch_size`` images starting at ``round_start + r * batch_size`` and
    the rounds' features are gathered in rank order, so image i's features land at row i whatever the
    number of processes. The last round may run past n (every process must contribute an equally sized
    batch to the gather); those extra rows are dropped, so ``sample_fn`` must accept any start index.
    ``moments=False`` keeps the raw rows only, without the mean and covariance (O(D^2) per batch).
    """
    if n < 1:
        raise SmallganError(f"need at least one image to evaluate, got n={n}")
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator is not None else (0, 1)
    batch_size = max(1, min(batch_size, math.ceil(n / world)))
    stats = FeatureStats(max_kept=n if max_kept is None else max_kept, moments=moments)
    logits: list[torch.Tensor] = []
    for round_start in range(0, n, batch_size * world):
        images = sample_fn(batch_size, round_start + rank * batch_size)
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[0] != batch_size:
            raise ValueError(f"sample_fn must return uint8 ({batch_size}, 3, H, W), "
                             f"got {images.dtype} {tuple(images.shape)}")
        with torch.autocast(extractor.device.type, enabled=False):  # float32 features under a caller's autocast
            out = extractor(images)
        pool, lg = out["pool"].float().contiguous(), out.get("logits")
        if keep_logits and lg is None:
            raise SmallganError(f"extractor {extractor.name} has no class logits; the Inception Score needs them")
        if world > 1:
            pool = accelerator.gather(pool)
            lg = accelerator.gather(lg.float().contiguous()) if keep_logits else None
        keep = min(len(pool), n - round_start)
        stats.update(pool[:keep])
        if keep_logits:
            logits.append(lg[:keep].float().cpu())
        if progress is not None:
            progress(round_start + keep, n)
    return Extracted(stats, torch.cat(logits) if keep_logits else None)


# ---------------------------------------------------------------------------------------------
# Real images


def _resize_uint8(images: torch.Tensor, resolution: int | None) -> torch.Tensor:
    if resolution is None or images.shape[-2:] == (resolution, resolution):
        return images
    # Antialiased bicubic: close to the Lanczos resize that `smallgan prepare` applies to the training set.
    x = F.interpolate(images.float(), size=(resolution, resolution), mode="bicubic", antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8)


def tensor_sample_fn(images: torch.Tensor, *, resolution: int | None = None, seed: int | None = 0) -> SampleFn:
    """A sample_fn over a uint8 tensor: a fixed seeded permutation (so the kept features are a random
    subset), wrapping around past the end; each batch resized to ``resolution`` when it differs."""
    n = len(images)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)) if seed is not None else torch.arange(n)

    def sample(batch: int, start: int) -> torch.Tensor:
        idx = order[torch.arange(start, start + batch) % n]
        return _resize_uint8(images[idx], resolution)

    return sample


def statistics_of_images(
    images: torch.Tensor,
    extractor: FeatureExtractor,
    *,
    resolution: int | None = None,
    batch_size: int = 64,
    accelerator: Any = None,
    max_kept: int = MAX_KEPT_REAL,
    progress: ProgressFn | None = None,
) -> FeatureStats:
    """Statistics of an in-memory uint8 (N, 3, H, W) image set, resized to ``resolution`` if needed."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected uint8 images (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    sample = tensor_sample_fn(images, resolution=resolution)
    stats = extract(sample, len(images), extractor, batch_size=batch_size, accelerator=accelerator,
                    max_kept=max_kept, progress=progress).stats
    stats.meta.update(extractor=extractor.name, resolution=int(resolution or images.shape[-1]))
    return stats


def dataset_fingerprint(path: Path) -> str:
    """Names, sizes and mtimes of the dataset's files (our own cache folder excluded): a changed or
    re-prepared dataset gets new statistics, an unchanged one is never re-read."""
    from data_tools.walk import folder_fingerprint

    files = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if d != STATS_DIR and not d.startswith("."))
        rel = Path(dirpath).relative_to(path)
        files += [(rel / f).as_posix() for f in sorted(filenames) if not f.startswith(".")]
    return folder_fingerprint(path, files)[:16]


def stats_cache_path(dataset_path: str | Path, extractor: FeatureExtractor, resolution: int) -> Path:
    path = Path(dataset_path)
    return path / STATS_DIR / f"{extractor.name}-{resolution}px-{dataset_fingerprint(path)}.npz"


def _load_images(dataset_path: str | Path, resolution: int) -> torch.Tensor:
    """The dataset at ``resolution`` exactly as training sees it (load_prepared resizes with Lanczos)."""
    from smallgan.data import load_prepared

    return load_prepared(dataset_path, resolution=resolution).images


def real_statistics(
    dataset_path: str | Path,
    extractor: FeatureExtractor,
    *,
    resolution: int,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    cache: bool = True,
    accelerator: Any = None,
    progress: ProgressFn | None = None,
) -> FeatureStats:
    """Statistics of a prepared dataset at ``resolution``, cached in ``<dataset>/fid_stats/``.

    The cache file is keyed by extractor name, resolution and a fingerprint of the dataset's files. It is
    written atomically by the main process only; every process computes the same numbers on a miss.
    """
    if device is not None:
        extractor.to(device)
    path = Path(dataset_path)
    cache_file = stats_cache_path(path, extractor, resolution) if cache and path.is_dir() else None
    if cache_file is not None and cache_file.is_file():
        try:
            stats = FeatureStats.load(cache_file)
        except SmallganError:  # damaged or from an older format: recompute and overwrite it
            stats = None
        if stats is not None and stats.meta.get("extractor") == extractor.name \
                and stats.meta.get("resolution") == resolution:
            return stats
    stats = statistics_of_images(_load_images(path, resolution), extractor, resolution=resolution,
                                 batch_size=batch_size, accelerator=accelerator, progress=progress)
    stats.meta["dataset"] = str(path)
    if cache_file is not None and (accelerator is None or accelerator.is_main_process):
        try:
            stats.save(cache_file)
            # Statistics of an earlier version of the dataset (same extractor and resolution) are stale now.
            for old in cache_file.parent.glob(f"{extractor.name}-{resolution}px-*.npz"):
                if old != cache_file:
                    old.unlink(missing_ok=True)
        except OSError:  # a read-only dataset folder: the statistics are still returned, just not cached
            pass
    return stats


# ---------------------------------------------------------------------------------------------
# Metrics


def compute_metrics(
    real: FeatureStats,
    fake: FeatureStats,
    fake_logits: torch.Tensor | None,
    metrics: Sequence[str],
    **options: Any,
) -> dict[str, float]:
    """The requested metrics from two feature sets (and the fake set's logits for IS), each through its
    registered function (:mod:`.registry`); ``options``: kid_subsets, kid_subset_size, is_splits, pr_k, seed,
    device. The memorisation check reads images, not features: it is not computed here."""
    if real.dim != fake.dim:
        raise SmallganError(f"real statistics have {real.dim} features but the extractor gives {fake.dim}; "
                            "they come from different extractors")
    inputs = MetricInputs(real, fake, fake_logits, **options)
    out: dict[str, float] = {}
    for m in parse_metrics(metrics):
        if is_registered(m):
            out.update(calc_metric(m, inputs))
    out["n_fake"], out["n_real"] = fake.n, real.n
    return out


def evaluate_generator(
    sample_fn: SampleFn,
    n: int,
    real_stats: FeatureStats,
    extractor: FeatureExtractor,
    *,
    metrics: Sequence[str] = ("fid", "kid"),
    batch_size: int = 64,
    accelerator: Any = None,
    progress: ProgressFn | None = None,
    **metric_options: Any,
) -> dict[str, float]:
    """Metrics of ``n`` images from ``sample_fn`` against ``real_stats`` (same result on every process).

    ``metric_options``: kid_subsets, kid_subset_size, is_splits, pr_k, seed (see :func:`compute_metrics`).
    """
    metrics = parse_metrics(metrics)
    fake = extract(sample_fn, n, extractor, batch_size=batch_size, accelerator=accelerator,
                   keep_logits="is" in metrics, progress=progress)
    return compute_metrics(real_stats, fake.stats, fake.logits, metrics, device=extractor.device, **metric_options)
