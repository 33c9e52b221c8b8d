"""Throughput of `smallgan prepare`: synthetic 512 px JPEGs -> 64 px, with 1 and 2 workers.

    python -m benchmarks.bench_prepare [--count 2000] [--size 512] [--resolution 64] [--workers 1 2]

Prints images/second for each worker count (the full pipeline: walk, decode, hash, resize, PNG,
Arrow write, save_to_disk). The source JPEGs are generated once into a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_jpegs(folder: Path, count: int, size: int) -> None:
    """Photo-like content (smooth colour fields plus grain) so JPEG decoding does realistic work."""
    rng = np.random.default_rng(0)
    for i in range(count):
        base = Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8))
        base = base.resize((size, size), Image.Resampling.BICUBIC)
        grain = rng.normal(0, 12, (size, size, 3))
        arr = np.clip(np.asarray(base, dtype=np.float32) + grain, 0, 255).astype(np.uint8)
        sub = folder / f"class{i % 4}"
        sub.mkdir(exist_ok=True)
        Image.fromarray(arr).save(sub / f"{i:05d}.jpg", quality=90)


def main() -> None:
    from rich.console import Console

    from data_tools.prepare import PrepareOptions, prepare

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to time, in order")
    ap.add_argument("--dedupe", default="exact")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="smallgan-bench-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        t = time.perf_counter()
        make_jpegs(src, args.count, args.size)
        print(f"generated {args.count} {args.size} px JPEGs in {time.perf_counter() - t:.1f} s")
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores")
        for k, w in enumerate(args.workers):
            opts = PrepareOptions(resolution=args.resolution, workers=w, dedupe=args.dedupe)
            t = time.perf_counter()
            report = prepare(str(src), Path(tmp) / f"out{k}", opts, console=Console(quiet=True))
            wall = time.perf_counter() - t
            assert report.used == args.count, report.to_dict()["skipped"]
            print(f"workers={w}: {args.count / wall:7.1f} images/s  ({wall:.2f} s for {args.count} images "
                  f"-> {args.resolution} px, dedupe={args.dedupe})")


if __name__ == "__main__":
    main()
