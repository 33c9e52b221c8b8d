"""Where a training iteration's time goes: torch.profiler's operator table for the real Trainer.

    python -m benchmarks.profile_step                                   # tiny-cpu recipe and 64 px ch 32 b16
    python -m benchmarks.profile_step --config 64,32,16 --rows 25 --device cuda

Each configuration: BigGAN through smallgan.bench.bench_config (fp32, d_steps 2, EMA and orthogonal
regularisation as the recipe says), `--warmup` iterations, then `--iters` profiled ones. The table is sorted by
self time (CPU, or CUDA on a GPU) and also says how many operator calls one iteration makes: the count that a
launch-bound GPU step pays for.
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from torch.profiler import ProfilerActivity, profile

from smallgan.bench import bench_config, synthetic_images
from smallgan.config import load_config


def _trainer(spec: str, device: str, tmp: str):
    from smallgan.training.loop import Trainer

    if spec == "tiny-cpu":
        cfg = load_config("tiny-cpu", ["train.diffaug=", "model.n_classes=1"])
    else:
        res, ch, batch = (int(x) for x in spec.split(","))
        cfg = bench_config("biggan", res, ch, batch, 2, "no")
    cfg.train.out_dir, cfg.train.name = tmp, "profile"
    data = synthetic_images(cfg, max(64, cfg.train.batch * 4))
    if device == "cpu":
        cfg.train.precision = "no"
    return Trainer(cfg, dataset=data)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", nargs="+", default=["tiny-cpu", "64,32,16"],
                    help="tiny-cpu, or RESOLUTION,CH,BATCH")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rows", type=int, default=20)
    args = ap.parse_args()
    cuda = args.device == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    for spec in args.config:
        with tempfile.TemporaryDirectory() as tmp:
            trainer = _trainer(spec, args.device, tmp)
            for _ in range(args.warmup):
                trainer.train_iteration()
            with profile(activities=activities) as prof:
                for _ in range(args.iters):
                    trainer.train_iteration()
                if cuda:
                    torch.cuda.synchronize()
        events = prof.key_averages()
        calls = sum(e.count for e in events if not e.key.startswith("ProfilerStep")) / args.iters
        total = sum(e.self_device_time_total if cuda else e.self_cpu_time_total for e in events) / args.iters
        print(f"\n### {spec}: {args.iters} iterations, {calls:.0f} operator calls and "
              f"{total / 1e3:.1f} ms of self {'CUDA' if cuda else 'CPU'} time per iteration, "
              f"{torch.get_num_threads()} threads\n")
        sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
        print(events.table(sort_by=sort, row_limit=args.rows, max_name_column_width=40))


if __name__ == "__main__":
    main()
