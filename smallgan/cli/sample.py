"""`smallgan sample`: grids, PNG folders, truncation sweeps and interpolation sheets from a trained generator."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

import typer

from smallgan.cli.app import app
from smallgan.cli.common import one_run
from smallgan.errors import SmallganError

_OUR_FILES = re.compile(r"^\d+\.png$")
_SEED_FILES = re.compile(r"^seed\d+\.png$")


@app.command("sample")
def sample_command(
    run_arg: Optional[str] = typer.Argument(
        None, metavar="RUN", help="Run folder, generator file or hf:USER/NAME (default: the latest run under "
        "--runs-dir)."),
    run: Optional[str] = typer.Option(None, "--run", help="The same as RUN."),
    ckpt: Optional[Path] = typer.Option(None, "--ckpt", help="A generator.safetensors or a checkpoint folder."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Where to look for the latest run."),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Image file (grid, sweep, interpolation) or folder (default: <run>/samples/...)."
    ),
    n: int = typer.Option(64, "--n", help="Images to generate (interpolation: n // steps rows)."),
    nrow: Optional[int] = typer.Option(None, "--nrow", help="Images per grid row (default: square-ish)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the latents: the same seed writes the same files."),
    seeds: Optional[str] = typer.Option(
        None, "--seeds", help="One image per seed, e.g. 0-35,100 -> seed0000.png ... (or one --grid): each image "
        "from its own seed, the same whatever the batch size; --class and --trunc apply to each."),
    trunc: Optional[float] = typer.Option(
        None, "--trunc", help="Truncation threshold for z, e.g. 0.5 (0 = none; default: the run's sample.trunc)."
    ),
    grid: bool = typer.Option(False, "--grid", help="One grid image instead of a folder of --n PNG files."),
    trunc_sweep: Optional[str] = typer.Option(
        None, "--trunc-sweep", help="Comma-separated thresholds, e.g. 2,1,0.5,0.04: one grid each, side by side."
    ),
    interp: Optional[int] = typer.Option(
        None, "--interp", help="Interpolation sheet with this many steps per row, plus an animated GIF."
    ),
    classes: Optional[list[str]] = typer.Option(
        None, "--class", help="Class name or index (repeatable or comma-separated; default: all, spread over rows)."
    ),
    to_class: Optional[str] = typer.Option(
        None, "--to-class", help="With --interp and one --class: fixed z per row, class embedding --class -> this."
    ),
    standing_stats: int = typer.Option(
        0, "--standing-stats", help="Re-estimate BatchNorm statistics over K forward passes at --trunc (0 = off)."
    ),
    batch_size: int = typer.Option(
        64, "--batch-size", help="Images gathered per write; the images do not depend on it (G runs on fixed chunks)."
    ),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace numbered PNGs already in the --out folder."),
) -> None:
    """Sample a trained generator (EMA weights): a grid, a folder of PNGs for FID tools, or the paper's figures."""
    run = one_run(run_arg, run)
    _check_options(n, nrow, batch_size, trunc, standing_stats, interp, trunc_sweep, classes, to_class, run, ckpt)
    seed_list = _parse_seeds(seeds) if seeds is not None else None
    if seed_list is not None and (interp is not None or trunc_sweep is not None):
        raise SmallganError("--seeds writes one image per seed (or a --grid of them); it does not combine with "
                            "--interp or --trunc-sweep, which take --seed")
    thresholds = _parse_thresholds(trunc_sweep) if trunc_sweep is not None else None
    class_list = [c for item in classes or [] for c in item.split(",") if c.strip()] or None
    if out is not None and (thresholds is not None or interp is not None or grid):
        from smallgan.sampling.images import image_format

        image_format(out)  # refuse a bad suffix before minutes of sampling

    from rich.console import Console

    from smallgan.cli.common import PhaseProgress, run_folder_of
    from smallgan.sampling import grid_columns, latest_run, load_generator

    console = Console(stderr=True)
    G = load_generator(run or ckpt or latest_run(runs_dir), device=device)
    trunc = G.config.sample.trunc if trunc is None else trunc
    for wanted in (class_list, to_class):   # unknown classes fail now, listing the valid ones
        if wanted:
            G.labels(1, wanted)
    from smallgan.hub import is_hub

    # A run from the Hub lives read-only in its cache: its samples go to ./samples.
    samples_dir = Path("samples") if is_hub(run) else run_folder_of(G.path) / "samples"
    tag = f"t{trunc:g}-s{seed}" + (re.sub(r"[^\w.+-]+", "_", "-" + "+".join(class_list)) if class_list else "")

    with PhaseProgress(console) as progress:
        if standing_stats and thresholds is None:
            G.standing_stats(standing_stats, trunc, seed=seed, progress=progress("standing statistics"))
        if seed_list is not None:
            written, what = _seeds(G, seed_list, trunc, class_list, batch_size, progress, grid, nrow, overwrite,
                                   out or samples_dir / (f"seeds-{tag.replace(f'-s{seed}', '', 1)}"
                                                         + (".png" if grid else "")))
        elif thresholds is not None:
            written, what = _sweep(G, thresholds, n, nrow, seed, class_list, batch_size, standing_stats, progress,
                                   out or samples_dir / f"trunc-sweep-s{seed}.png")
        elif interp is not None:
            written, what = _interpolate(G, interp, n, nrow, trunc, seed, class_list, to_class, batch_size, progress,
                                         out or samples_dir / f"interp-{tag}.png")
        elif grid:
            per_row = nrow or grid_columns(n)
            images = G.sample(n, trunc, class_list, seed, nrow=per_row, batch_size=batch_size,
                              progress=progress("images"))
            from smallgan.sampling import save_grid

            written = save_grid(images, out or samples_dir / f"sample-{tag}.png", nrow=per_row)
            what = f"{n} images, {per_row} per row"
        else:
            written, what = _folder(G, n, trunc, seed, class_list, batch_size, progress,
                                    out or samples_dir / f"sample-{tag}", overwrite)
    stats = f", standing statistics over {standing_stats} batches" if standing_stats else ""
    if standing_stats and thresholds is not None:
        stats += " at each threshold"
    trunc_note = "" if thresholds is not None else f", trunc {trunc:g}"
    print(f"wrote {written} ({what}{trunc_note}, {f'seeds {seeds}' if seeds else f'seed {seed}'}{stats})")


