"""What `smallgan sample` writes, as a request: a folder of PNGs, one grid, one image per seed, a truncation
sweep or an interpolation sheet, each from one :class:`TrainedGenerator`.

The CLI parses its flags into a :class:`SampleRequest` and calls :func:`write_samples`; the same request serves
Python callers. Default output names carry the threshold, seed and classes, so two requests never overwrite
each other's files unless asked to (``overwrite``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from smallgan.errors import SmallganError
from smallgan.sampling.generator import Progress, TrainedGenerator

Phases = Callable[[str], Progress]   # label -> the (done, total) callback of that phase

_OUR_FILES = re.compile(r"^\d+\.png$")
_SEED_FILES = re.compile(r"^seed\d+\.png$")


@dataclass
class SampleRequest:
    n: int = 64                              # images (interpolation: n // interp rows)
    nrow: int | None = None                  # images per grid row (None: square-ish)
    seed: int = 0                            # seed of the latents
    seeds: list[int] | None = None           # one image per seed instead (seedNNNN.png, or a grid)
    seeds_text: str | None = None            # the seeds as the user wrote them, for the summary line
    trunc: float | None = None               # truncation threshold (0 = none; None = the run's sample.trunc)
    grid: bool = False                       # one grid image instead of a folder of PNG files
    thresholds: list[float] | None = None    # a truncation sweep: one grid per threshold, side by side
    interp: int | None = None                # an interpolation sheet with this many steps per row
    classes: list[str] | None = None         # class names or indices (None: all, spread over rows)
    to_class: str | None = None              # with interp and one class: class embedding classes[0] -> this
    standing_stats: int = 0                  # re-estimate BatchNorm statistics over this many passes (0 = off)
    batch_size: int = 64                     # images gathered per write; the images do not depend on it
    overwrite: bool = False                  # replace numbered PNGs already in the output folder
    out: Path | None = None                  # image file or folder (None: a name under samples_dir)


@dataclass
class Written:
    path: Path
    what: str          # "64 PNG files", "16 images, 4 per row", ...

    def summary(self, req: SampleRequest) -> str:
        """The one line `smallgan sample` prints."""
        stats = f", standing statistics over {req.standing_stats} batches" if req.standing_stats else ""
        if req.standing_stats and req.thresholds is not None:
            stats += " at each threshold"
        trunc = "" if req.thresholds is not None else f", trunc {req.trunc:g}"
        seeds = f"seeds {req.seeds_text}" if req.seeds_text else f"seed {req.seed}"
        return f"wrote {self.path} ({self.what}{trunc}, {seeds}{stats})"


def write_samples(G: TrainedGenerator, req: SampleRequest, samples_dir: Path,
                  progress: Phases) -> tuple[Written, SampleRequest]:
    """Write what ``req`` asks for; returns what was written and the request with its defaults resolved."""
    req = replace(req, trunc=G.config.sample.trunc if req.trunc is None else req.trunc)
    for wanted in (req.classes, req.to_class):   # unknown classes fail now, listing the valid ones
        if wanted:
            G.labels(1, wanted)
    tag = f"t{req.trunc:g}-s{req.seed}"
    if req.classes:
        tag += re.sub(r"[^\w.+-]+", "_", "-" + "+".join(req.classes))
    if req.standing_stats and req.thresholds is None:
        G.standing_stats(req.standing_stats, req.trunc, seed=req.seed, progress=progress("standing statistics"))
    if req.seeds is not None:
        name = f"seeds-{tag.replace(f'-s{req.seed}', '', 1)}" + (".png" if req.grid else "")
        return _seeds(G, req, progress, req.out or samples_dir / name), req
    if req.thresholds is not None:
        return _sweep(G, req, progress, req.out or samples_dir / f"trunc-sweep-s{req.seed}.png"), req
    if req.interp is not None:
        return _interpolate(G, req, progress, req.out or samples_dir / f"interp-{tag}.png"), req
    if req.grid:
        return _grid(G, req, progress, req.out or samples_dir / f"sample-{tag}.png"), req
    return _folder(G, req, progress, req.out or samples_dir / f"sample-{tag}"), req


def _grid(G: TrainedGenerator, req: SampleRequest, progress: Phases, out: Path) -> Written:
    from smallgan.sampling.images import grid_columns, save_grid

    per_row = req.nrow or grid_columns(req.n)
    images = G.sample(req.n, req.trunc, req.classes, req.seed, nrow=per_row, batch_size=req.batch_size,
                      progress=progress("images"))
    return Written(save_grid(images, out, nrow=per_row), f"{req.n} images, {per_row} per row")


def _sweep(G: TrainedGenerator, req: SampleRequest, progress: Phases, out: Path) -> Written:
    from smallgan.sampling.figures import truncation_sweep
    from smallgan.sampling.images import grid_columns, make_grid, save_image, side_by_side

    thresholds = req.thresholds or []
    per_row = req.nrow or grid_columns(req.n)
    batches = truncation_sweep(G, thresholds, req.n, seed=req.seed, classes=req.classes, nrow=per_row,
                               batch_size=req.batch_size, standing_stats=req.standing_stats,
                               progress=progress("images"))
    labels = [f"trunc {t:g}" if t > 0 else "no truncation" for t in thresholds]
    sheet = side_by_side([make_grid(b, per_row) for b in batches], labels)
    return Written(save_image(sheet, out), f"{len(thresholds)} grids of {req.n} images from the same latents")


def _interpolate(G: TrainedGenerator, req: SampleRequest, progress: Phases, out: Path) -> Written:
    from smallgan.sampling.figures import class_interpolation, interpolation_frames, latent_interpolation
    from smallgan.sampling.images import save_gif, save_grid

    steps = req.interp or 2
    rows = max(1, req.n // steps)
    if req.to_class is not None and req.classes:
        images = class_interpolation(G, rows, steps, req.classes[0], req.to_class, trunc=req.trunc, seed=req.seed,
                                     batch_size=req.batch_size, progress=progress("images"))
        what = f"{rows} rows: fixed z, class {req.classes[0]} -> {req.to_class} in {steps} steps"
    else:
        images = latent_interpolation(G, rows, steps, trunc=req.trunc, seed=req.seed, classes=req.classes,
                                      batch_size=req.batch_size, progress=progress("images"))
        what = f"{rows} rows of {steps} steps between random latents"
    sheet = save_grid(images, out, nrow=steps)
    gif = save_gif(interpolation_frames(images, rows, steps, req.nrow), sheet.with_suffix(".gif"))
    return Written(sheet, f"{what}; animation {gif}")


def _ours(out: Path, pattern: re.Pattern[str], overwrite: bool, file_note: str, kind: str) -> list[Path]:
    """Our files already in the folder ``out``; refuses a file where the folder goes, and files of ours there
    unless ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise SmallganError(f"--out {out} is a file; without --grid, {file_note}")
    ours = [p for p in out.iterdir() if pattern.match(p.name)] if out.is_dir() else []
    if ours and not overwrite:
        raise SmallganError(f"{out} already holds {len(ours)} {kind}; pass --overwrite or another --out")
    return ours


