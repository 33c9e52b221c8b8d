"""Faults in a two-process run (torchrun, gloo on CPU): a process killed while writing a checkpoint, a worker
killed mid-run, SIGTERM to the launcher. Each time the run resumes from the newest complete checkpoint and
both processes hold the same weights. One run goes through the three faults in turn (each launch costs
seconds of start-up on a CPU machine)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from safetensors.torch import load_file

from smallgan import checkpoint as ckpt
from smallgan import runs
from smallgan.exit_codes import ExitCode
from smallgan.training.stats import read_metrics
from tiny import TINY_BASE
from torchrun_retry import run_torchrun

SCRIPT = Path(__file__).parent / "dist_faults.py"
TINY = [*TINY_BASE, "train.batch=8", "train.log_every=1", "train.sv_every=0", "train.ckpt_every=2"]


def _launch(tmp_path, mode, *extra, env=None):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(SCRIPT),
           str(tmp_path), mode, *TINY, *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _steps(run):
    return [int(p.name.split("-")[1]) for p in runs.list_checkpoints(run)]


def _wait(predicate, proc, timeout=240.0):
    t0 = time.time()
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"exited early with {proc.returncode}: {proc.stdout.read()[-3000:]}")
        assert time.time() - t0 < timeout, "timed out"
        time.sleep(0.05)


def _worker(launcher, rank):
    """The worker process of `rank` under a torchrun launcher (its environment says which it is)."""
    for child in psutil.Process(launcher.pid).children(recursive=True):
        try:
            if child.environ().get("RANK") == str(rank):
                return child
        except psutil.Error:
            continue
    raise AssertionError(f"no rank {rank} under the launcher")


def _ranks_agree(tmp_path):
    a, b = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
    # BatchNorm running statistics are each process's own (its batches; sampling recomputes them): the
    # rest, parameters and spectral-norm vectors, must be equal.
    shared = [k for k in a if "running_" not in k and "num_batches_tracked" not in k]
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in shared), "the two processes disagree"
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.slow
def test_two_processes_resume_after_kills_and_stop_once_on_sigterm(tmp_path):
    run = tmp_path / "run"
    # 1. The main process dies (SIGKILL) halfway through writing step 4: torchrun stops the other one.
    proc = _launch(tmp_path, "new", "train.max_steps=6", env={ckpt.KILL_IN_CHECKPOINT_ENV: "4"})
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0, out[-2000:]
    assert _steps(run) == [2] and list((run / "checkpoints").glob(".tmp-step-0000004-*"))

    # 2. Resumed: the half-written step 4 is removed, training goes on from step 2 on both processes; then
    #    one worker is killed mid-run (SIGKILL), and torchrun ends the run.
    proc = _launch(tmp_path, "resume", "train.max_steps=100000")
    _wait(lambda: max(_steps(run)) >= 6, proc)
    _worker(proc, 1).kill()
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "removed 1 incomplete checkpoint write" in out and f"resumed from {run / 'checkpoints'}" in out
    assert "step-0000002 at step 2" in out.replace("\n", "")
    for path in runs.list_checkpoints(run):            # whatever was being written, only whole checkpoints
        ckpt.load_checkpoint(path)
    newest = max(_steps(run))

    # 3. Resumed from the newest; SIGTERM to the launcher: both processes stop after the same step, one
    #    checkpoint is saved there, each exits 143 (TERMINATED).
    logged = len(read_metrics(run / "metrics.jsonl"))   # the killed launch may have logged past `newest`
    proc = _launch(tmp_path, "resume", "train.max_steps=100000")
    _wait(lambda: len(read_metrics(run / "metrics.jsonl")) >= logged + 2, proc)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert f"step-{newest:07d} at step {newest}" in out.replace("\n", "")
    assert out.count("stopped by SIGTERM") == 1, out[-3000:]
    counters = _ranks_agree(tmp_path)
    stopped = counters[0]["step"]
    assert counters[1]["step"] == stopped and stopped > newest + 1
    assert max(_steps(run)) == stopped                  # the stop saved, and saved once: nothing after it
    assert all(c["exit_code"] == ExitCode.TERMINATED for c in counters)
    assert proc.returncode != 0                         # torchrun's own code after a SIGTERM: 1 (torch 2.14)


@pytest.mark.slow
def test_two_processes_roll_back_together(tmp_path):
    """Iterations 5 and 6 of the first try are NaN on both processes: both roll back to step 4, retry with the
    same new seeds and learning rates, and finish with the same weights; one rollback event is logged."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(SCRIPT),
           str(tmp_path), "diverge", *TINY, "train.ckpt_every=4", "train.max_bad_steps=2", "train.max_steps=7"]
    r = run_torchrun(cmd, {**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    counters = _ranks_agree(tmp_path)
    assert [(c["step"], c["rollbacks"]) for c in counters] == [(7, 1), (7, 1)]
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [(e["step"], e["from_step"]) for e in records if e.get("event") == "rollback"] == [(4, 6)]
    assert [e["step"] for e in records if "event" not in e] == list(range(1, 8))
