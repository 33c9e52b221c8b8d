"""Procedural built-in datasets: no download, a fixed seed, rendered supersampled for clean small images."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

SHAPE_CLASSES = ("circle", "square", "triangle")
SUPERSAMPLE = 4  # drawn at 4x then downsampled with Lanczos: smooth edges at 32-64 px


@dataclass(frozen=True)
class BuiltinSpec:
    name: str
    class_names: tuple[str, ...]
    count: int
    seed: int


BUILTINS = {"shapes": BuiltinSpec("shapes", SHAPE_CLASSES, count=600, seed=1234)}


def builtin_spec(name: str) -> BuiltinSpec:
    if name not in BUILTINS:
        raise KeyError(name)
    return BUILTINS[name]


def _contrasting_colours(rng: random.Random) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """A background and a shape colour far enough apart in luminance to read at 32 px."""
    while True:
        bg = tuple(rng.randrange(256) for _ in range(3))
        fg = tuple(rng.randrange(256) for _ in range(3))
        luma = lambda c: 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]  # noqa: E731 - ITU-R BT.601 weights
        if abs(luma(bg) - luma(fg)) > 70:
            return bg, fg  # type: ignore[return-value]


def render_shape(index: int, resolution: int, seed: int = 1234) -> tuple[Image.Image, int]:
    """The ``index``-th image of the shapes set at ``resolution``: (RGB image, class index).

    Classes cycle circle, square, triangle so every prefix of the set is balanced. Each image is a
    pure function of (seed, index): the set is identical on every machine and for any worker count.
    """
    rng = random.Random(seed * 1_000_003 + index)
    label = index % len(SHAPE_CLASSES)
    big = resolution * SUPERSAMPLE
    bg, fg = _contrasting_colours(rng)
    im = Image.new("RGB", (big, big), bg)
    draw = ImageDraw.Draw(im)
    radius = big * rng.uniform(0.18, 0.38)
    cx = rng.uniform(radius, big - radius)
    cy = rng.uniform(radius, big - radius)
    if SHAPE_CLASSES[label] == "circle":
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=fg)
    else:
        sides = 4 if SHAPE_CLASSES[label] == "square" else 3
        angle = rng.uniform(0, 2 * math.pi)
        turns = [angle + 2 * math.pi * k / sides for k in range(sides)]
        points = [(cx + radius * math.cos(t), cy + radius * math.sin(t)) for t in turns]
        draw.polygon(points, fill=fg)
    return im.resize((resolution, resolution), Image.Resampling.LANCZOS), label
