"""`smallgan sample`: grids, PNG folders, truncation sweeps and interpolation sheets from a trained generator.

The command parses its flags into a :class:`~smallgan.sampling.request.SampleRequest`; the work is in
:func:`~smallgan.sampling.request.write_samples`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from smallgan.cli.app import app
from smallgan.cli.common import CkptOption, RunOption, one_run
from smallgan.errors import SmallganError
from smallgan.sampling.request import SampleRequest

# The options, one alias each, so that the command's signature reads as a table.
RunArg = Annotated[Optional[str], typer.Argument(
    metavar="RUN", help="Run folder, generator file or hf:USER/NAME (default: the latest run under --runs-dir).")]
RunsDir = Annotated[Path, typer.Option("--runs-dir", help="Where to look for the latest run.")]
Out = Annotated[Optional[Path], typer.Option(
    "--out", "-o", help="Image file (grid, sweep, interpolation) or folder (default: <run>/samples/...).")]
N = Annotated[int, typer.Option("--n", help="Images to generate (interpolation: n // steps rows).")]
Nrow = Annotated[Optional[int], typer.Option("--nrow", help="Images per grid row (default: square-ish).")]
Seed = Annotated[int, typer.Option("--seed", help="Seed of the latents: the same seed writes the same files.")]
Seeds = Annotated[Optional[str], typer.Option(
    "--seeds", help="One image per seed, e.g. 0-35,100 -> seed0000.png ... (or one --grid): each image from its "
    "own seed, the same whatever the batch size; --class and --trunc apply to each.")]
Trunc = Annotated[Optional[float], typer.Option(
    "--trunc", help="Truncation threshold for z, e.g. 0.5 (0 = none; default: the run's sample.trunc).")]
Grid = Annotated[bool, typer.Option("--grid", help="One grid image instead of a folder of --n PNG files.")]
TruncSweep = Annotated[Optional[str], typer.Option(
    "--trunc-sweep", help="Comma-separated thresholds, e.g. 2,1,0.5,0.04: one grid each, side by side.")]
Interp = Annotated[Optional[int], typer.Option(
    "--interp", help="Interpolation sheet with this many steps per row, plus an animated GIF.")]
Classes = Annotated[Optional[list[str]], typer.Option(
    "--class", help="Class name or index (repeatable or comma-separated; default: all, spread over rows).")]
ToClass = Annotated[Optional[str], typer.Option(
    "--to-class", help="With --interp and one --class: fixed z per row, class embedding --class -> this.")]
StandingStats = Annotated[int, typer.Option(
    "--standing-stats", help="Re-estimate BatchNorm statistics over K forward passes at --trunc (0 = off).")]
BatchSize = Annotated[int, typer.Option(
    "--batch-size", help="Images gathered per write; the images do not depend on it (G runs on fixed chunks).")]
Device = Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace numbered PNGs already in the --out folder.")]


@app.command("sample")
def sample_command(run_arg: RunArg = None, run: RunOption = None, ckpt: CkptOption = None, runs_dir: RunsDir = Path("runs"),
                   out: Out = None, n: N = 64, nrow: Nrow = None, seed: Seed = 0, seeds: Seeds = None,
                   trunc: Trunc = None, grid: Grid = False, trunc_sweep: TruncSweep = None, interp: Interp = None,
                   classes: Classes = None, to_class: ToClass = None, standing_stats: StandingStats = 0,
                   batch_size: BatchSize = 64, device: Device = "auto", overwrite: Overwrite = False) -> None:
    """Sample a trained generator (EMA weights): a grid, a folder of PNGs for FID tools, or the paper's figures."""
    run = one_run(run_arg, run)
    if run is not None and ckpt is not None:
        raise SmallganError("pass either RUN (or --run) or --ckpt FILE, not both")
    req = SampleRequest(n=n, nrow=nrow, seed=seed, seeds_text=seeds, trunc=trunc, grid=grid, interp=interp,
                        classes=[c for item in classes or [] for c in item.split(",") if c.strip()] or None,
                        to_class=to_class, standing_stats=standing_stats, batch_size=batch_size,
                        overwrite=overwrite, out=out)
    _check(req, trunc_sweep)
    req.seeds = _parse_seeds(seeds) if seeds is not None else None
    if req.seeds is not None and (interp is not None or trunc_sweep is not None):
        raise SmallganError("--seeds writes one image per seed (or a --grid of them); it does not combine with "
                            "--interp or --trunc-sweep, which take --seed")
    req.thresholds = _parse_thresholds(trunc_sweep) if trunc_sweep is not None else None
    if out is not None and (req.thresholds is not None or interp is not None or grid):
        from smallgan.sampling.images import image_format

        image_format(out)  # refuse a bad suffix before minutes of sampling
    from rich.console import Console

    from smallgan.cli.common import PhaseProgress, run_folder_of
    from smallgan.hub import is_hub
    from smallgan.sampling import latest_run, load_generator
    from smallgan.sampling.request import write_samples

    G = load_generator(run or ckpt or latest_run(runs_dir), device=device)
    # A run from the Hub lives read-only in its cache: its samples go to ./samples.
    samples_dir = Path("samples") if is_hub(run) else run_folder_of(G.path) / "samples"
    with PhaseProgress(Console(stderr=True)) as progress:
        written, req = write_samples(G, req, samples_dir, progress)
    print(written.summary(req))


def _check(req: SampleRequest, sweep: str | None) -> None:
    if req.n < 1 or req.batch_size < 1 or (req.nrow is not None and req.nrow < 1):
        raise SmallganError("--n, --nrow and --batch-size must be at least 1")
    if req.trunc is not None and not req.trunc >= 0:
        raise SmallganError(f"--trunc must be >= 0 (0 = no truncation), got {req.trunc}")
    if req.standing_stats < 0:
        raise SmallganError(f"--standing-stats must be >= 0 (0 = use the running statistics), got {req.standing_stats}")
    if req.interp is not None and sweep is not None:
        raise SmallganError("--interp and --trunc-sweep make different sheets; pass one of them")
    if req.interp is not None and req.interp < 2:
        raise SmallganError(f"--interp needs at least 2 steps per row, got {req.interp}")
    if req.to_class is not None and (req.interp is None or not req.classes or len(req.classes) != 1):
        raise SmallganError("--to-class needs --interp N and exactly one --class (the class to start from)")


def _parse_thresholds(text: str) -> list[float]:
    try:
        values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise SmallganError(f"--trunc-sweep {text!r}: expected comma-separated numbers, e.g. 2,1,0.5,0.04") from None
    if not values or any(v < 0 for v in values):
        raise SmallganError(f"--trunc-sweep {text!r}: give one or more thresholds >= 0, e.g. 2,1,0.5,0.04")
    return values


def _parse_seeds(text: str) -> list[int]:
    """"0-35,100" -> [0, 1, ..., 35, 100]."""
    out: list[int] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        first, dash, last = part.partition("-")
        try:
            lo, hi = int(first), int(last if dash else first)
        except ValueError:
            raise SmallganError(f"--seeds {text!r}: expected seeds and ranges, e.g. 0-35,100") from None
        if lo < 0 or hi < lo:
            raise SmallganError(f"--seeds {text!r}: {part} is not a range of seeds >= 0 (low-high)")
        out += range(lo, hi + 1)
    if not out:
        raise SmallganError(f"--seeds {text!r}: give at least one seed, e.g. 0-35,100")
    return out
