"""Streaming feature statistics: mean and covariance in float64, plus a kept sample of raw features.

FID needs only the mean and covariance of a feature set, which can be accumulated batch by batch for
datasets of any size. KID and precision/recall need raw features; a set keeps up to ``max_kept`` of them
(the first ones seen: callers feed real images in a seeded random order and generated images are i.i.d.,
so the kept rows are a random subset).

Batches are merged with the pairwise update of Chan, Golub & LeVeque (1979): each batch's centred scatter
matrix is added with a correction for the difference of means, which avoids the cancellation of the
naive ``sum(x x^T) - n mu mu^T`` formula.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from smallgan.errors import SmallganError
from smallgan.io import atomic_write

STATS_FORMAT = 1  # bump when the .npz layout changes; older files are then recomputed


@dataclass
class FeatureStats:
    """Running statistics of a feature set. ``update`` with (B, D) batches; read ``mean`` / ``cov``."""

    max_kept: int = 10_000
    n: int = 0
    _mean: torch.Tensor | None = None   # (D,) float64
    _scatter: torch.Tensor | None = None  # (D, D) float64: sum of (x - mean)(x - mean)^T
    _kept: list[torch.Tensor] = field(default_factory=list)
    _n_kept: int = 0
    meta: dict = field(default_factory=dict)  # extractor name, resolution, source: saved with the file
    moments: bool = True                      # False: keep raw features only (no O(D^2) scatter per batch)

    @torch.no_grad()
    def update(self, features: torch.Tensor) -> None:
        if features.ndim != 2:
            raise ValueError(f"features must be (B, D), got {tuple(features.shape)}")
        if features.shape[0] == 0:
            return
        if not self.moments:
            self.n += features.shape[0]
            self._keep(features)
            return
        x = features.detach().to(torch.float64)
        n_b = x.shape[0]
        mean_b = x.mean(dim=0)
        centred = x - mean_b
        scatter_b = centred.T @ centred
        if self._mean is None:
            self._mean, self._scatter, self.n = mean_b, scatter_b, n_b
        else:
            if x.shape[1] != self._mean.shape[0]:
                raise ValueError(f"feature size changed from {self._mean.shape[0]} to {x.shape[1]}")
            mean_b, scatter_b = mean_b.to(self._mean.device), scatter_b.to(self._mean.device)
            n_a, n = self.n, self.n + n_b
            delta = mean_b - self._mean
            self._mean = self._mean + delta * (n_b / n)
            self._scatter = self._scatter + scatter_b + torch.outer(delta, delta) * (n_a * n_b / n)
            self.n = n
        self._keep(features)

    def _keep(self, features: torch.Tensor) -> None:
        if self._n_kept < self.max_kept:
            take = features[: self.max_kept - self._n_kept].detach().to("cpu", torch.float32)
            self._kept.append(take)
            self._n_kept += take.shape[0]

    @property
    def dim(self) -> int:
        return 0 if self._mean is None else int(self._mean.shape[0])

    @property
    def mean(self) -> np.ndarray:
        self._require(1)
        return self._mean.cpu().numpy()

    @property
    def cov(self) -> np.ndarray:
        """Unbiased covariance (ddof=1), as ``np.cov(features, rowvar=False)``."""
        self._require(2)
        return (self._scatter / (self.n - 1)).cpu().numpy()

    @property
    def features(self) -> np.ndarray:
        """The kept raw features (at most ``max_kept`` rows), float32."""
        self._require(1)
        return torch.cat(self._kept).numpy()

    def _require(self, n: int) -> None:
        if self.n < n:
            raise SmallganError(f"feature statistics need at least {n} images, got {self.n}")

    # -- persistence ---------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write an .npz atomically (temp file in the same folder, then rename)."""
        meta = dict(self.meta, format=STATS_FORMAT, n=self.n)

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a temporary name
                np.savez(f, mean=self._mean.cpu().numpy(), scatter=self._scatter.cpu().numpy(),
                         features=self.features, meta=np.array(json.dumps(meta, sort_keys=True)))

        atomic_write(Path(path), write)

    @classmethod
    def load(cls, path: str | Path) -> FeatureStats:
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                if meta.get("format") != STATS_FORMAT:
                    raise SmallganError(f"{path} has an old statistics format; delete it to recompute")
                feats = torch.from_numpy(z["features"].astype(np.float32))
                stats = cls(
                    max_kept=max(len(feats), 1),
                    n=int(meta["n"]),
                    _mean=torch.from_numpy(z["mean"].astype(np.float64)),
                    _scatter=torch.from_numpy(z["scatter"].astype(np.float64)),
                    _kept=[feats],
                    _n_kept=len(feats),
                    meta=meta,
                )
        except (OSError, ValueError, KeyError) as e:
            raise SmallganError(f"cannot read feature statistics {path} ({e}); delete it to recompute") from None
        return stats
