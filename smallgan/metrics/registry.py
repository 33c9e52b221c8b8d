"""Metric name -> the function that computes it from two feature sets, as stylegan2-ada's ``metric_main``.

    @register_metric("fid")
    def fid(m: MetricInputs) -> dict[str, float]: ...

Each function takes the real and fake features (and the fake logits, for IS) and returns the values it gives
(:data:`smallgan.metrics.names.RESULTS`). The names users may ask for live in :mod:`.names`, which stays free of
torch so the config can validate them; ``memorization`` is one of them, but it reads images, not features
(:mod:`.memorization`), so it has no entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from smallgan.errors import SmallganError
from smallgan.metrics.fid import fid_from_stats
from smallgan.metrics.inception_score import inception_score
from smallgan.metrics.kid import kernel_inception_distance
from smallgan.metrics.precision_recall import precision_recall
from smallgan.metrics.stats import FeatureStats


@dataclass
class MetricInputs:
    real: FeatureStats
    fake: FeatureStats
    fake_logits: torch.Tensor | None          # (n, K), when the extractor has logits and IS was asked for
    kid_subsets: int = 100                    # KID: subsets drawn ...
    kid_subset_size: int = 1000               # ... of this many features each
    is_splits: int = 10                       # IS: splits of the fake set
    pr_k: int = 3                             # precision/recall: k of the k-NN radii
    seed: int = 0                             # KID and precision/recall subsets
    device: torch.device | str = "cpu"


MetricFn = Callable[[MetricInputs], dict[str, float]]
_METRICS: dict[str, MetricFn] = {}


def register_metric(name: str) -> Callable[[MetricFn], MetricFn]:
    """Register ``fn`` as the metric ``name`` (what eval.metrics and --metrics take)."""

    def register(fn: MetricFn) -> MetricFn:
        if name in _METRICS:
            raise ValueError(f"metric {name!r} is registered twice")
        _METRICS[name] = fn
        return fn

    return register


def is_registered(name: str) -> bool:
    return name in _METRICS


def registered_metrics() -> list[str]:
    return list(_METRICS)


def calc_metric(name: str, inputs: MetricInputs) -> dict[str, float]:
    if name not in _METRICS:
        raise SmallganError(f"no feature metric {name!r}; registered: {', '.join(_METRICS)}")
    return _METRICS[name](inputs)


@register_metric("fid")
def fid(m: MetricInputs) -> dict[str, float]:
    return {"fid": fid_from_stats(m.real, m.fake)}


@register_metric("kid")
def kid(m: MetricInputs) -> dict[str, float]:
    value, std = kernel_inception_distance(m.real.features, m.fake.features, subsets=m.kid_subsets,
                                           subset_size=m.kid_subset_size, seed=m.seed, device=m.device)
    return {"kid": value, "kid_std": std}


@register_metric("is")
def inception_score_metric(m: MetricInputs) -> dict[str, float]:
    if m.fake_logits is None:
        raise SmallganError("the Inception Score needs the extractor's class logits")
    value, std = inception_score(m.fake_logits, splits=m.is_splits)
    return {"is": value, "is_std": std}


@register_metric("pr")
def precision_and_recall(m: MetricInputs) -> dict[str, float]:
    precision, recall = precision_recall(m.real.features, m.fake.features, k=m.pr_k, seed=m.seed, device=m.device)
    return {"precision": precision, "recall": recall}
