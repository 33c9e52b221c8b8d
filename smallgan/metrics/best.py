"""The best checkpoint by a chosen metric (BigGAN's "which_best"), so a run that later collapses still
leaves its best model behind."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from smallgan.metrics.names import direction


@dataclass
class BestTracker:
    """Best value seen per metric; ``update`` says whether a value is a new best.

    Lower is better for FID and KID, higher for IS, precision and recall (:func:`~smallgan.metrics.names.direction`).
    A NaN is never a best.
    Saved with the training state (``state_dict`` / ``load_state_dict``) so a resumed run keeps its best.
    """

    best: dict[str, float] = field(default_factory=dict)
    step: dict[str, int] = field(default_factory=dict)

    def update(self, metric_name: str, value: float, step: int | None = None) -> bool:
        sign, value = direction(metric_name), float(value)
        previous = self.best.get(metric_name)
        if math.isnan(value) or (previous is not None and sign * value <= sign * previous):
            return False
        self.best[metric_name] = value
        if step is not None:
            self.step[metric_name] = int(step)
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"best": dict(self.best), "step": dict(self.step)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = {k: float(v) for k, v in state.get("best", {}).items()}
        self.step = {k: int(v) for k, v in state.get("step", {}).items()}
