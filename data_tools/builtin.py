"""Built-in datasets, no download: procedural shapes (a fixed seed, rendered supersampled for clean small
images) and scikit-learn's handwritten digits (a real labelled set that the scikit-learn wheel ships)."""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, ImageDraw

SHAPE_CLASSES = ("circle", "square", "triangle")
SUPERSAMPLE = 4  # drawn at 4x then downsampled with Lanczos: smooth edges at 32-64 px


DIGIT_CLASSES = tuple(str(d) for d in range(10))


@dataclass(frozen=True)
class BuiltinSpec:
    name: str
    class_names: tuple[str, ...]
    count: int
    seed: int
    # (index, resolution, seed) -> (RGB image, class index); a pure function, so any worker renders any item.
    render: Callable[[int, int, int], tuple[Image.Image, int]]
    labels: Callable[[], list[int]] | None = None   # None: classes cycle (index % number of classes)

    def label_list(self) -> list[int]:
        return self.labels() if self.labels is not None else [i % len(self.class_names) for i in range(self.count)]


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


@functools.lru_cache(maxsize=1)
def _digits() -> tuple:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        from smallgan.errors import SmallganError

        raise SmallganError("builtin:digits needs scikit-learn, which ships the images: pip install scikit-learn") from None
    d = load_digits()
    return d.images, d.target


def render_digit(index: int, resolution: int, seed: int = 0) -> tuple[Image.Image, int]:
    """The ``index``-th of scikit-learn's 1,797 handwritten digits (UCI optdigits: 8x8, 17 grey levels),
    as white on black RGB upscaled to ``resolution`` (bicubic: smooth strokes rather than 8x8 blocks)."""
    images, targets = _digits()
    grey = Image.frombytes("L", (8, 8), bytes(int(v * 255 / 16 + 0.5) for v in images[index].reshape(-1)))
    return grey.resize((resolution, resolution), Image.Resampling.BICUBIC).convert("RGB"), int(targets[index])


BUILTINS = {
    "shapes": BuiltinSpec("shapes", SHAPE_CLASSES, count=600, seed=1234, render=render_shape),
    "digits": BuiltinSpec("digits", DIGIT_CLASSES, count=1797, seed=0, render=render_digit,
                          labels=lambda: [int(t) for t in _digits()[1]]),
}


def builtin_spec(name: str) -> BuiltinSpec:
    if name not in BUILTINS:
        raise KeyError(name)
    return BUILTINS[name]
