"""Image folders as metric inputs: a folder of generated images against a real set (a prepared dataset or
another folder), read as they are (center-cropped to the evaluation resolution; never cached: we do not write
into a user's folder). `smallgan eval --real DIR --fake DIR` runs :func:`evaluate_folders`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smallgan.errors import SmallganError
from smallgan.metrics.evaluate import (
    MAX_KEPT_REAL, ProgressFn, SampleFn, evaluate_generator, extract, real_statistics,
)
from smallgan.metrics.features import FeatureExtractor
from smallgan.metrics.stats import FeatureStats


def list_images(folder: str | Path) -> list[Path]:
    from data_tools.walk import walk_images

    folder = Path(folder)
    if not folder.is_dir():
        raise SmallganError(f"{folder} is not a folder of images")
    return [folder / f for f in walk_images(folder).files]


def folder_sample_fn(files: Sequence[Path], resolution: int) -> SampleFn:
    """A sample_fn reading image files in order (wrapping past the end), center-cropped to ``resolution``."""
    from data_tools.images import SkipImage, decode, square

    def load(path: Path) -> torch.Tensor:
        try:
            with open(path, "rb") as fp:
                im, _ = decode(fp)
        except (SkipImage, OSError) as e:
            raise SmallganError(f"cannot read image {path}: {e}") from None
        arr = np.asarray(square(im, resolution), dtype=np.uint8)
        return torch.from_numpy(arr.copy()).permute(2, 0, 1)

    def sample(batch: int, start: int) -> torch.Tensor:
        return torch.stack([load(files[i % len(files)]) for i in range(start, start + batch)])

    return sample


def image_size(path: Path) -> int:
    from PIL import Image

    with Image.open(path) as im:
        return min(im.size)


def is_prepared(path: str | Path) -> bool:
    """True for a folder written by ``smallgan prepare`` (it holds smallgan.json)."""
    from data_tools.prepare import read_meta

    return Path(path).is_dir() and read_meta(Path(path)) is not None


def real_set_statistics(
    real: str | Path,
    extractor: FeatureExtractor,
    *,
    resolution: int,
    batch_size: int = 64,
    accelerator: Any = None,
    cache: bool = True,
    progress: ProgressFn | None = None,
) -> FeatureStats:
    """A prepared dataset through :func:`real_statistics` (cached), or a plain image folder read as it is
    (center-cropped to ``resolution``; never cached: we do not write into a user's folder)."""
    if is_prepared(real):
        return real_statistics(real, extractor, resolution=resolution, batch_size=batch_size, cache=cache,
                               accelerator=accelerator, progress=progress)
    files = list_images(real)
    if not files:
        raise SmallganError(f"{real} holds no images and is not a prepared dataset")
    stats = extract(folder_sample_fn(files, resolution), len(files), extractor, batch_size=batch_size,
                    accelerator=accelerator, max_kept=MAX_KEPT_REAL, progress=progress).stats
    stats.meta.update(extractor=extractor.name, resolution=resolution, dataset=str(real))
    return stats


def evaluate_folders(
    real: str | Path,
    fake: str | Path,
    extractor: FeatureExtractor,
    metrics: Sequence[str] = ("fid", "kid"),
    *,
    resolution: int | None = None,
    batch_size: int = 64,
    accelerator: Any = None,
    cache: bool = True,
    progress: ProgressFn | None = None,
    **metric_options: Any,
) -> dict[str, float]:
    """Metrics between ``real`` (a prepared dataset or an image folder) and ``fake`` (an image folder),
    both at ``resolution`` (default: the first fake image's size)."""
    fake_files = list_images(fake)
    if not fake_files:
        raise SmallganError(f"{fake} holds no images")
    resolution = resolution or image_size(fake_files[0])
    real_stats = real_set_statistics(real, extractor, resolution=resolution, batch_size=batch_size,
                                     accelerator=accelerator, cache=cache)
    return evaluate_generator(folder_sample_fn(fake_files, resolution), len(fake_files), real_stats, extractor,
                              metrics=metrics, batch_size=batch_size, accelerator=accelerator, progress=progress,
                              **metric_options)


def evaluate_folders_with_memorization(real: str | Path, fake: str | Path, extractor: FeatureExtractor,
                                       metrics: Sequence[str], *, grid: Path, **options: Any) -> dict[str, Any]:
    """:func:`evaluate_folders`, plus the memorisation check of the fake images against the real set's images
    when ``metrics`` asks for it (its grid of suspects written to ``grid``)."""
    standard = tuple(m for m in metrics if m != "memorization")
    results: dict[str, Any] = evaluate_folders(real, fake, extractor, standard, **options) if standard else {}
    if "memorization" in metrics:
        from smallgan.metrics.memorization import memorization_check

        files = list_images(fake)
        if not files:
            raise SmallganError(f"{fake} holds no images")
        resolution = image_size(files[0])
        memo = memorization_check(folder_sample_fn(files, resolution), len(files), load_real_images(real, resolution),
                                  extractor, batch_size=options["batch_size"], accelerator=options["accelerator"],
                                  grid=grid, progress=options["progress"])
        results = {**memo, **results}
    return results


def load_real_images(real: str | Path, resolution: int) -> torch.Tensor:
    """uint8 (N, 3, H, W) of a prepared dataset, or of a plain image folder center-cropped as for the metrics."""
    from smallgan.data import load_prepared

    if is_prepared(real):
        return load_prepared(real, resolution=resolution).images
    files = list_images(real)
    return folder_sample_fn(files, resolution)(len(files), 0)
