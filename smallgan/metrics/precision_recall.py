"""Improved precision and recall (Kynkaanniemi et al. 2019, section 3), and the spread of a set: variety measures.

Each set's manifold is the union of balls around its samples with radius the distance to the k-th nearest
neighbour in the same set (k = 3 in the paper). Precision: the fraction of generated samples inside the
real manifold; recall: the fraction of real samples inside the generated manifold. The paper uses equally
sized sets (the radii shrink as a set grows), so the larger set is subsampled to the smaller one's size.
Small sets (one class of a few hundred images) make one subsample noisy: ``repeats`` averages several draws.

A generator that draws one image per class keeps its precision and loses its recall; :func:`feature_spread`
(square root of the trace of the covariance) says the same in one number that compares with the real set's.
Neither is meaningful alone: the caller reports the real-vs-real figure (held-out reals against the reference
reals, at the same set size) beside the generated one, since recall at k = 3 on a few dozen points is below 1
even for real images.

Features are whatever the caller measures in: the FID extractor's pool features in :mod:`.evaluate` (the paper
uses VGG-16), the quality benchmark's judge features per class in ``benchmarks/quality.py``.
"""

from __future__ import annotations

import numpy as np
import torch

from smallgan.errors import SmallganError

_CHUNK = 1024  # rows of the distance matrix held at once


def _kth_neighbour_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    radii = []
    for start in range(0, len(x), _CHUNK):
        d = torch.cdist(x[start : start + _CHUNK], x)
        radii.append(d.kthvalue(k + 1, dim=1).values)  # the (k+1)-th smallest: the nearest is the point itself
    return torch.cat(radii)


def _fraction_inside(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> float:
    inside = 0
    for start in range(0, len(points), _CHUNK):
        d = torch.cdist(points[start : start + _CHUNK], centres)
        inside += int((d <= radii[None, :]).any(dim=1).sum())
    return inside / len(points)


def _subsample(x: torch.Tensor, n: int, rng: np.random.Generator) -> torch.Tensor:
    if len(x) == n:
        return x
    return x[torch.from_numpy(np.sort(rng.choice(len(x), n, replace=False))).to(x.device)]


def precision_recall(
    real: np.ndarray | torch.Tensor,
    fake: np.ndarray | torch.Tensor,
    *,
    k: int = 3,
    seed: int = 0,
    device: torch.device | str = "cpu",
    size: int | None = None,
    repeats: int = 1,
) -> tuple[float, float]:
    """(precision, recall) of ``fake`` against ``real`` (rows are feature vectors).

    Both sets are subsampled to ``size`` rows (default: the smaller set's size), ``repeats`` times with
    seeded draws; the figures are the means over the draws."""
    x = torch.as_tensor(real).to(device, torch.float32)
    y = torch.as_tensor(fake).to(device, torch.float32)
    n = min(len(x), len(y)) if size is None else size
    if n <= k:
        raise SmallganError(f"precision/recall with k={k} needs more than {k} images in each set")
    if n > min(len(x), len(y)):
        raise SmallganError(f"precision/recall at size {n} needs {n} images in each set, "
                            f"got {len(x)} real and {len(y)} generated")
    if repeats < 1:
        raise SmallganError(f"precision/recall repeats must be >= 1, got {repeats}")
    rng = np.random.default_rng(seed)
    precision = recall = 0.0
    for _ in range(repeats):
        xs, ys = _subsample(x, n, rng), _subsample(y, n, rng)
        precision += _fraction_inside(ys, xs, _kth_neighbour_radii(xs, k))
        recall += _fraction_inside(xs, ys, _kth_neighbour_radii(ys, k))
    return precision / repeats, recall / repeats


def feature_spread(x: np.ndarray | torch.Tensor) -> float:
    """Square root of the trace of the covariance of the rows of ``x`` (float64, unbiased): the root mean
    squared distance of a sample from the set's mean, times sqrt(n / (n - 1)). Zero when every row is equal;
    independent of the set's size in expectation, so a generated class compares with a real one of other size."""
    a = torch.as_tensor(x).to(torch.float64)
    if a.ndim != 2 or len(a) < 2:
        raise SmallganError(f"the spread of a set needs at least 2 feature rows, got shape {tuple(a.shape)}")
    return float(a.var(dim=0, unbiased=True).sum().sqrt())
