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


def _duration(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}"


# The terminal's log line: (record key, format), each shown when the log record has the key, in this order.
# A new logged value appears in the line by one entry here.
LOG_FIELDS: tuple[tuple[str, Any], ...] = (
    ("kimg", "kimg {:.2f}"), ("d_loss", "d {:.3f}"), ("g_loss", "g {:.3f}"), ("d_recon", "recon {:.3f}"),
    ("r_t", "r_t {:.2f}"), ("augment_p", "p {:.2f}"), ("img_s", "{:.1f} img/s"), ("sec_kimg", "{:.1f} s/kimg"),
    ("peak_mem_mb", "mem {:.0f} MB"), ("eta_s", lambda v: f"eta {_duration(v)}"),
)


def log_line(record: dict[str, Any], total_steps: int) -> str:
    """One log interval as a line: ``step 120/1000 kimg 15.36 d 1.234 g 0.567 ...`` (see LOG_FIELDS)."""
    parts = [f"step {record['step']}/{total_steps}"]
    for key, fmt in LOG_FIELDS:
        value = record.get(key)
        if isinstance(value, (int, float)):
            parts.append(fmt(value) if callable(fmt) else fmt.format(value))
    return " ".join(parts)


class ProgressLine:
    """On a terminal: each log line printed above a live progress bar (the history stays on screen); elsewhere
    (CI logs, files, notebooks) the plain log lines only."""

    def __init__(self, console: Console, total: int, start: int, enabled: bool) -> None:
        self.console, self.enabled = console, enabled
        self.fancy = enabled and console.is_terminal
        self._progress: Progress | None = None
        if self.fancy:
            self._progress = Progress(
                TextColumn("[bold]step {task.completed}/{task.total}"), BarColumn(), TimeElapsedColumn(),
                TextColumn("eta"), TimeRemainingColumn(), console=console,
            )
            self._task = self._progress.add_task("train", total=total, completed=start)
            self._progress.start()

    def update(self, step: int, line: str, log_line: bool) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=step)
        if self.enabled and log_line:
            self.console.print(line, highlight=False)   # above the bar while it is live

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
