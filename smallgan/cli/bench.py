"""`smallgan bench`: img/s and peak memory of one training iteration (see smallgan/bench.py)."""

from __future__ import annotations

import json
from typing import Any, Optional

import typer

from smallgan.cli.app import SetOption, app
from smallgan.cli.common import PRECISION_HELP, check_precision


@app.command()
def bench(
    arch: str = typer.Option("biggan", "--arch", help="biggan | biggan-deep | fastgan"),
    resolution: list[int] = typer.Option([32], "--resolution", help="Output size (repeatable)."),
    ch: int = typer.Option(16, "--ch", help="Width multiplier (BigGAN ch; FastGAN ngf)."),
    batch: int = typer.Option(16, "--batch", help="Micro-batch per device (one per iteration)."),
    d_steps: int = typer.Option(2, "--d-steps", help="D updates per G update."),
    precision: str = typer.Option("auto", "--precision", help=PRECISION_HELP),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    iters: int = typer.Option(10, "--iters", help="Timed iterations (after warm-up)."),
    warmup: int = typer.Option(3, "--warmup", help="Untimed iterations first (compilation, caches)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per configuration."),
    sets: Optional[list[str]] = SetOption,
) -> None:
    """Benchmark one full training iteration (D steps + G step + EMA + ortho reg) on synthetic images."""
    from smallgan.bench import bench_config, run_benchmark
    from smallgan.errors import SmallganError

    if device not in ("auto", "cpu", "cuda"):
        raise SmallganError(f"--device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SmallganError("--device cuda: no CUDA GPU is visible; use --device cpu")
    check_precision(precision)
    rows = []
    for r in resolution:
        cfg = bench_config(arch, r, ch, batch, d_steps, precision, list(sets or []))
        rows.append(run_benchmark(cfg, iters=iters, warmup=warmup, device=device))
        if as_json:
            print(json.dumps(rows[-1]))
    if not as_json:
        _print_table(rows, arch, iters, warmup)


def _print_table(rows: list[dict[str, Any]], arch: str, iters: int, warmup: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"smallgan bench: {arch}, {iters} iterations after {warmup} warm-up")
    for col in ("res", "ch", "batch", "d_steps", "precision", "device", "G+D params", "s/iter", "img/s", "peak MB"):
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(str(row["resolution"]), str(row["ch"]), str(row["batch"]), str(row["d_steps"]),
                      row["precision"], row["device"], f"{(row['G_params'] + row['D_params']) / 1e6:.2f}M",
                      f"{row['s_per_iter']:.4f}", f"{row['img_s']:.1f}", f"{row['peak_mem_mb']:.0f}")
    Console().print(table)
    Console().print(f"peak memory: {rows[0]['peak_mem_kind']}; img/s = real images through D per second")
