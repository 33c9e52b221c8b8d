"""Built-in datasets, no download: procedural shapes (a fixed seed, rendered supersampled for clean small
images), scikit-learn's handwritten digits (a real labelled set that the scikit-learn wheel ships) and crops
of the colour photographs that the scikit-image wheel ships (a few-shot set of real photographs)."""

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


# scikit-image's colour photographs (skimage.data): name in this set -> (loader, crop box as fractions of width
# and height). The boxes keep crops off the retina's black surround and the rocket's empty sky.
PHOTOS: dict[str, tuple[str, tuple[float, float, float, float]]] = {
    "astronaut": ("astronaut", (0.0, 0.0, 1.0, 1.0)),
    "cat": ("chelsea", (0.0, 0.0, 1.0, 1.0)),
    "coffee": ("coffee", (0.0, 0.0, 1.0, 1.0)),
    "rocket": ("rocket", (0.0, 0.35, 1.0, 1.0)),
    "motorcycle": ("stereo_motorcycle", (0.0, 0.0, 1.0, 1.0)),
    "galaxies": ("hubble_deep_field", (0.0, 0.0, 1.0, 1.0)),
    "tissue": ("immunohistochemistry", (0.0, 0.0, 1.0, 1.0)),
    "retina": ("retina", (0.1, 0.2, 0.7, 0.8)),
}
PHOTO_CLASSES = tuple(PHOTOS)
CROPS_PER_PHOTO = 25          # 8 x 25 = 200 images: a few-shot set
CROP_SIDE = (0.35, 0.65)      # a crop's side, as a fraction of its box's shorter side


@functools.lru_cache(maxsize=1)
def _photos() -> tuple[Image.Image, ...]:
    try:
        import skimage.data
    except ImportError:
        from smallgan.errors import SmallganError

        raise SmallganError("builtin:photos needs scikit-image, which ships the photographs: "
                            "pip install scikit-image") from None
    out = []
    for loader, box in PHOTOS.values():
        array = getattr(skimage.data, loader)()
        im = Image.fromarray(array[0] if isinstance(array, tuple) else array).convert("RGB")  # motorcycle: left view
        w, h = im.size
        out.append(im.crop((round(box[0] * w), round(box[1] * h), round(box[2] * w), round(box[3] * h))))
    return tuple(out)


def render_photo(index: int, resolution: int, seed: int = 2024) -> tuple[Image.Image, int]:
    """The ``index``-th crop of scikit-image's photographs: (RGB image, photograph index).

    Photographs cycle (crop ``index`` comes from photograph ``index % 8``), so every prefix is balanced; the
    square crop's side and place are a pure function of (seed, index), and it is downsampled (Lanczos, never
    up: the smallest crop is over 100 px) to ``resolution``.
    """
    photos = _photos()
    label = index % len(photos)
    im = photos[label]
    rng = random.Random(seed * 1_000_003 + index)
    side = round(min(im.size) * rng.uniform(*CROP_SIDE))
    x, y = rng.randrange(im.size[0] - side + 1), rng.randrange(im.size[1] - side + 1)
    return im.crop((x, y, x + side, y + side)).resize((resolution, resolution), Image.Resampling.LANCZOS), label


def _photo_labels() -> list[int]:
    _photos()   # a missing scikit-image is reported before any work starts
    return [i % len(PHOTO_CLASSES) for i in range(len(PHOTO_CLASSES) * CROPS_PER_PHOTO)]


BUILTINS = {
    "shapes": BuiltinSpec("shapes", SHAPE_CLASSES, count=600, seed=1234, render=render_shape),
    "digits": BuiltinSpec("digits", DIGIT_CLASSES, count=1797, seed=0, render=render_digit,
                          labels=lambda: [int(t) for t in _digits()[1]]),
    "photos": BuiltinSpec("photos", PHOTO_CLASSES, count=len(PHOTO_CLASSES) * CROPS_PER_PHOTO, seed=2024,
                          render=render_photo, labels=_photo_labels),
}


def builtin_spec(name: str) -> BuiltinSpec:
    if name not in BUILTINS:
        raise KeyError(name)
    return BUILTINS[name]
