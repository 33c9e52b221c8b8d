"""Per-image work done in the pool: load, check, hash, crop, resize, encode. Light imports only.

Workers are spawned (not forked): a parent that already initialised CUDA or thread pools (the
training loop preparing a folder on the fly) cannot be forked safely.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

from PIL import Image

from data_tools import images
from data_tools.builtin import builtin_spec
from data_tools.dedupe import perceptual_hash, pixel_hash


@dataclass(frozen=True)
class FileItem:
    rel: str      # path relative to the source folder (the row's `source`)
    path: str
    label: int


@dataclass(frozen=True)
class BytesItem:
    rel: str                  # a Hugging Face row: encoded bytes, or a local path to read them from
    data: bytes | None
    path: str | None
    label: int


@dataclass(frozen=True)
class BuiltinItem:
    rel: str
    name: str     # the built-in set (data_tools.builtin.BUILTINS)
    index: int
    label: int


Item = FileItem | BytesItem | BuiltinItem


@dataclass(frozen=True)
class Settings:
    resolution: int
    crop: str
    min_size: int
    dedupe: str
    background: tuple[int, int, int]
    max_pixels: int
    seed: int = 0


@dataclass
class Result:
    rel: str
    label: int
    png: bytes = b""
    reason: str = ""          # a skip reason; "" when the image is usable
    detail: str = ""
    exact: bytes | None = None
    phash: int | None = None
    upscaled: bool = False


def _load(item: Item, s: Settings) -> tuple[Image.Image, tuple[int, int]]:
    # Large JPEGs decode at a reduced DCT scale that keeps >= 2x the target resolution.
    kw = dict(max_pixels=s.max_pixels, background=s.background, draft_side=2 * s.resolution,
              draft_on="long" if s.crop == "none" else "short")
    if isinstance(item, BuiltinItem):
        spec = builtin_spec(item.name)
        im, _ = spec.render(item.index, s.resolution, spec.seed)
        return im, im.size
    if isinstance(item, BytesItem) and item.data is not None:
        if not item.data:
            raise images.SkipImage(images.EMPTY, "0 bytes")
        return images.decode(io.BytesIO(item.data), **kw)
    path = item.path
    try:
        if os.path.getsize(path) == 0:
            raise images.SkipImage(images.EMPTY, "0 bytes")
        with open(path, "rb") as f:
            return images.decode(f, **kw)
    except OSError as e:
        raise images.SkipImage(images.UNREADABLE, str(e)) from None


def process(item: Item, s: Settings) -> Result:
    """One item -> a Result; any failure becomes a skip reason, never an exception."""
    r = Result(item.rel, item.label)
    try:
        im, (w, h) = _load(item, s)
        if min(w, h) < s.min_size:
            raise images.SkipImage(images.TOO_SMALL, f"{w}x{h} is below --min-size {s.min_size}")
        if s.dedupe != "off":
            r.exact = pixel_hash(im)
        if s.dedupe == "perceptual":
            r.phash = perceptual_hash(im)
        side = max(w, h) if s.crop == "none" else min(w, h)
        r.upscaled = side < s.resolution
        out = images.square(im, s.resolution, s.crop, s.background, seed=f"{s.seed}:{item.rel}")
        r.png = images.encode_png(out)
    except images.SkipImage as e:
        r.reason, r.detail = e.reason, e.detail
    except Exception as e:  # noqa: BLE001 - a bad file must never stop a 100k-image run
        r.reason, r.detail = images.CORRUPT, f"{type(e).__name__}: {e}"
    return r


def process_batch(batch: list[Item], s: Settings) -> list[Result]:
    return [process(item, s) for item in batch]
