"""`smallgan compare RUN_A RUN_B ...`: runs side by side (the work is in smallgan/compare.py)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from smallgan.cli.app import app

if TYPE_CHECKING:
    from smallgan.compare import Comparison


@app.command()
def compare(
    runs: list[Path] = typer.Argument(..., help="Two or more run folders (runs/NAME)."),
    out: Path = typer.Option(Path("compare.png"), "--out", "-o", help="The side-by-side PNG; the table goes "
                             "beside it as .md."),
    n: int = typer.Option(16, "--n", help="Images per run in the grid."),
    seed: int = typer.Option(0, "--seed", help="Seed of the latents (the same for every run)."),
    trunc: float = typer.Option(0.0, "--trunc", help="Truncation threshold for z, e.g. 0.5 (0 = none)."),
    tile: int = typer.Option(0, "--tile", help="Pixels per image in the PNG; 0 = the largest run resolution, "
                             "at most 256."),
    best: bool = typer.Option(False, "--best", help="Sample each run's best generator (best/) where it has one."),
    device: str = typer.Option("cpu", "--device", help="Where to run the generators (cpu, cuda, ...)."),
    as_json: bool = typer.Option(False, "--json", help="Print the table as JSON instead."),
) -> None:
    """Compare runs: model, parameters, steps, images seen, time, img/s, best FID/KID; samples side by side."""
    from smallgan.compare import CompareRequest, compare_runs

    result = compare_runs(CompareRequest(runs, out, n=n, seed=seed, trunc=trunc, tile=tile, best=best,
                                         device=device))
    if as_json:
        print(json.dumps([asdict(s) for s in result.summaries], indent=2))
    else:
        _print_table(result)


def _print_table(result: Comparison) -> None:
    from rich.console import Console
    from rich.table import Table

    from smallgan.compare import COLUMNS, cells

    summaries = result.summaries
    table = Table(title="smallgan compare")
    for c in COLUMNS:
        table.add_column(c, justify="left" if c in ("run", "model") else "right")
    for s in summaries:
        table.add_row(*cells(s))
    console = Console()
    console.print(table)
    extractors = sorted({s.extractor for s in summaries if s.extractor})
    if extractors:
        console.print(f"FID / KID computed with: {', '.join(extractors)}", highlight=False)
    console.print(f"samples: {result.picture}  table: {result.table}", highlight=False)
