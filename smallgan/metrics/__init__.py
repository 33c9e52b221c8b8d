"""Quality metrics: FID, KID, Inception Score and precision/recall on streamed features.

Features come from :func:`inception_v3` (torch-fidelity's TF-ported Inception, the network behind published
FID tables) or, in tests and benchmarks, :class:`TinyExtractor`; the maths (float64, see each module) is the
same for both. :func:`real_statistics` caches a dataset's statistics beside it; :func:`evaluate_generator`
and :func:`evaluate_folders` produce ``{"fid", "kid", "kid_std", "is", "is_std", "precision", "recall",
"n_fake", "n_real"}`` (the metrics asked for); :class:`BestTracker` picks the best checkpoint.

:mod:`.registry` maps each metric name to its function (``@register_metric``, as stylegan2-ada's
``metric_main``); :mod:`.folders` evaluates folders of images; :mod:`.names` holds the metric names and which
way each is better (no dependencies: the config validates with it); :mod:`.request` is what `smallgan eval`
asks for; :mod:`.run` evaluates a run's trained generator, for ``train.eval_every`` and ``smallgan eval`` alike.
"""

from smallgan.metrics.best import BestTracker
from smallgan.metrics.evaluate import (
    compute_metrics,
    evaluate_generator,
    extract,
    real_statistics,
    statistics_of_images,
    tensor_sample_fn,
)
from smallgan.metrics.features import FeatureExtractor, InceptionV3, TinyExtractor, inception_v3
from smallgan.metrics.folders import evaluate_folders, real_set_statistics
from smallgan.metrics.fid import frechet_distance
from smallgan.metrics.inception_score import inception_score
from smallgan.metrics.kid import kernel_inception_distance
from smallgan.metrics.names import METRICS, direction, parse_metrics
from smallgan.metrics.precision_recall import precision_recall
from smallgan.metrics.registry import MetricInputs, register_metric, registered_metrics
from smallgan.metrics.stats import FeatureStats

__all__ = [
    "METRICS", "BestTracker", "MetricInputs", "FeatureExtractor", "FeatureStats", "InceptionV3", "TinyExtractor",
    "compute_metrics", "direction", "evaluate_folders", "evaluate_generator", "extract", "frechet_distance",
    "inception_score", "inception_v3", "kernel_inception_distance", "parse_metrics", "precision_recall",
    "real_set_statistics", "real_statistics", "register_metric", "registered_metrics", "statistics_of_images",
    "tensor_sample_fn",
]
