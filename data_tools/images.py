"""Decode one image safely, turn any mode into RGB, and resize it to a square.

Every failure is a :class:`SkipImage` with a stable reason name; nothing here is fatal to a run.
"""

from __future__ import annotations

import io
import math
import random
import re
import warnings
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

# Stable skip reasons (report.json keys). Duplicates are counted separately by the deduper.
EMPTY = "empty"                  # zero-byte file
UNREADABLE = "unreadable"        # the file could not be read (permissions, broken symlink, I/O error)
NOT_AN_IMAGE = "not_an_image"    # an image extension but not a format Pillow recognises
TOO_LARGE = "too_large"          # more pixels than the limit (decompression bomb guard)
TRUNCATED = "truncated"          # the data stops before the image is complete
CORRUPT = "corrupt"              # recognised but undecodable for another reason
UNSUPPORTED_MODE = "unsupported_mode"  # a pixel format we cannot turn into RGB
TOO_SMALL = "too_small"          # shorter side below --min-size
SKIP_REASONS = (EMPTY, UNREADABLE, NOT_AN_IMAGE, TOO_LARGE, TRUNCATED, CORRUPT, UNSUPPORTED_MODE, TOO_SMALL)

CROPS = ("center", "random", "none")
# 128 MP: a 108 MP phone photo passes; Pillow itself raises above 2 x 89.5 MP (its bomb error). A JPEG that
# large decodes at a reduced DCT scale (draft below), ~50 MB. Other formats decode whole, at ~10 bytes a pixel
# at peak (a 105 MP PNG took 1 GB in one worker, measured): they are limited to a quarter, 32 MP (~330 MB).
DEFAULT_MAX_PIXELS = 128_000_000
FULL_DECODE_SHARE = 4
# Pillow box-reduces by an integer factor first while keeping >= 3x the target, then applies Lanczos;
# its docs say a gap of 3 is indistinguishable from a full Lanczos resize in most cases, and much faster.
REDUCING_GAP = 3.0


class SkipImage(Exception):
    """An input that is reported and left out of the dataset."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def parse_background(value: str) -> tuple[int, int, int]:
    """``white``, ``black`` or ``#rrggbb`` -> an RGB triple (transparent pixels are composited on it)."""
    named = {"white": (255, 255, 255), "black": (0, 0, 0)}
    v = value.strip().lower()
    if v in named:
        return named[v]
    if re.fullmatch(r"#[0-9a-f]{6}", v):
        return int(v[1:3], 16), int(v[3:5], 16), int(v[5:7], 16)
    raise ValueError(f"--background must be white, black or #rrggbb, got {value!r}")


def decode(
    fp: BinaryIO,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    background: tuple[int, int, int] = (255, 255, 255),
    draft_side: int = 0,
    draft_on: str = "short",
) -> tuple[Image.Image, tuple[int, int]]:
    """Fully decode the first frame, apply EXIF orientation, return (RGB image, original upright (w, h)).

    ``draft_side`` lets a JPEG decode at a reduced DCT scale whose shorter (``draft_on="short"``)
    or longer side stays at least that large; every block is still decoded, so truncation is
    still detected, and the Lanczos resize that follows starts from >= 2x the target.
    """
    try:
        with warnings.catch_warnings():
            # We enforce our own limit below instead of relying on Pillow's global warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(fp)
    except Image.DecompressionBombError as e:
        raise SkipImage(TOO_LARGE, str(e)) from None
    except Image.UnidentifiedImageError:
        raise SkipImage(NOT_AN_IMAGE, "not a recognised image format") from None
    except (OSError, EOFError, SyntaxError, ValueError) as e:  # the file was readable; its header is not
        raise SkipImage(_decode_reason(e), str(e)) from None
    w, h = im.size
    if w * h > max_pixels:
        raise SkipImage(TOO_LARGE, f"{w}x{h} exceeds the {max_pixels:,}-pixel limit")
    if im.format != "JPEG" and w * h > max_pixels // FULL_DECODE_SHARE:
        raise SkipImage(TOO_LARGE, f"{w}x{h} {im.format} exceeds the {max_pixels // FULL_DECODE_SHARE:,}-pixel "
                                   "limit of formats decoded at full size (memory); a JPEG may have 4x that")
    if w == 0 or h == 0:
        raise SkipImage(CORRUPT, f"image has size {w}x{h}")
    if draft_side and im.format == "JPEG":
        scale = draft_side / (min(w, h) if draft_on == "short" else max(w, h))
        if scale <= 0.5:  # the DCT can only shrink by 1/2, 1/4, 1/8
            im.draft("RGB", (max(1, math.ceil(w * scale)), max(1, math.ceil(h * scale))))
    try:
        im.load()
    except (OSError, EOFError) as e:
        raise SkipImage(_decode_reason(e), str(e)) from None
    except Exception as e:  # noqa: BLE001 - Pillow plugins raise SyntaxError, ValueError, struct.error...
        raise SkipImage(CORRUPT, f"{type(e).__name__}: {e}") from None
    try:
        orientation = im.getexif().get(0x0112, 1)
        if orientation != 1:
            ImageOps.exif_transpose(im, in_place=True)
        if orientation in (5, 6, 7, 8):  # the EXIF rotations by 90 or 270 degrees
            w, h = h, w
    except Exception:  # noqa: BLE001 - a broken EXIF block should not lose an otherwise good image
        pass
    return to_rgb(im, background), (w, h)