def _check_options(n: int, nrow: int | None, batch_size: int, trunc: float | None, standing: int, interp: int | None,
                   sweep: str | None, classes: list[str] | None, to_class: str | None, run: Any, ckpt: Any) -> None:
    if run is not None and ckpt is not None:
        raise SmallganError("pass either RUN (or --run) or --ckpt FILE, not both")
    if n < 1 or batch_size < 1 or (nrow is not None and nrow < 1):
        raise SmallganError("--n, --nrow and --batch-size must be at least 1")
    if trunc is not None and not trunc >= 0:
        raise SmallganError(f"--trunc must be >= 0 (0 = no truncation), got {trunc}")
    if standing < 0:
        raise SmallganError(f"--standing-stats must be >= 0 (0 = use the running statistics), got {standing}")
    if interp is not None and sweep is not None:
        raise SmallganError("--interp and --trunc-sweep make different sheets; pass one of them")
    if interp is not None and interp < 2:
        raise SmallganError(f"--interp needs at least 2 steps per row, got {interp}")
    if to_class is not None and (interp is None or not classes or len(classes) != 1 or "," in classes[0]):
        raise SmallganError("--to-class needs --interp N and exactly one --class (the class to start from)")


def _parse_thresholds(text: str) -> list[float]:
    try:
        values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise SmallganError(f"--trunc-sweep {text!r}: expected comma-separated numbers, e.g. 2,1,0.5,0.04") from None
    if not values or any(v < 0 for v in values):
        raise SmallganError(f"--trunc-sweep {text!r}: give one or more thresholds >= 0, e.g. 2,1,0.5,0.04")
    return values


