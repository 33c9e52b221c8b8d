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

from smallgan.metrics.evaluate import ProgressFn, SampleFn, evaluate_generator, real_set_statistics
from smallgan.metrics.features import FeatureExtractor
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

    def real_statistics(self, progress: ProgressFn | None = None) -> FeatureStats:
        """The real set's feature statistics, computed on the first call. Every process must call it: the
        features are gathered across processes."""
        if self._real_stats is None:
            self._real_stats = real_set_statistics(
                self.real, self.extractor, resolution=self.resolution, batch_size=self.batch_size,
                accelerator=self.accelerator, cache=self.cache, progress=progress)
        return self._real_stats

    def evaluate(self, G: TrainedGenerator, *, n: int, metrics: Sequence[str], trunc: float = 0.0, seed: int = 0,
                 metric_seed: int = 0, progress: ProgressFn | None = None) -> dict[str, float]:
        """`metrics` of n images of G (latents from `seed`; KID and precision/recall subsets from
        `metric_seed`), the same on every process. Every process must call it."""
        return evaluate_generator(generator_sample_fn(G, seed=seed, trunc=trunc), n, self.real_statistics(),
                                  self.extractor, metrics=metrics, batch_size=self.batch_size,
                                  accelerator=self.accelerator, progress=progress, seed=metric_seed)
