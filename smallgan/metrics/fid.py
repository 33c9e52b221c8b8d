"""Frechet Inception Distance (Heusel et al. 2017) between two Gaussian fits of feature sets.

FID = ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)).

The trace of the matrix square root is taken through the symmetric form
Tr((S_1 S_2)^(1/2)) = Tr((S_1^(1/2) S_2 S_1^(1/2))^(1/2)) (the two matrices are similar), whose
eigenvalues are real and non-negative: two symmetric eigendecompositions in float64 instead of a general
(Schur) ``scipy.linalg.sqrtm``. It gives the same number (tests compare with sqrtm) and stays finite for
the rank-deficient covariances of few-shot sets (fewer images than feature dimensions), where sqrtm of the
product can return NaN or a complex result.
"""

from __future__ import annotations

import numpy as np

from smallgan.metrics.stats import FeatureStats


def _psd_sqrt(mat: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh(mat)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape:
        raise ValueError(f"feature sizes differ: {mu1.shape} vs {mu2.shape}")
    # Symmetrise: accumulated covariances are symmetric only up to rounding.
    cov1, cov2 = (cov1 + cov1.T) / 2, (cov2 + cov2.T) / 2
    root1 = _psd_sqrt(cov1)
    inner = root1 @ cov2 @ root1
    eig = np.linalg.eigvalsh((inner + inner.T) / 2)
    tr_covmean = np.sqrt(np.clip(eig, 0.0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * tr_covmean)


def fid_from_stats(a: FeatureStats, b: FeatureStats) -> float:
    return frechet_distance(a.mean, a.cov, b.mean, b.cov)
