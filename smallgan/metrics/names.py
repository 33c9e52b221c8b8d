"""The names of the quality metrics and feature extractors, and which way each metric is better.

Dependency-free, so the config can validate ``[eval]`` and the CLI can rank logged results without loading
torch or a feature extractor.
"""

from __future__ import annotations

from collections.abc import Sequence

from smallgan.errors import SmallganError

METRICS = ("fid", "kid", "is", "pr", "memorization")     # what can be asked for (eval.metrics, --metrics)
RESULTS = {"fid": ("fid",), "kid": ("kid",), "is": ("is",), "pr": ("precision", "recall"),
           "memorization": ("memorized",)}   # the values each gives (memorization: metrics/memorization.py)
LOWER_IS_BETTER = frozenset({"fid", "kid"})
HIGHER_IS_BETTER = frozenset({"is", "precision", "recall"})
# inception: comparable to published numbers; pixels: 32-px pixels (memorisation offline); tiny: tests only
EXTRACTORS = ("inception", "pixels", "tiny")


def parse_metrics(spec: str | Sequence[str]) -> tuple[str, ...]:
    """``"fid,kid"`` or ``["fid", "kid"]`` -> validated names, in the given order."""
    names = [m.strip().lower() for m in (spec.split(",") if isinstance(spec, str) else spec) if m.strip()]
    unknown = [m for m in names if m not in METRICS]
    if unknown or not names:
        raise SmallganError(f"unknown metric {', '.join(unknown) or '(none)'}; choose from {','.join(METRICS)}")
    return tuple(dict.fromkeys(names))


def direction(result: str) -> int:
    """-1 when lower is better for this result (fid, kid), +1 when higher is (is, precision, recall)."""
    if result in LOWER_IS_BETTER:
        return -1
    if result in HIGHER_IS_BETTER:
        return 1
    known = ", ".join(sorted(LOWER_IS_BETTER | HIGHER_IS_BETTER))
    raise SmallganError(f"cannot rank checkpoints by {result!r}; use one of {known}")


def metric_of(result: str) -> str:
    """The metric that produces a result: ``precision`` and ``recall`` come from ``pr``."""
    return next((m for m, values in RESULTS.items() if result in values), result)
