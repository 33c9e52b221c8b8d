"""Evaluate a run: a trained generator's metrics against its real image set.

The one path behind ``train.eval_every`` (:mod:`smallgan.training.evaluation`) and ``smallgan eval --run``
(:mod:`smallgan.cli.eval`): the real set's statistics are computed once (cached beside a prepared dataset),
then each evaluation draws the same latents, so successive numbers differ only by the generator.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from smallgan.metrics.evaluate import ProgressFn, SampleFn, evaluate_generator
from smallgan.metrics.features import FeatureExtractor
from smallgan.metrics.folders import load_real_images, real_set_statistics
from smallgan.metrics.stats import FeatureStats
from smallgan.sampling.generator import TrainedGenerator

LATENT_SEED_STRIDE = 1_000_003   # batches of one seed never share latents with another seed's batches


def generator_sample_fn(G: TrainedGenerator, *, seed: int = 0, trunc: float = 0.0) -> SampleFn:
    """A ``sample_fn`` for :func:`~smallgan.metrics.evaluate.extract`: images start..start+batch-1 of G.

    z ~ N(0, I) (truncated at ``trunc`` when > 0) and uniformly drawn classes, from a generator seeded with
    (seed, start), so the images do not depend on how many processes share the work.
    """

    def sample(batch: int, start: int) -> torch.Tensor:
        z, y = G.random_inputs(batch, trunc, seed=seed * LATENT_SEED_STRIDE + start)
        return G.generate(z, y, batch_size=batch)

    return sample


class RunEvaluator:
    """Metrics of trained generators against one real set (a prepared dataset or an image folder)."""

    def __init__(self, real: str | Path, extractor: FeatureExtractor, *, resolution: int, batch_size: int = 64,
                 accelerator: Any = None, cache: bool = True) -> None:
        self.real, self.extractor, self.resolution = real, extractor, resolution
        self.batch_size, self.accelerator, self.cache = batch_size, accelerator, cache
        self._real_stats: FeatureStats | None = None
        self._real_images: torch.Tensor | None = None

    def real_statistics(self, progress: ProgressFn | None = None) -> FeatureStats:
        """The real set's feature statistics, computed on the first call. Every process must call it: the
        features are gathered across processes."""
        if self._real_stats is None:
            self._real_stats = real_set_statistics(
                self.real, self.extractor, resolution=self.resolution, batch_size=self.batch_size,
                accelerator=self.accelerator, cache=self.cache, progress=progress)
        return self._real_stats

    def real_images(self) -> torch.Tensor:
        """The real set itself, uint8 at the evaluation resolution (the memorisation check's neighbours)."""
        if self._real_images is None:
            self._real_images = load_real_images(self.real, self.resolution)
        return self._real_images

    def evaluate(self, G: TrainedGenerator, *, n: int, metrics: Sequence[str], trunc: float = 0.0, seed: int = 0,
                 metric_seed: int = 0, progress: ProgressFn | None = None,
                 grid: str | Path | None = None) -> dict[str, Any]:
        """`metrics` of n images of G (latents from `seed`; KID and precision/recall subsets from
        `metric_seed`), the same on every process. Every process must call it. `grid`: where the
        memorisation check writes its nearest-neighbour grid."""
        sample_fn = generator_sample_fn(G, seed=seed, trunc=trunc)
        standard = [m for m in metrics if m != "memorization"]
        out: dict[str, Any] = {}
        if standard:
            out = evaluate_generator(sample_fn, n, self.real_statistics(), self.extractor, metrics=standard,
                                     batch_size=self.batch_size, accelerator=self.accelerator, progress=progress,
                                     seed=metric_seed)
        if "memorization" in metrics:
            from smallgan.metrics.memorization import memorization_check

            out.update({**memorization_check(sample_fn, n, self.real_images(), self.extractor,
                                             batch_size=self.batch_size, accelerator=self.accelerator,
                                             grid=grid, progress=None if standard else progress), **out})
        return out
