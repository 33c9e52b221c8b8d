"""Variety per class for benchmarks/quality.py: is each class drawn in many ways, or as one image?

Two figures per class, each beside its real-vs-real calibration (the held-out real images of the class
against the judge's training images of the class, at the same set sizes):

- recall (Kynkaanniemi et al. 2019, k = 3) in the judge's 128-d features: the share of the class's real
  images that fall inside the manifold of its generated samples. Both sets are subsampled to the held-out
  count of the class and the figure is averaged over ``REPEATS`` draws (a class has a few dozen held-out images).
- spread ratio: sqrt(trace(cov)) of the class's generated samples over that of its real images, measured on
  the pixels projected on the principal components that hold ``PCA_VARIANCE`` of the real images' variance
  (fitted once on the judge's training images, all classes). Pixels rather than the judge's features because
  a classifier's features are trained to ignore what varies inside a class (stroke width, slant, size,
  colour), which is exactly the variety asked about; the truncation to the leading components keeps
  pixel noise that no real image has from passing as variety. This is the issue's measure (#24), so its
  figures compare.

A class is flagged when either figure is under half of its calibration figure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from smallgan.data import to_float
from smallgan.metrics.precision_recall import feature_spread, precision_recall

K = 3                 # the paper's k
REPEATS = 10          # subsample draws averaged per recall figure
PCA_VARIANCE = 0.90   # share of the real images' pixel variance the spread is measured in
FLAG_SHARE = 0.5      # a class under this share of its real-vs-real figure is flagged


def pixels(images: torch.Tensor) -> np.ndarray:
    """uint8 (N, 3, R, R) -> float64 (N, 3 R R) in [-1, 1]."""
    return to_float(images.clone()).flatten(1).double().numpy()


@dataclass
class PCA:
    mean: np.ndarray
    basis: np.ndarray     # (pixels, components), orthonormal columns

    @classmethod
    def fit(cls, x: np.ndarray, variance: float = PCA_VARIANCE) -> PCA:
        mean = x.mean(0)
        _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
        share = np.cumsum(s ** 2) / np.sum(s ** 2)
        m = int(np.searchsorted(share, variance) + 1)
        return cls(mean, vt[:m].T)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) @ self.basis


@dataclass
class VarietyReference:
    pca: PCA
    real_features: list[np.ndarray]   # judge features of each class's reference (judge training) images
    real_spread: list[float]          # their spread in the PCA space
    size: list[int]                   # recall set size per class (held-out count, at most the samples per class)
    calibration: dict                 # held-out reals scored as a generator: per-class recall and spread


def class_figures(ref: VarietyReference, c: int, features: np.ndarray, images: torch.Tensor,
                  seed: int = 0) -> tuple[float, float]:
    """(recall, spread ratio) of samples of class c (their judge features and uint8 images)."""
    _, recall = precision_recall(ref.real_features[c], features, k=K, size=ref.size[c], repeats=REPEATS,
                                 seed=seed + c)
    return recall, feature_spread(ref.pca(pixels(images))) / ref.real_spread[c]


def build_variety(train: tuple[torch.Tensor, torch.Tensor, np.ndarray], test: tuple[torch.Tensor, torch.Tensor, np.ndarray],
                  n_classes: int, per_class: int, seed: int = 0) -> VarietyReference:
    """From the judge's training and held-out splits, each (uint8 images, labels, judge features)."""
    (x_train, y_train, f_train), (x_test, y_test, f_test) = train, test
    pca = PCA.fit(pixels(x_train))
    real_features, real_spread, size = [], [], []
    for c in range(n_classes):
        mine = y_train == c
        real_features.append(f_train[mine.numpy()])
        real_spread.append(feature_spread(pca(pixels(x_train[mine]))))
        size.append(min(int((y_test == c).sum()), per_class, len(real_features[c])))
    ref = VarietyReference(pca, real_features, real_spread, size, {})
    figures = [class_figures(ref, c, f_test[(y_test == c).numpy()], x_test[y_test == c], seed)
               for c in range(n_classes)]
    ref.calibration = summary([f[0] for f in figures], [f[1] for f in figures])
    ref.calibration["pca_components"] = pca.basis.shape[1]
    return ref


def summary(recall: list[float], spread: list[float], calibration: dict | None = None) -> dict:
    """Per-class figures, their worst and mean, and (against a calibration) the classes flagged."""
    out = {"per_class_recall": [round(r, 3) for r in recall], "per_class_spread": [round(s, 3) for s in spread],
           "recall_min": round(min(recall), 3), "recall_mean": round(float(np.mean(recall)), 3),
           "spread_min": round(min(spread), 3), "spread_mean": round(float(np.mean(spread)), 3)}
    if calibration is not None:
        for name, values in (("recall", recall), ("spread", spread)):
            real = calibration[f"per_class_{name}"]
            out[f"low_{name}"] = [c for c, v in enumerate(values) if v < FLAG_SHARE * real[c]]
        out["low_variety"] = sorted({*out["low_recall"], *out["low_spread"]})
    return out


def format_classes(row: dict) -> str:
    """Two indented lines: the per-class recall and spread ratio of a scored row, a flagged figure marked *."""
    lines = []
    for name in ("recall", "spread"):
        low = set(row.get(f"low_{name}", []))
        lines.append(f"{'':>7} {name:<7}" + " ".join(f"{v:.2f}" + ("*" if c in low else " ")
                                                     for c, v in enumerate(row[f"per_class_{name}"])))
    return "\n".join(lines)
