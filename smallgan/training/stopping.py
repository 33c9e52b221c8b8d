"""When a run stops: after train.max_kimg, after train.max_minutes, or on Ctrl-C / SIGTERM (a
scheduler's notice), each time between two iterations so that the last checkpoint holds all the training."""

from __future__ import annotations

import signal
import time
from typing import Any

import torch

from smallgan.config import TrainConfig


def limit_reached(t: TrainConfig) -> str:
    """Why a run that completed its planned iterations (training/schedule.py) ended."""
    return f"reached train.max_kimg={t.max_kimg:g}"


class Stopping:
    """While entered, the first SIGINT or SIGTERM asks the loop to stop after its iteration (with a checkpoint);
    a second one stops at once (KeyboardInterrupt). `reason` also applies train.max_minutes."""

    def __init__(self, max_minutes: float, accelerator: Any) -> None:
        self.max_minutes, self.accelerator = max_minutes, accelerator
        self.signal: str | None = None
        self._previous: dict[int, Any] = {}
        self._t0 = time.perf_counter()

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.signal is not None:  # second signal: stop now
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name

    def __enter__(self) -> Stopping:
        self._t0 = time.perf_counter()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. a notebook launcher): keep defaults
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def reason(self, check_now: bool) -> str | None:
        """Why to stop now, or None. With several processes only when `check_now` (log intervals): all of them
        must agree, or one would wait forever in the next all-reduce."""
        reason = None
        if self.signal:
            reason = f"stopped by {self.signal}"
        elif self.max_minutes and (time.perf_counter() - self._t0) / 60 >= self.max_minutes:
            reason = f"reached train.max_minutes={self.max_minutes:g}"
        if self.accelerator.num_processes > 1:
            if not check_now:
                return None
            flag = torch.tensor([1.0 if reason else 0.0], device=self.accelerator.device)
            if self.accelerator.reduce(flag, reduction="sum").item() > 0:
                return reason or "stopped by another process"
        return reason
