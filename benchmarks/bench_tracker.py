"""What TensorBoard by default costs a run (docs/watching.md): the time to open the tracker (the first
time in a process, then again), to log one interval's scalars and one 64-image 32 px grid, through the same
Accelerate tracker and functions the training loop uses.

    python -m benchmarks.bench_tracker [--repeats 50]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    from accelerate import Accelerator

    from smallgan.config import Config
    from smallgan.sampling.images import make_grid
    from smallgan.training.events import flat_scalars
    from smallgan.training.tracking import log_grid, start_trackers

    opened = []
    for _ in range(2):   # the first open imports TensorBoard (once per process), the second is a run's own cost
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            acc = Accelerator(cpu=True, log_with="tensorboard", project_dir=tmp)
            start_trackers(acc, Path(tmp), flat_scalars(Config().to_dict()))
            opened.append(time.perf_counter() - t0)
            acc.end_training()
    with tempfile.TemporaryDirectory() as tmp:
        acc = Accelerator(cpu=True, log_with="tensorboard", project_dir=tmp)
        start_trackers(acc, Path(tmp), {})
        record = {k: 1.0 for k in ("d_loss", "g_loss", "kimg", "img_s", "sec_kimg", "eta_s", "peak_mem_mb",
                                   "seconds", "skipped_d", "skipped_g", "sv_G_max", "sv_D_max")}
        t0 = time.perf_counter()
        for step in range(args.repeats):
            acc.log(record, step=step)
        scalars = (time.perf_counter() - t0) / args.repeats
        grid = make_grid(torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8))
        t0 = time.perf_counter()
        for step in range(args.repeats):
            log_grid(acc, "samples", grid, step)
        images = (time.perf_counter() - t0) / args.repeats
        acc.end_training()
    print(json.dumps({"open_first_s": round(opened[0], 3), "open_again_s": round(opened[1], 3),
                      "scalars_per_interval_ms": round(scalars * 1000, 3),
                      "grid_64x32px_ms": round(images * 1000, 3)}))


if __name__ == "__main__":
    main()
