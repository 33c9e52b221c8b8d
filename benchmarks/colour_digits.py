"""A labelled check set that nobody tuned on: scikit-learn's digits as coloured glyphs.

    python -m benchmarks.colour_digits /tmp/colour-digits
    smallgan prepare /tmp/colour-digits --out /tmp/colour-digits-prepared --resolution 32
    python -m benchmarks.quality --data /tmp/colour-digits-prepared --minutes 0 --steps 5700 --points 2

1,600 images in 10 class folders. Each glyph varies in what a user's small set varies in and the plain digits do
not: size (0.55-1x), rotation (+-35 degrees), position, stroke and background colour, on top of the writers'
own styles. A generator that draws every sample of a class in one colour at one place, as a collapsed class
does, scores a spread far below the real class's here (docs/variety.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 32


def glyph_image(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """One 8x8 scikit-learn digit as a coloured, scaled, rotated and placed 32x32 RGB image."""
    glyph = Image.fromarray((digit / 16.0 * 255).astype(np.uint8)).resize((24, 24), Image.BILINEAR)
    side = int(24 * rng.uniform(0.55, 1.0))
    glyph = glyph.resize((side, side), Image.BILINEAR).rotate(rng.uniform(-35, 35), Image.BILINEAR, expand=True)
    width, height = glyph.size
    x, y = rng.integers(0, max(1, SIZE + 1 - width)), rng.integers(0, max(1, SIZE + 1 - height))
    alpha = np.zeros((SIZE, SIZE, 1), np.float32)
    alpha[y : y + height, x : x + width, 0] = (np.asarray(glyph, np.float32) / 255)[: SIZE - y, : SIZE - x]
    ink, paper = rng.integers(60, 256, 3), rng.integers(0, 90, 3)
    return Image.fromarray((paper * (1 - alpha) + ink * alpha).astype(np.uint8))


def main(argv: list[str] | None = None) -> None:
    from sklearn.datasets import load_digits

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="folder to write (one sub-folder per class)")
    ap.add_argument("--n", type=int, default=1600, help="images (at most 1,797)")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    digits = load_digits()
    rng = np.random.default_rng(args.seed)
    for k, i in enumerate(rng.choice(len(digits.images), min(args.n, len(digits.images)), replace=False)):
        folder = args.out / str(digits.target[i])
        folder.mkdir(parents=True, exist_ok=True)
        glyph_image(digits.images[i], rng).save(folder / f"{k:04d}.png")
    print(f"wrote {args.out}: {min(args.n, len(digits.images))} images in 10 class folders")


if __name__ == "__main__":
    main()
