"""`smallgan timelapse`: a run's progress grids (samples/step-*.png) as one animation, step by step."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import typer

from smallgan.cli.app import app
from smallgan.errors import SmallganError

_STEP_GRID = re.compile(r"^step-(\d+)\.png$")


@app.command("timelapse")
def timelapse_command(
    run: Path = typer.Argument(..., help="Run folder (runs/NAME) whose samples/step-*.png to animate."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="run.gif, or run.mp4 where imageio with its ffmpeg "
                                       "plugin is installed (default: RUN/timelapse.gif)."),
    fps: float = typer.Option(8.0, "--fps", help="Frames (grids) per second."),
    every: int = typer.Option(1, "--every", help="Take every Nth grid (long runs); the last one is always kept."),
) -> None:
    """Animate a run's progress grids in step order, each frame labelled with its step."""
    from smallgan.sampling import save_gif, side_by_side

    if fps <= 0 or every < 1:
        raise SmallganError("--fps must be > 0 and --every at least 1")
    grids = sorted((int(m.group(1)), p) for p in (run / "samples").glob("step-*.png")
                   if (m := _STEP_GRID.match(p.name)))
    if not grids:
        raise SmallganError(f"{run}: no samples/step-*.png yet; train with train.sample_every > 0 first")
    kept = grids[::every] + ([grids[-1]] if (len(grids) - 1) % every else [])
    out = out or run / "timelapse.gif"
    if out.suffix.lower() not in (".gif", ".mp4"):
        raise SmallganError(f"--out {out}: write a .gif (or an .mp4 where imageio[ffmpeg] is installed)")
    import numpy as np
    import torch
    from PIL import Image

    frames = []
    for step, path in kept:
        grid = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)
        frames.append(side_by_side([grid], [f"step {step}"]))
    if out.suffix.lower() == ".mp4":
        _write_mp4(frames, out, fps)
    else:
        save_gif(frames, out, duration_ms=round(1000 / fps))
    print(f"wrote {out} ({len(frames)} frames, steps {kept[0][0]}-{kept[-1][0]}, {fps:g} fps)")


def _write_mp4(frames: list, out: Path, fps: float) -> None:
    try:
        import imageio.v3 as iio
        import imageio_ffmpeg  # noqa: F401  imageio[ffmpeg]'s encoder: without it imageio picks another writer
    except ImportError:
        raise SmallganError(f"--out {out}: an .mp4 needs `pip install imageio[ffmpeg]`; or write a .gif") from None
    from smallgan.io import atomic_write
    import numpy as np

    # Even sizes: H.264 encoders refuse odd widths and heights.
    arrays = [np.asarray(f)[: f.height // 2 * 2, : f.width // 2 * 2] for f in frames]
    # The temporary file's name does not end in .mp4, so ffmpeg is told the container; sizes are already even.
    atomic_write(out, lambda p: iio.imwrite(p, arrays, extension=".mp4", plugin="FFMPEG", fps=fps,
                                            macro_block_size=2, output_params=["-f", "mp4"]))
