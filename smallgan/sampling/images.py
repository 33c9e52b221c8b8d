"""Images out of a generator: uint8 conversion, grids, folders of PNGs, labelled side-by-side sheets, GIFs.

Every file is written under a temporary name and renamed into place, so a reader (or an interrupted run)
never sees half an image.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Union

import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from smallgan.io import atomic_write
from smallgan.errors import SmallganError

ImagesLike = Union[Tensor, Sequence[Image.Image]]


def to_uint8(images: Tensor) -> Tensor:
    """Generator output in [-1, 1] -> uint8 in [0, 255] (rounded, as a PNG stores it); uint8 passes through."""
    if images.dtype == torch.uint8:
        return images
    return ((images.float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


def _as_uint8(images: ImagesLike) -> Tensor:
    if isinstance(images, Tensor):
        if images.ndim == 3:
            images = images.unsqueeze(0)
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected images (N, 3, H, W), got shape {tuple(images.shape)}")
        return to_uint8(images.detach().cpu())
    import numpy as np

    arrays = [np.asarray(im.convert("RGB")) for im in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def to_pil(images: ImagesLike) -> list[Image.Image]:
    """(N, 3, H, W) uint8 or [-1, 1] float -> N RGB PIL images."""
    arr = _as_uint8(images).permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(a.squeeze(-1) if a.shape[-1] == 1 else a) for a in arr]


def grid_columns(n: int) -> int:
    """Images per grid row when none is asked for: ceil(sqrt(n)), so a grid is square or one row wider than
    tall, never taller than wide."""
    return max(1, math.ceil(math.sqrt(n)))


def make_grid(images: ImagesLike, nrow: int | None = None, padding: int = 2, pad_value: int = 0) -> Tensor:
    """N images -> one (3, H', W') uint8 grid of `nrow` images per row (default :func:`grid_columns`).

    Size: rows * H + (rows + 1) * padding high, nrow * W + (nrow + 1) * padding wide, rows = ceil(N / nrow);
    cells after the last image stay `pad_value`.
    """
    x = _as_uint8(images)
    n, c, h, w = x.shape
    if n == 0:
        raise SmallganError("cannot make a grid of 0 images")
    if nrow is not None and nrow < 1:
        raise SmallganError(f"--nrow must be at least 1, got {nrow}")
    per_row = min(nrow or grid_columns(n), n)
    rows = math.ceil(n / per_row)
    grid = torch.full((c, rows * h + (rows + 1) * padding, per_row * w + (per_row + 1) * padding), pad_value,
                      dtype=torch.uint8)
    for i in range(n):
        r, col = divmod(i, per_row)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[:, top:top + h, left:left + w] = x[i]
    return grid


def image_format(path: Path) -> str:
    """The PIL format for a file name's suffix; unknown suffixes fail with a one-line error."""
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise SmallganError(f"{path}: unknown image file type {path.suffix or '(none)'}; use .png")
    return fmt


def save_image(image: Image.Image, path: str | Path, **options: Any) -> Path:
    """Write one PIL image atomically; the format follows the suffix (.png, .jpg, .webp, .gif)."""
    path = Path(path)
    fmt = image_format(path)
    atomic_write(path, lambda p: image.save(p, format=fmt, **options))
    return path


def save_grid(images: ImagesLike, path: str | Path, nrow: int | None = None, padding: int = 2,
              pad_value: int = 0) -> Path:
    """Save N images (uint8, float in [-1, 1] or PIL) as one grid image (PNG by the suffix), atomically."""
    return save_image(to_pil(make_grid(images, nrow, padding, pad_value).unsqueeze(0))[0], path)


def save_folder(batches: Iterable[Tensor], folder: str | Path, n: int) -> int:
    """Write n images arriving in batches as folder/00000.png, 00001.png, ... (for FID tools); returns n.

    Each file is renamed into place but not fsynced: tens of thousands of fsyncs would dominate the run, and
    a crash leaves only complete files behind.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    digits = max(5, len(str(n - 1)))
    i = 0
    for batch in batches:
        for im in to_pil(batch):
            final = folder / f"{i:0{digits}d}.png"
            tmp = folder / f".{final.name}.tmp-{os.getpid()}"
            im.save(tmp, format="PNG")
            os.replace(tmp, final)
            i += 1
    return i


def side_by_side(grids: Sequence[Tensor], labels: Sequence[str] | None = None, gap: int = 8) -> Image.Image:
    """(3, H, W) uint8 grids in one row on white, `gap` px apart, each under its label (e.g. "trunc 0.5").

    A column is as wide as its grid or its label, whichever is wider, so labels never overlap.
    """
    pictures = [to_pil(g.unsqueeze(0))[0] for g in grids]
    font = ImageFont.load_default()
    measure = ImageDraw.Draw(pictures[0])
    band = 0
    columns = [p.width for p in pictures]
    if labels:
        band = max(measure.textbbox((0, 0), t, font=font)[3] for t in labels) + 6
        columns = [max(w, int(measure.textlength(t, font=font)) + 4) for w, t in zip(columns, labels)]
    width = sum(columns) + gap * (len(pictures) + 1)
    height = max(p.height for p in pictures) + band + 2 * gap
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    left = gap
    for i, (p, column) in enumerate(zip(pictures, columns)):
        if labels:
            draw.text((left, gap), labels[i], fill="black", font=font)
        canvas.paste(p, (left, gap + band))
        left += column + gap
    return canvas


def save_gif(frames: Sequence[Image.Image], path: str | Path, duration_ms: int = 80) -> Path:
    """An endlessly looping animated GIF of `frames`, written atomically."""
    path = Path(path)
    first, *rest = frames
    atomic_write(path, lambda p: first.save(p, format="GIF", save_all=True, append_images=rest,
                                            duration=duration_ms, loop=0))
    return path
