"""Variety measures (smallgan/metrics/precision_recall.py): recall and spread flag a collapsed generator, and a
second real sample of the same distribution calibrates near the real set's own figures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from smallgan.errors import SmallganError
from smallgan.metrics.precision_recall import feature_spread, precision_recall


def test_spread_is_root_trace_of_covariance_and_size_free():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 7)) * np.arange(1, 8)
    assert feature_spread(x) == pytest.approx(float(np.sqrt(np.trace(np.cov(x, rowvar=False)))), rel=1e-12)
    assert feature_spread(torch.as_tensor(x)) == pytest.approx(feature_spread(x), rel=1e-12)
    assert feature_spread(np.ones((10, 3))) == 0.0
    big, small = rng.normal(size=(4000, 16)), rng.normal(size=(40, 16))
    assert feature_spread(small) == pytest.approx(feature_spread(big), rel=0.15)   # 4.0 either way
    with pytest.raises(SmallganError, match="at least 2"):
        feature_spread(x[:1])


def test_a_collapsed_generator_is_flagged_and_real_vs_real_calibrates_near_one():
    """The benchmark's situation: a class of ~130 reference reals, ~45 held-out reals, generated samples."""
    rng = np.random.default_rng(1)
    dims = 32
    scale = rng.uniform(0.5, 2.0, dims)
    reference, held_out = rng.normal(size=(135, dims)) * scale, rng.normal(size=(45, dims)) * scale
    varied = rng.normal(size=(100, dims)) * scale
    # Mode collapse as a GAN shows it: every sample near one image, a little noise around it.
    collapsed = reference[3] + 0.15 * rng.normal(size=(100, dims)) * scale

    def figures(candidate):
        _, recall = precision_recall(reference, candidate, size=45, repeats=8, seed=2)
        return recall, feature_spread(candidate) / feature_spread(reference)

    real_recall, real_spread = figures(held_out)
    varied_recall, varied_spread = figures(varied)
    collapsed_recall, collapsed_spread = figures(collapsed)
    assert real_recall > 0.5 and 0.8 < real_spread < 1.2
    assert varied_recall > 0.75 * real_recall and 0.8 < varied_spread < 1.2
    # The benchmark's flag: under half of the real-vs-real figure.
    assert collapsed_recall < 0.5 * real_recall and collapsed_spread < 0.5 * real_spread


def test_repeats_average_subsamples_and_sizes_are_checked():
    rng = np.random.default_rng(3)
    real, fake = rng.normal(size=(200, 4)), rng.normal(size=(60, 4))
    one = precision_recall(real, fake, size=30, repeats=1, seed=5)
    many = precision_recall(real, fake, size=30, repeats=20, seed=5)
    assert one != many and all(0.0 <= v <= 1.0 for v in many)
    # The default keeps the original behaviour: the larger set is subsampled to the smaller one's size once.
    assert precision_recall(real, fake, seed=5) == precision_recall(real, fake, seed=5, size=60, repeats=1)
    assert precision_recall(fake, fake, repeats=3) == (1.0, 1.0)   # at full size every draw is the whole set
    with pytest.raises(SmallganError, match="needs 100 images"):
        precision_recall(real, fake, size=100)
    with pytest.raises(SmallganError, match="more than 3"):
        precision_recall(real[:3], fake)
    with pytest.raises(SmallganError, match="repeats"):
        precision_recall(real, fake, repeats=0)