def _folder(G: TrainedGenerator, req: SampleRequest, progress: Phases, out: Path) -> Written:
    from smallgan.sampling.images import save_folder

    for p in _ours(out, _OUR_FILES, req.overwrite, f"--out names a folder for {req.n} PNG files", "numbered PNGs"):
        p.unlink()
    z, y = G.latents(req.n, req.trunc or 0.0, req.seed), G.labels(req.n, req.classes)
    count = save_folder(G.batches(z, y, batch_size=req.batch_size, progress=progress("images")), out, req.n)
    return Written(out, f"{count} PNG files")


def _seeds(G: TrainedGenerator, req: SampleRequest, progress: Phases, out: Path) -> Written:
    from smallgan.io import atomic_write
    from smallgan.sampling.images import grid_columns, save_grid, to_pil

    seeds = req.seeds or []
    z, y = G.seed_inputs(seeds, req.trunc or 0.0, req.classes)
    if req.grid:
        per_row = req.nrow or grid_columns(len(seeds))
        images = G.generate(z, y, batch_size=req.batch_size, progress=progress("images"))
        return Written(save_grid(images, out, nrow=per_row), f"{len(seeds)} seeds, {per_row} per row")
    _ours(out, _SEED_FILES, req.overwrite, "--seeds writes seedNNNN.png files to a folder", "seed PNGs")
    out.mkdir(parents=True, exist_ok=True)
    seed_iter = iter(seeds)
    for batch in G.batches(z, y, batch_size=req.batch_size, progress=progress("images")):
        for image in to_pil(batch):
            atomic_write(out / f"seed{next(seed_iter):04d}.png", lambda p, im=image: im.save(p, format="PNG"))
    return Written(out, f"{len(seeds)} PNG files seedNNNN.png")