def _decode_reason(e: BaseException) -> str:
    return TRUNCATED if isinstance(e, EOFError) or "truncated" in str(e).lower() else CORRUPT


def to_rgb(im: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Any Pillow mode -> RGB; transparency is composited over ``background``."""
    if im.mode == "RGB" and "transparency" not in im.info:
        return im
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        im = Image.fromarray(_to_8bit(im), "L")
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    try:
        if has_alpha:
            rgba = im.convert("RGBA")
            canvas = Image.new("RGBA", rgba.size, (*background, 255))
            return Image.alpha_composite(canvas, rgba).convert("RGB")
        return im.convert("RGB")
    except (ValueError, OSError) as e:  # e.g. LAB, HSV without a colour-management transform
        raise SkipImage(UNSUPPORTED_MODE, f"cannot convert mode {im.mode} to RGB: {e}") from None


def _to_8bit(im: Image.Image) -> np.ndarray:
    """16-bit and float greyscale -> uint8. Pillow's own convert clips instead of rescaling."""
    a = np.asarray(im, dtype=np.float64)
    if im.mode.startswith("I;16") or (im.mode == "I" and a.max(initial=0) > 255):
        a = a / 257.0  # 65535 -> 255
    elif im.mode == "F" and a.max(initial=0) <= 1.0:
        a = a * 255.0
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def square(
    im: Image.Image,
    resolution: int,
    crop: str = "center",
    background: tuple[int, int, int] = (255, 255, 255),
    seed: str = "",
) -> Image.Image:
    """Resize to ``resolution`` x ``resolution`` with an antialiased Lanczos filter.

    center: the central square; random: a square at a position drawn from ``seed`` (so a run is
    reproducible whatever the worker count); none: the whole image, padded with ``background``.
    """
    w, h = im.size
    size = (resolution, resolution)
    if crop == "none":
        s = resolution / max(w, h)
        inner = (max(1, round(w * s)), max(1, round(h * s)))
        canvas = Image.new("RGB", size, background)
        resized = im if inner == (w, h) else im.resize(inner, Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)
        canvas.paste(resized, ((resolution - inner[0]) // 2, (resolution - inner[1]) // 2))
        return canvas
    side = min(w, h)
    if crop == "random":
        rng = random.Random(seed)  # str seeds hash with SHA-512: stable across processes and runs
        left, top = rng.randint(0, w - side), rng.randint(0, h - side)
    else:
        left, top = (w - side) // 2, (h - side) // 2
    box = (left, top, left + side, top + side)
    if (w, h) == size:
        return im
    return im.resize(size, Image.Resampling.LANCZOS, box=box, reducing_gap=REDUCING_GAP)


def encode_png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()
