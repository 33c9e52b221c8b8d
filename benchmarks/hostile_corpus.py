"""`smallgan prepare` on a scraped-folder nightmare: a generated corpus of hostile files, timed, with peak memory.

    python -m benchmarks.hostile_corpus [--count 2000] [--workers 2] [--resolution 64]

The corpus (make_corpus; tests/test_prepare_hostile.py builds a small one): nested folders 21 deep, unicode,
spaces and newlines in names, uppercase and missing extensions, symlinks in and out of the tree, a symlink loop,
dangling links, zero-byte files, truncated JPEG/PNG/WebP/GIF/TIFF/BMP, animated GIF/WebP/PNG, 16-bit, CMYK and
palette-with-alpha images, EXIF-rotated JPEGs, 105 MP JPEG and PNG and a 144 MP PNG, 1 x 10000 px images,
unreadable permissions, random bytes, duplicates, and files rewritten while prepare reads them (Mutator).
check() says whether every file is accounted for exactly once; snapshot() that the source is untouched.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import random
import resource
import shutil
import stat
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
FORMATS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "TIFF": ".tiff", "BMP": ".bmp"}
# How names go wrong in scraped folders; the extension is added (or not) after.
NAME_STYLES = ("plain", "unicode", "spaces", "newline", "long", "dash", "upper-ext")


@dataclass
class Corpus:
    src: Path
    candidates: list[str] = field(default_factory=list)   # what prepare must account for (its walk's paths)
    ignored: int = 0                                      # files prepare must count as not images
    volatile: list[Path] = field(default_factory=list)    # files the Mutator rewrites while prepare runs
    unreadable: list[Path] = field(default_factory=list)  # chmod 000 (readable anyway when running as root)


def _image(rng: np.random.Generator, size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """Smooth colour fields plus grain: decodes like a photo, and every call is a different image."""
    w, h = size
    base = Image.fromarray((rng.random((4, 4, 3)) * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BILINEAR)
    grain = rng.normal(0, 8, (h, w, 3))
    im = Image.fromarray(np.clip(np.asarray(base, dtype=np.float32) + grain, 0, 255).astype(np.uint8))
    return im if mode == "RGB" else im.convert(mode)


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _special(rng: np.random.Generator) -> dict[str, tuple[bytes, str]]:
    """The hard formats: name -> (bytes, extension)."""
    im = _image(rng, (72, 56))
    frames = [_image(rng, (48, 48)) for _ in range(3)]
    exif = Image.Exif()
    exif[0x0112] = 6                                          # rotate 90: stored 80x48, shown 48x80
    pal = im.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    i16 = Image.fromarray(np.asarray(im.convert("L"), dtype=np.uint16) * 257)   # mode I;16
    return {
        "animated-gif": (_encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50), ".gif"),
        "animated-webp": (_encode(frames[0], "WEBP", save_all=True, append_images=frames[1:]), ".webp"),
        "apng": (_encode(frames[0], "PNG", save_all=True, append_images=frames[1:]), ".png"),
        "png16": (_encode(i16, "PNG"), ".png"),
        "cmyk-jpeg": (_encode(im.convert("CMYK"), "JPEG"), ".jpg"),
        "cmyk-tiff": (_encode(im.convert("CMYK"), "TIFF"), ".tif"),
        "palette-alpha": (_encode(pal, "PNG"), ".png"),
        "exif-rotated": (_encode(_image(rng, (80, 48)), "JPEG", exif=exif), ".jpeg"),
        "tall": (_encode(Image.new("RGB", (1, 10000), (9, 99, 199)), "PNG"), ".png"),
        "wide": (_encode(Image.new("L", (10000, 1), 128), "BMP"), ".bmp"),
        "garbage": (bytes(rng.integers(0, 256, 700, dtype=np.uint8)), ".png"),
        "empty": (b"", ".jpg"),
    }


def _huge() -> dict[str, tuple[bytes, str]]:
    """> 100 MP: a JPEG (decoded at 1/8 scale), a PNG (over the full-decode limit) and a 144 MP PNG."""
    return {
        "huge-jpeg": (_encode(Image.new("L", (10500, 10000), 77), "JPEG", quality=50), ".jpg"),
        "huge-png": (_encode(Image.new("1", (10500, 10000)), "PNG"), ".png"),
        "bomb-png": (_encode(Image.new("1", (12000, 12000)), "PNG"), ".png"),
    }


def _name(style: str, i: int, ext: str) -> str:
    stem = {"plain": f"img{i:05d}", "unicode": f"写真_ünï_{i}_🎨", "spaces": f"my photo  {i} (copy)",
            "newline": f"line\nbreak{i}", "long": f"{i}_" + "x" * 180, "dash": f"-rf {i}",
            "upper-ext": f"UP{i}"}[style]
    return stem + (ext.upper() if style == "upper-ext" else ext)


def make_corpus(root: Path, count: int = 2000, seed: int = 0, huge: bool = True) -> Corpus:
    """About `count` files (and links) under root/src; root/outside holds what links point out to."""
    root = Path(root)
    src, outside = root / "src", root / "outside"
    rng, pick = np.random.default_rng(seed), random.Random(seed)
    corpus = Corpus(src)
    deep = src / "deep" / Path(*[f"level {k:02d}" for k in range(20)])
    folders = [src / "plain", src / "名前 with spaces", src / "UPPER CASE", deep, src / "new\nline"]
    for d in [*folders, outside / "shared"]:
        d.mkdir(parents=True, exist_ok=True)

    def add(path: Path, data: bytes | None = None, link: str | Path | None = None) -> None:
        if link is not None:
            os.symlink(link, path)
        else:
            path.write_bytes(data or b"")
        rel = path.relative_to(src).as_posix()
        name = path.name
        if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS and not name.startswith("."):
            corpus.candidates.append(rel)
        else:
            corpus.ignored += 1

    # Structure: a loop back to an ancestor, a folder linked in from outside, files in the root (no class).
    os.symlink("..", src / "plain" / "loop")
    for k in range(3):
        (outside / "shared" / f"out{k}.png").write_bytes(_encode(_image(rng, (64, 64)), "PNG"))
    os.symlink(outside / "shared", src / "linked from outside")
    for k in range(3):
        corpus.candidates.append(f"linked from outside/out{k}.png")
    add(src / "in the root.jpg", _encode(_image(rng, (64, 64)), "JPEG"))
    locked = folders[0] / "locked.png"                        # chmod 000 (more of them below, at random)
    add(locked, _encode(_image(rng, (48, 48)), "PNG"))
    locked.chmod(0)
    corpus.unreadable.append(locked)

    specials = {**_special(rng), **(_huge() if huge else {})}
    written: list[Path] = []
    i = 0
    for name, (data, ext) in specials.items():
        add(folders[i % len(folders)] / f"{name}{ext}", data)
        i += 1
    for k, fmt in enumerate(FORMATS):                          # truncated, one per format
        data = _encode(_image(rng, (64, 64)), fmt)
        add(folders[k % len(folders)] / f"truncated{k}{FORMATS[fmt]}", data[: len(data) // 2])
    while len(corpus.candidates) + corpus.ignored < count:
        folder = folders[i % len(folders)]
        roll = pick.random()
        if roll < 0.05 and written:                            # exact duplicate (bytes copied)
            add(folder / _name("plain", i, ".png"), pick.choice(written).read_bytes())
        elif roll < 0.08 and written:                          # symlink to a file in the tree
            add(folder / f"link{i}.png", link=os.path.relpath(pick.choice(written), folder))
        elif roll < 0.10:                                      # symlink out of the tree
            target = outside / f"target{i}.jpg"
            target.write_bytes(_encode(_image(rng, (48, 48)), "JPEG"))
            add(folder / f"outlink{i}.jpg", link=target)
        elif roll < 0.11:
            add(folder / f"dangling{i}.jpg", link=outside / "nowhere.jpg")
        elif roll < 0.14:                                      # not images by name: no extension, text, hidden
            kind = pick.choice(["", ".txt", ".png.json"])
            add(folder / f"noext{i}{kind}", _encode(_image(rng, (40, 40)), "PNG"))
        elif roll < 0.15:
            add(folder / f".hidden{i}.png", _encode(_image(rng, (40, 40)), "PNG"))
        elif roll < 0.16:
            path = folder / f"locked{i}.png"
            add(path, _encode(_image(rng, (48, 48)), "PNG"))
            path.chmod(0)
            corpus.unreadable.append(path)
        else:
            fmt = pick.choice(list(FORMATS))
            size = (pick.randint(40, 96), pick.randint(40, 96))
            path = folder / _name(pick.choice(NAME_STYLES), i, FORMATS[fmt])
            add(path, _encode(_image(rng, size), fmt))
            written.append(path)
            if roll > 0.985 or len(corpus.volatile) < 2:
                corpus.volatile.append(path)
        i += 1
    return corpus


class Mutator(threading.Thread):
    """Rewrites the volatile files in place (cut short, garbage, back) until stopped, then restores their
    bytes and times: 'files that change while being read'."""

    def __init__(self, paths: list[Path]) -> None:
        super().__init__(daemon=True)
        self.original = {p: (p.read_bytes(), os.stat(p)) for p in paths}
        self._done = threading.Event()

    def run(self) -> None:
        k = 0
        while not self._done.is_set():
            for p, (data, _) in self.original.items():
                with open(p, "r+b") as f:
                    f.truncate(len(data) // (2 + k % 3))
                    f.seek(0, os.SEEK_END)
                    f.write(b"\0\xff" * (k % 5))
            k += 1
            time.sleep(0.001)

    def stop(self) -> None:
        self._done.set()
        self.join()
        for p, (data, st) in self.original.items():
            p.write_bytes(data)
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under root, links not followed: kind, mode, size, mtime and a content or target hash."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                digest = os.readlink(p)
            elif stat.S_ISREG(st.st_mode) and os.access(p, os.R_OK):
                digest = hashlib.sha256(Path(p).read_bytes()).hexdigest()
            else:
                digest = ""
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_size if not stat.S_ISDIR(st.st_mode) else 0,
                                             st.st_mtime_ns, digest)
    return out


def check(corpus: Corpus, out: Path, report: dict) -> list[str]:
    """What is wrong with a preparation of the corpus: [] when every file is accounted for exactly once."""
    import datasets

    kept = list(datasets.load_from_disk(str(out))["source"])
    listed = kept + [f["path"] for f in report["skipped_files"]] + [f["path"] for f in report["duplicate_files"]]
    problems = [f"{p!r} accounted for {n} times" for p, n in Counter(listed).items() if n > 1]
    problems += [f"{p!r} never accounted for" for p in sorted(set(corpus.candidates) - set(listed))]
    problems += [f"{p!r} is not in the corpus" for p in sorted(set(listed) - set(corpus.candidates))]
    if report["found"] != len(corpus.candidates) or report["ignored"] != corpus.ignored:
        problems.append(f"found {report['found']} / ignored {report['ignored']}, expected "
                        f"{len(corpus.candidates)} / {corpus.ignored}")
    problems += [f"{f['path']!r} skipped without a reason" for f in report["skipped_files"] if not f["reason"]]
    return problems


def peak_rss_mib() -> tuple[float, float]:
    """Peak resident memory of this process and of its largest (reaped) child, in MiB (Linux: KiB units)."""
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)


def _prepare_measured(src: str, out: str, resolution: int, workers: int, volatile: list[Path]) -> tuple:
    """Run in a fresh process, so that its peak memory is prepare's alone: (seconds, own and largest worker
    peak RSS in MiB). The Mutator runs beside it."""
    from rich.console import Console

    from data_tools.prepare import PrepareOptions, prepare

    mutator = Mutator(volatile)
    mutator.start()
    t = time.perf_counter()
    try:
        prepare(src, Path(out), PrepareOptions(resolution=resolution, workers=workers), console=Console(quiet=True))
    finally:
        mutator.stop()
    return (time.perf_counter() - t, *peak_rss_mib())


def main() -> None:
    import json
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--resolution", type=int, default=64)
    args = ap.parse_args()
    spawn = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="smallgan-hostile-") as tmp:
        t = time.perf_counter()
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:      # its peak memory stays out of the figures
            corpus = pool.submit(make_corpus, Path(tmp), args.count).result()
        total = len(corpus.candidates) + corpus.ignored
        print(f"generated {total} files ({len(corpus.candidates)} with image names) in {time.perf_counter() - t:.1f} s;"
              f" {os.cpu_count()} logical cores, running as uid {os.getuid()}")
        before = snapshot(corpus.src)
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            wall, main_rss, worker_rss = pool.submit(_prepare_measured, str(corpus.src), str(Path(tmp) / "out"),
                                                     args.resolution, args.workers, corpus.volatile).result()
        report = json.loads((Path(tmp) / "out" / "report.json").read_text())
        problems = check(corpus, Path(tmp) / "out", report)
        unchanged = snapshot(corpus.src) == before
        skipped = {k: v for k, v in report["skipped"].items() if v}
        print(f"workers={args.workers}: {total / wall:.0f} files/s ({total} files in {wall:.1f} s); used "
              f"{report['used']}, duplicates {sum(report['duplicates'].values())}, skipped {skipped}, ignored "
              f"{report['ignored']}, symlink loops {report['symlink_loops']}")
        print(f"peak RSS: prepare's process {main_rss:.0f} MiB, largest worker {worker_rss:.0f} MiB; every file "
              f"accounted for once: {not problems}; source unchanged: {unchanged}")
        for p in problems[:20]:
            print("  problem:", p)
        for path in corpus.unreadable:                # let the temporary folder be removed
            path.chmod(0o644)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
