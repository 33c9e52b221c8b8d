"""Duplicate detection: exact (hash of decoded pixels) and perceptual (pHash within a Hamming radius).

Hashes are computed in the workers; :class:`Deduper` runs in the main process over rows in their
stable order, so "keep the first" is well defined whatever the worker count.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from PIL import Image

DEDUPE_MODES = ("exact", "perceptual", "off")
EXACT = "duplicate_exact"
PERCEPTUAL = "duplicate_perceptual"

# 64-bit pHash: re-encoded or resized copies of one picture land within a few bits of each other,
# unrelated photos around 32 bits apart. 4 is conservative: few false positives on aligned faces.
PHASH_RADIUS = 4


def pixel_hash(im: Image.Image) -> bytes:
    """Digest of the decoded pixels: a PNG and a lossless re-save of it hash alike, EXIF and names aside."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{im.mode}{im.size}".encode())
    h.update(im.tobytes())
    return h.digest()


def perceptual_hash(im: Image.Image) -> int:
    """64-bit DCT hash (imagehash.phash) of the image, as an int."""
    import imagehash  # imported only when perceptual dedupe is on

    bits = imagehash.phash(im, hash_size=8).hash.flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


@dataclass
class Match:
    kind: str        # EXACT or PERCEPTUAL
    kept: int        # row id of the first occurrence, which stays in the dataset
    distance: int    # Hamming distance of the pHashes (0 for exact)


class Deduper:
    """Remembers what was kept; ``check`` returns a :class:`Match` for a duplicate, else records the row."""

    def __init__(self, mode: str, radius: int = PHASH_RADIUS) -> None:
        if mode not in DEDUPE_MODES:
            raise ValueError(f"dedupe mode must be one of {DEDUPE_MODES}, got {mode!r}")
        self.mode = mode
        self.radius = radius
        self._exact: dict[bytes, int] = {}
        # Multi-index hashing: split the 64 bits into radius + 1 bands. Two hashes within `radius`
        # bits agree exactly on at least one band (pigeonhole), so only band-mates are compared.
        n = radius + 1
        edges = [round(i * 64 / n) for i in range(n + 1)]
        self._bands = [(lo, (1 << (hi - lo)) - 1) for lo, hi in zip(edges, edges[1:])]
        self._index: list[dict[int, list[tuple[int, int]]]] = [{} for _ in self._bands]

    def check(self, row: int, exact: bytes | None, phash: int | None) -> Match | None:
        if self.mode == "off":
            return None
        if exact is not None and exact in self._exact:
            return Match(EXACT, self._exact[exact], 0)
        perceptual = self.mode == "perceptual" and phash is not None
        if perceptual:
            keys = [(phash >> lo) & mask for lo, mask in self._bands]
            best: tuple[int, int] | None = None  # (distance, row): the closest, then the earliest
            for band, key in zip(self._index, keys):
                for other_row, other in band.get(key, ()):
                    d = (phash ^ other).bit_count()
                    if d <= self.radius and (best is None or (d, other_row) < best):
                        best = (d, other_row)
            if best is not None:
                return Match(PERCEPTUAL, best[1], best[0])
            for band, key in zip(self._index, keys):
                band.setdefault(key, []).append((row, phash))
        if exact is not None:
            self._exact[exact] = row
        return None
