"""`smallgan prepare`: a thin wrapper over :func:`data_tools.prepare.prepare`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from smallgan.cli.app import app


@app.command()
def prepare(
    source: Optional[str] = typer.Argument(
        None,
        help="Image folder (sub-folders = classes), a prepared or save_to_disk dataset, "
        "hf:owner/name (or owner/name), or imagefolder:PATH.",
        show_default=False,
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Output folder (default: SOURCE-prepared beside the source)."
    ),
    resolution: int = typer.Option(64, help="Output size in pixels (square)."),
    crop: str = typer.Option("center", help="center | random | none (pad to square with --background)."),
    labels: str = typer.Option("auto", help="auto (>= 2 sub-folders are classes) | none (one class)."),
    min_size: int = typer.Option(32, help="Skip images whose shorter side is below this many pixels."),
    dedupe: str = typer.Option("exact", help="exact (identical pixels) | perceptual (also near-copies) | off."),
    background: str = typer.Option("white", help="white | black | #rrggbb, under transparent pixels."),
    workers: int = typer.Option(0, help="Processes; 0 = all available cores."),
    split: str = typer.Option("train", help="Split to read from a Hugging Face dataset."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing prepared output."),
    flip: bool = typer.Option(
        False, "--flip", help="The images mean the same mirrored (faces, pets; not text, digits, logos): "
        "training flips them horizontally (data.flip=dataset, the default)."),
    builtin: Optional[str] = typer.Option(None, help="Prepare a built-in dataset instead: shapes (procedural) or digits (needs scikit-learn)."),
) -> None:
    """Check, convert, crop, resize and deduplicate images into a training-ready dataset."""
    from data_tools.prepare import PrepareOptions, prepare as run_prepare

    options = PrepareOptions(
        resolution=resolution, crop=crop, labels=labels, min_size=min_size, dedupe=dedupe,
        background=background, workers=workers, split=split, flip=flip,
    )
    run_prepare(source, out, options, builtin=builtin, force=force)
