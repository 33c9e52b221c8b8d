"""Launching two CPU processes with torchrun from the tests."""

from __future__ import annotations

import subprocess

# With torch 2.14 on this CPU machine a gloo run sometimes aborts at interpreter exit, after its work and
# its outputs are complete, with this line (a C++ thread still joinable at exit; it happened in about one CI
# run in two, in any of the torchrun tests, with or without destroy_process_group). Such a run is launched
# once more; the second one must pass every assertion, like the first.
EXIT_ABORT = "terminate called without an active exception"


def run_torchrun(cmd: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    for _ in range(2):
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        if r.returncode == 0 or EXIT_ABORT not in r.stdout + r.stderr:
            break
    return r
