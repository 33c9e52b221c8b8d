"""What the benchmarks share: the stamp on every result file (the commit and the command that wrote it), and
a runner that runs configurations in subprocesses within a wall-time budget, appending stamped JSONL rows."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

SRC = Path(__file__).resolve().parents[1]


def commit() -> str:
    """The repository's HEAD commit, with ``-dirty`` when tracked files differ from it; ``unknown`` outside git."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(SRC), *args], capture_output=True, text=True, timeout=30).stdout

    try:
        head = git("rev-parse", "HEAD").strip()
        return (head + ("-dirty" if git("status", "--porcelain", "--untracked-files=no").strip() else "")) \
            if head else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def stamp(module: str, argv: Sequence[str] | None = None) -> dict[str, str]:
    """``{"commit", "command"}`` for a result file written by ``python -m benchmarks.<module> argv``."""
    args = list(sys.argv[1:] if argv is None else argv)
    return {"commit": commit(), "command": shlex.join(["python", "-m", f"benchmarks.{module}", *args])}


def write_json(path: str | Path, result: dict[str, Any], stamp_: dict[str, str]) -> None:
    """A JSON result file, stamped."""
    Path(path).write_text(json.dumps({**stamp_, **result}, indent=2))


def write_markdown(path: str | Path, text: str, stamp_: dict[str, str]) -> None:
    """A Markdown result file whose first line says which commit and command wrote it."""
    Path(path).write_text(f"<!-- commit {stamp_['commit']}; command: {stamp_['command']} -->\n\n{text}")


def run_process(cmd: list[str], timeout: float, cwd: str | Path | None = None) -> tuple[str, str, int | str]:
    """Run ``cmd`` in its own process group, the repository importable (``-m benchmarks.*``); on timeout kill
    the whole group (compile workers included)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p)}
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env,
                         start_new_session=True)
    try:
        stdout, stderr = p.communicate(timeout=timeout)
        return stdout, stderr, p.returncode
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        stdout, stderr = p.communicate()
        return stdout or "", stderr or "", "timeout"


class Runner:
    """Items within a wall-time budget; every row is stamped and appended to a JSONL file as soon as it exists
    (flushed and synced), so a run cut off at its limit still leaves the finished rows."""

    def __init__(self, out: str | Path, log: str | Path | None, budget_s: float, stamp_: dict[str, str],
                 child_module: str = "benchmarks.gpu_children") -> None:
        self.budget_s, self.stamp, self.child_module = budget_s, stamp_, child_module
        self.t_start = time.perf_counter()
        self.out = open(out, "a", buffering=1)
        self.log = open(log, "a", buffering=1) if log else None
        self.rows: list[dict] = []

    def remaining(self) -> float:
        return self.budget_s - (time.perf_counter() - self.t_start)

    def say(self, msg: str) -> None:
        line = f"[{time.perf_counter() - self.t_start:6.1f}s] {msg}"
        print(line, flush=True)
        if self.log:
            self.log.write(line + "\n")

    def write(self, row: dict) -> dict:
        row["t_since_start_s"] = round(time.perf_counter() - self.t_start, 1)
        self.rows.append(row)
        self.out.write(json.dumps({**row, **self.stamp}) + "\n")
        self.out.flush()
        os.fsync(self.out.fileno())
        return row

    def logchild(self, name: str, text: str) -> None:
        if self.log and text:
            self.log.write(f"----- {name} (stdout+stderr, last 20000 chars)\n{text[-20000:]}\n")

    def child(self, name: str, spec: dict, cap: float, min_needed: float = 20,
              post: Callable[[dict], None] | None = None) -> dict | None:
        """Run one configuration in a subprocess (``python -m <child_module> --child SPEC``, which prints one
        ``RESULT {json}`` line); returns its row (also written, after ``post(row)``)."""
        timeout = min(cap, self.remaining())
        if timeout < min_needed:
            self.say(f"skip {name}: {self.remaining():.0f}s of budget left")
            return self.write({"item": spec["item"], "name": name, "ok": False, "skipped": "budget"})
        self.say(f"start {name} (timeout {timeout:.0f}s)")
        t0 = time.perf_counter()
        stdout, stderr, rc = run_process([sys.executable, "-m", self.child_module, "--child", json.dumps(spec)],
                                         timeout)
        wall = round(time.perf_counter() - t0, 1)
        self.logchild(name, stdout + stderr)
        line = next((ln for ln in stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is not None:
            row = {"item": spec["item"], "name": name, **json.loads(line[7:])}
        else:
            tail = [ln for ln in stderr.strip().splitlines() if ln.strip()][-12:]
            row = {"item": spec["item"], "name": name, "ok": False, "rc": rc,
                   "error": "timed out" if rc == "timeout" else "crashed", "stderr_tail": tail}
        row["wall_s"] = wall
        row["spec"] = spec
        if post is not None:
            post(row)
        self.say(f"done {name}: " + brief(row))
        return self.write(row)


def brief(row: dict) -> str:
    if not row.get("ok"):
        return "FAILED " + str(row.get("error") or row.get("skipped")) + (
            "\n    " + "\n    ".join(row.get("stderr_tail", [])) if row.get("stderr_tail") else "")
    if "s_per_iter" in row:
        return f"{row['s_per_iter']:.4f} s/iter, {row['img_s']:.1f} img/s, peak {row.get('peak_mem_mb')} MB"
    return json.dumps({k: v for k, v in row.items() if k not in ("spec",)})[:600]
