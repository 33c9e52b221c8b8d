"""What a run reports: the console progress line and ``metrics.jsonl`` (one JSON object per line)."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from smallgan.io import atomic_write_text


class MetricsLog:
    """Appends one line per record and flushes it, so the file stays valid JSONL after a kill."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        clean = {k: (v if not isinstance(v, float) or math.isfinite(v) else str(v)) for k, v in record.items()}
        self._file.write(json.dumps(clean, sort_keys=True) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def rewind(self, step: int) -> list[dict[str, Any]]:
        """Drop the records after `step` (a rollback abandoned them): rewritten atomically, so the file never
        holds a step twice or out of order for the user's plots. Returns the dropped records."""
        self._file.close()
        records = read_metrics(self.path)
        kept = [r for r in records if not isinstance(r.get("step"), int) or r["step"] <= step]
        dropped = [r for r in records if isinstance(r.get("step"), int) and r["step"] > step]
        atomic_write_text(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
        self._file = open(self.path, "a", encoding="utf-8")
        return dropped


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All complete records of a metrics.jsonl (a line cut by a kill is ignored)."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class ProgressLine:
    """Progress bar on a terminal; a plain log line per interval elsewhere (CI logs, notebooks)."""

    def __init__(self, console: Console, total: int, start: int, enabled: bool) -> None:
        self.console, self.enabled = console, enabled
        self.fancy = enabled and console.is_terminal
        self._progress: Progress | None = None
        if self.fancy:
            self._progress = Progress(
                TextColumn("[bold]step {task.completed}/{task.total}"),
                BarColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=console,
            )
            self._task = self._progress.add_task("train", total=total, completed=start, info="")
            self._progress.start()

    def update(self, step: int, info: str, log_line: bool) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=step, info=info)
        elif self.enabled and log_line:
            self.console.print(f"step {step} {info}", highlight=False)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


class SpikeDetector:
    """Warns when a layer's top singular value jumps: BigGAN sec. 4.1 observes sigma_0 exploding at collapse."""

    def __init__(self, ratio: float = 2.0, smoothing: float = 0.9) -> None:
        self.ratio, self.smoothing = ratio, smoothing
        self.average: dict[str, float] = {}

    def update(self, values: dict[str, float]) -> list[str]:
        spikes = []
        for name, v in values.items():
            avg = self.average.get(name)
            if avg is not None and math.isfinite(v) and v > self.ratio * avg:
                spikes.append(name)
            self.average[name] = v if avg is None else self.smoothing * avg + (1 - self.smoothing) * v
        return spikes


class Throughput:
    def __init__(self) -> None:
        self.t0, self.images = time.perf_counter(), 0

    def add(self, images: int) -> None:
        self.images += images

    def rate(self) -> float:
        dt = time.perf_counter() - self.t0
        r = self.images / dt if dt > 0 else 0.0
        self.t0, self.images = time.perf_counter(), 0
        return r