def _sweep(G: Any, thresholds: list[float], n: int, nrow: int | None, seed: int, classes: Any, batch_size: int,
           standing: int, progress: Any, out: Path) -> tuple[Path, str]:
    from smallgan.sampling import grid_columns, make_grid, side_by_side, truncation_sweep
    from smallgan.sampling.images import save_image

    per_row = nrow or grid_columns(n)
    batches = truncation_sweep(G, thresholds, n, seed=seed, classes=classes, nrow=per_row, batch_size=batch_size,
                               standing_stats=standing, progress=progress("images"))
    labels = [f"trunc {t:g}" if t > 0 else "no truncation" for t in thresholds]
    sheet = side_by_side([make_grid(b, per_row) for b in batches], labels)
    return save_image(sheet, out), f"{len(thresholds)} grids of {n} images from the same latents"


def _interpolate(G: Any, steps: int, n: int, nrow: int | None, trunc: float, seed: int, classes: Any,
                 to_class: str | None, batch_size: int, progress: Any, out: Path) -> tuple[Path, str]:
    from smallgan.sampling import class_interpolation, interpolation_frames, latent_interpolation, save_gif, save_grid

    rows = max(1, n // steps)
    if to_class is not None:
        images = class_interpolation(G, rows, steps, classes[0], to_class, trunc=trunc, seed=seed,
                                     batch_size=batch_size, progress=progress("images"))
        what = f"{rows} rows: fixed z, class {classes[0]} -> {to_class} in {steps} steps"
    else:
        images = latent_interpolation(G, rows, steps, trunc=trunc, seed=seed, classes=classes,
                                      batch_size=batch_size, progress=progress("images"))
        what = f"{rows} rows of {steps} steps between random latents"
    sheet = save_grid(images, out, nrow=steps)
    gif = save_gif(interpolation_frames(images, rows, steps, nrow), sheet.with_suffix(".gif"))
    return sheet, f"{what}; animation {gif}"


def _folder(G: Any, n: int, trunc: float, seed: int, classes: Any, batch_size: int, progress: Any, out: Path,
            overwrite: bool) -> tuple[Path, str]:
    from smallgan.sampling import save_folder

    if out.exists() and not out.is_dir():
        raise SmallganError(f"--out {out} is a file; without --grid, --out names a folder for {n} PNG files")
    ours = [p for p in out.iterdir() if _OUR_FILES.match(p.name)] if out.is_dir() else []
    if ours and not overwrite:
        raise SmallganError(f"{out} already holds {len(ours)} numbered PNGs; pass --overwrite or another --out")
    for p in ours:
        p.unlink()
    z, y = G.latents(n, trunc, seed), G.labels(n, classes)
    count = save_folder(G.batches(z, y, batch_size=batch_size, progress=progress("images")), out, n)
    return out, f"{count} PNG files"


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


def _seeds(G: Any, seeds: list[int], trunc: float, classes: Any, batch_size: int, progress: Any, grid: bool,
           nrow: int | None, overwrite: bool, out: Path) -> tuple[Path, str]:
    from smallgan.sampling import grid_columns, save_grid
    from smallgan.sampling.images import to_pil
    from smallgan.io import atomic_write

    z, y = G.seed_inputs(seeds, trunc, classes)
    if grid:
        per_row = nrow or grid_columns(len(seeds))
        images = G.generate(z, y, batch_size=batch_size, progress=progress("images"))
        return save_grid(images, out, nrow=per_row), f"{len(seeds)} seeds, {per_row} per row"
    if out.exists() and not out.is_dir():
        raise SmallganError(f"--out {out} is a file; without --grid, --seeds writes seedNNNN.png files to a folder")
    ours = [p for p in out.iterdir() if _SEED_FILES.match(p.name)] if out.is_dir() else []
    if ours and not overwrite:
        raise SmallganError(f"{out} already holds {len(ours)} seed PNGs; pass --overwrite or another --out")
    out.mkdir(parents=True, exist_ok=True)
    seed_iter = iter(seeds)
    for batch in G.batches(z, y, batch_size=batch_size, progress=progress("images")):
        for image in to_pil(batch):
            atomic_write(out / f"seed{next(seed_iter):04d}.png", lambda p, im=image: im.save(p, format="PNG"))
    return out, f"{len(seeds)} PNG files seedNNNN.png"
