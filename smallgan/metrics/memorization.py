"""Memorisation check: are generated images copies of training images?

For n generated images, each one's nearest training image is found in a feature space, and its distance is
set beside the same distance for the real images themselves: each training image's nearest *other*
training image (leave-one-out). A generator that draws new images like the real ones has fakes about as
far from the training set as the reals are from each other; one that copies has fakes much closer. So:

- ``nn_fake_*`` and ``nn_real_*``: the 5th percentile and median of both distributions, and ``nn_ratio``,
  median fake over median real (well below 1: fakes are closer to a training image than reals are to
  each other);
- ``memorized``: the share of fakes closer to a training image than the ``threshold_quantile`` (5%)
  quantile of the reals' leave-one-out distances; a generator of new images gets about that quantile
  (``memorized_expected``), a copier gets up to 1. ``memorization_flagged`` is true when the share
  exceeds the quantile by more than three binomial standard deviations of n draws;
- a grid: the fakes nearest to a training image (the most suspect first), each beside its 3 nearest
  training images.

Feature spaces: the Inception pool features when its weights are at hand, else (offline, no download)
:class:`~smallgan.metrics.features.PixelExtractor`: images area-resized to 32 px, whose distances see
copies and near copies (shifted colours, small noise), not semantic likeness.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from smallgan.errors import SmallganError
from smallgan.metrics.evaluate import ProgressFn, SampleFn, extract, tensor_sample_fn
from smallgan.metrics.features import FeatureExtractor

THRESHOLD_QUANTILE = 0.05
GRID_ROWS = 8
NEIGHBOURS = 3
CHUNK = 1024   # rows of a distance matrix at a time: 10k x 10k pairs never sit in memory at once


def _features(sample_fn: SampleFn, n: int, extractor: FeatureExtractor, **kw: Any) -> torch.Tensor:
    return torch.from_numpy(extract(sample_fn, n, extractor, max_kept=n, moments=False, **kw).stats.features).double()


def nearest(query: torch.Tensor, reference: torch.Tensor, k: int, *,
            exclude_self: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(distances, indices), each (len(query), k): the k nearest rows of `reference` (Euclidean), ascending.
    `exclude_self`: query is reference, and a row is not its own neighbour (leave-one-out)."""
    dists, idx = [], []
    for start in range(0, len(query), CHUNK):
        d = torch.cdist(query[start:start + CHUNK], reference)
        if exclude_self:
            rows = torch.arange(start, start + len(d))
            d[torch.arange(len(d)), rows] = math.inf
        values, indices = d.topk(min(k, reference.shape[0] - exclude_self), dim=1, largest=False)
        dists.append(values)
        idx.append(indices)
    return torch.cat(dists), torch.cat(idx)


def memorization_check(
    sample_fn: SampleFn,
    n: int,
    train_images: torch.Tensor,
    extractor: FeatureExtractor,
    *,
    batch_size: int = 64,
    accelerator: Any = None,
    threshold_quantile: float = THRESHOLD_QUANTILE,
    grid: str | Path | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """The check for images 0..n-1 of `sample_fn` against uint8 `train_images` (N, 3, H, W); the same numbers
    on every process. The grid (when asked for) is written by the main process."""
    if len(train_images) < 2:
        raise SmallganError("the memorisation check needs at least 2 training images (leave-one-out distances)")
    kw = dict(batch_size=batch_size, accelerator=accelerator)
    resolution = int(train_images.shape[-1])
    real = _features(tensor_sample_fn(train_images, resolution=resolution, seed=None), len(train_images),
                     extractor, **kw)
    fake = _features(sample_fn, n, extractor, progress=progress, **kw)
    real_nn = nearest(real, real, 1, exclude_self=True)[0][:, 0]
    fake_d, fake_idx = nearest(fake, real, NEIGHBOURS)
    fake_nn = fake_d[:, 0]
    # Duplicates inside the training set (distance 0) say nothing about the generator: left out of the quantile.
    positive = real_nn[real_nn > 1e-3 * real_nn.median()]
    threshold = torch.quantile(positive if len(positive) else real_nn, threshold_quantile).item()
    share = (fake_nn < threshold).double().mean().item()
    margin = 3 * math.sqrt(threshold_quantile * (1 - threshold_quantile) / n)
    out: dict[str, Any] = {
        "memorized": share, "memorized_expected": threshold_quantile,
        "memorization_flagged": share > threshold_quantile + margin, "memorization_threshold": threshold,
        "nn_fake_p05": torch.quantile(fake_nn, 0.05).item(), "nn_fake_median": fake_nn.median().item(),
        "nn_real_p05": torch.quantile(real_nn, 0.05).item(), "nn_real_median": real_nn.median().item(),
        "memorization_features": extractor.name, "n_fake": n, "n_real": len(train_images),
    }
    out["nn_ratio"] = out["nn_fake_median"] / max(out["nn_real_median"], 1e-30)
    if grid is not None and (accelerator is None or accelerator.is_main_process):
        world = accelerator.num_processes if accelerator is not None else 1
        rows = torch.argsort(fake_nn)[:GRID_ROWS].tolist()
        # extract() asked sample_fn for batches of this size; image i is row i % b of the batch from i - i % b.
        b = max(1, min(batch_size, math.ceil(n / world)))
        cells = []
        for i in rows:
            cells.append(sample_fn(b, i - i % b)[i % b].cpu())
            cells.extend(train_images[j].cpu() for j in fake_idx[i].tolist())
        from smallgan.sampling.images import save_grid

        out["memorization_grid"] = str(save_grid(torch.stack(cells), grid, nrow=1 + fake_idx.shape[1]))
    return out


def summary(results: dict[str, Any]) -> str:
    """One line for the console: the share under the threshold against what new images would get."""
    verdict = "FLAGGED: samples look copied" if results["memorization_flagged"] else "no sign of copying"
    return (f"memorisation ({results['memorization_features']}): {results['memorized']:.1%} of fakes nearer a "
            f"training image than {results['memorized_expected']:.0%} of real images are to another "
            f"(median distance fake/real {results['nn_ratio']:.2f}): {verdict}")

