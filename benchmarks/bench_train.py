"""Side-by-side training-step benchmark: each optimisation against the current defaults, in one run.

    python -m benchmarks.bench_train --resolution 32 64 128 --ch 16 --batch 8
    python -m benchmarks.bench_train --variants baseline,channels_last,bf16 --device cuda --ch 96 --batch 64

Every (variant, resolution) runs in its own subprocess (a fresh Accelerator and allocator), variants take
turns within each repeat so background load hits them alike, and the median over repeats is reported.
Figures: seconds per iteration (d_steps D updates + one G update + EMA + ortho reg), img/s (real images
through D per second) and peak memory (CUDA max allocated, or process peak RSS on CPU).

Variants that undo a change measure what the change bought ("before" vs the baseline's "after").
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

VARIANTS: dict[str, tuple[str, list[str]]] = {
    # name: (what it measures, --set overrides)
    "baseline": ("current defaults", []),
    "sn-per-forward": ("before: a spectral-norm power iteration in every forward", []),
    "unfused-adam": ("before: foreach Adam and a host sync per optimiser step to skip bad steps", []),
    "channels_last": ("NHWC memory format", ["train.channels_last=true"]),
    "act-ckpt": ("activation checkpointing of G/D blocks", ["train.activation_checkpointing=true"]),
    "compile": ("torch.compile of G and D", ["train.compile=true"]),
    "bf16": ("bf16 autocast", ["train.precision=bf16"]),
    "mode-seeking": ("MSGAN's term in G's loss (tiny-cpu's train.mode_seeking)", ["train.mode_seeking=0.2"]),
}


def _patch(variant: str) -> None:
    """Reinstate the behaviour a change replaced (child process only)."""
    import torch

    import smallgan.training.build as build
    import smallgan.training.loop as loop

    if variant == "sn-per-forward":
        build.iterate_once_per_step = lambda module: None
        loop.power_iteration_ = lambda module: None
    elif variant == "unfused-adam":
        adam = torch.optim.Adam

        def unfused(params, fused=None, **kwargs):
            return adam(params, foreach=True, **kwargs)

        torch.optim.Adam = unfused


def child(args: argparse.Namespace) -> None:
    from smallgan.bench import bench_config, run_benchmark

    _patch(args.variant)
    cfg = bench_config(args.arch, args.resolution[0], args.ch, args.batch, args.d_steps, args.precision,
                       VARIANTS[args.variant][1] + list(args.set or []))
    row = run_benchmark(cfg, iters=args.iters, warmup=args.warmup, device=args.device)
    print("RESULT " + json.dumps({"variant": args.variant, **row}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="biggan")
    ap.add_argument("--resolution", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--ch", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--d-steps", type=int, default=2)
    ap.add_argument("--precision", default="no")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--variants", default="baseline,sn-per-forward,unfused-adam,channels_last,act-ckpt,bf16")
    ap.add_argument("--set", action="append", help="extra config override for every variant")
    ap.add_argument("--json", action="store_true", help="print one JSON object per (variant, resolution)")
    ap.add_argument("--variant", help=argparse.SUPPRESS)  # child mode
    args = ap.parse_args()
    if args.variant:
        child(args)
        return
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        sys.exit(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    results: dict[tuple[str, int], list[dict]] = {}
    for r in args.resolution:
        for rep in range(args.repeats):
            order = variants if rep % 2 == 0 else variants[::-1]
            for v in order:
                cmd = [sys.executable, __file__, "--variant", v, "--resolution", str(r), "--arch", args.arch,
                       "--ch", str(args.ch), "--batch", str(args.batch), "--d-steps", str(args.d_steps),
                       "--precision", args.precision, "--device", args.device, "--iters", str(args.iters),
                       "--warmup", str(args.warmup)] + [x for s in (args.set or []) for x in ("--set", s)]
                out = subprocess.run(cmd, capture_output=True, text=True)
                line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
                if line is None:
                    print(f"{v} @ {r}px failed:\n{out.stderr[-1500:]}", file=sys.stderr)
                    continue
                results.setdefault((v, r), []).append(json.loads(line[7:]))
    print(f"\n{args.arch}, ch {args.ch}, micro-batch {args.batch}, d_steps {args.d_steps}, "
          f"median of {args.repeats} runs x {args.iters} iterations")
    print(f"{'variant':<16}{'res':>5}{'s/iter':>10}{'img/s':>9}{'vs base':>9}{'peak MB':>10}  device")
    for r in args.resolution:
        base = results.get(("baseline", r))
        base_s = statistics.median(x["s_per_iter"] for x in base) if base else None
        for v in variants:
            rows = results.get((v, r))
            if not rows:
                continue
            s = statistics.median(x["s_per_iter"] for x in rows)
            mem = statistics.median(x["peak_mem_mb"] for x in rows)
            rel = f"{base_s / s:.2f}x" if base_s else "-"
            print(f"{v:<16}{r:>5}{s:>10.4f}{rows[0]['batch'] * rows[0]['d_steps'] / s:>9.1f}{rel:>9}{mem:>10.0f}"
                  f"  {rows[0]['device']}")
            if args.json:
                print(json.dumps({"variant": v, "resolution": r, "s_per_iter": s, "peak_mem_mb": mem,
                                  "runs": rows}))


if __name__ == "__main__":
    main()
