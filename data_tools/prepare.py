"""`smallgan prepare`: any image source -> a Hugging Face dataset of square PNGs at one resolution.

Output folder (written atomically, never over an existing one without ``force``)::

    <out>/data-*.arrow, dataset_info.json, state.json   save_to_disk: image (PNG), label (ClassLabel), source
    <out>/smallgan.json                                 resolution, class names, counts, options, version
    <out>/report.json                                   every input accounted for, with skip reasons
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from data_tools import hub, images
from data_tools.dedupe import DEDUPE_MODES, Deduper
from data_tools.report import Report, print_summary
from data_tools.sources import Source, open_builtin, open_folder
from data_tools.worker import Item, Result, Settings, process_batch
from smallgan.errors import SmallganError

FORMAT = "smallgan-prepared"
FORMAT_VERSION = 1
META_FILE = "smallgan.json"
REPORT_FILE = "report.json"
LABEL_MODES = ("auto", "none")
CHUNK = 16            # items per task sent to a worker
PENDING_PER_WORKER = 4  # tasks in flight per worker: bounds memory whatever the consumer's speed


@dataclass
class PrepareOptions:
    resolution: int = 64
    crop: str = "center"              # center | random | none (pad to square with the background)
    labels: str = "auto"              # auto: sub-folders are classes when there are >= 2; none: one class
    min_size: int = 32                # shorter side in pixels below which an image is skipped
    dedupe: str = "exact"             # exact | perceptual | off
    background: str = "white"         # composited under transparency, and the padding for crop=none
    workers: int = 0                  # processes; 0 = all available cores
    max_pixels: int = images.DEFAULT_MAX_PIXELS  # larger images are skipped as too_large
    split: str = "train"              # Hugging Face sources only
    seed: int = 0                     # crop=random positions
    # The images keep their meaning when mirrored (faces, animals, landscapes; not text, digits or logos):
    # recorded in smallgan.json, and training with data.flip = "dataset" (the default) then flips them.
    flip: bool = False

    def validate(self) -> tuple[int, int, int]:
        """Check every value; return the parsed background colour."""
        if not 8 <= self.resolution <= 2048:
            raise SmallganError(f"--resolution must be between 8 and 2048, got {self.resolution}")
        if self.crop not in images.CROPS:
            raise SmallganError(f"--crop must be one of {', '.join(images.CROPS)}, got {self.crop!r}")
        if self.labels not in LABEL_MODES:
            raise SmallganError(f"--labels must be one of {', '.join(LABEL_MODES)}, got {self.labels!r}")
        if self.dedupe not in DEDUPE_MODES:
            raise SmallganError(f"--dedupe must be one of {', '.join(DEDUPE_MODES)}, got {self.dedupe!r}")
        if self.min_size < 1:
            raise SmallganError(f"--min-size must be >= 1, got {self.min_size}")
        if self.workers < 0:
            raise SmallganError(f"--workers must be >= 0 (0 = all cores), got {self.workers}")
        if self.max_pixels < 1:
            raise SmallganError(f"max_pixels must be >= 1, got {self.max_pixels}")
        try:
            return images.parse_background(self.background)
        except ValueError as e:
            raise SmallganError(str(e)) from None


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # respects container / taskset limits
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def read_meta(folder: Path) -> dict[str, Any] | None:
    """smallgan.json of a prepared dataset, or None when ``folder`` is not one."""
    try:
        meta = json.loads((Path(folder) / META_FILE).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == FORMAT else None


# A hub id: "name" or "owner/name" (letters, digits, "-", "_", ".").
HUB_ID = re.compile(r"^[A-Za-z0-9_][\w.-]*(/[\w.-]+)?$")


def open_source(source: str, labels: str, split: str, exclude: tuple[Path, ...] = ()) -> Source:
    """Dispatch on what ``source`` is (see ``smallgan prepare --help``)."""
    if source.startswith("builtin:"):
        return open_builtin(source.split(":", 1)[1])
    if source.startswith(("hf:", "imagefolder:")):
        return hub.open_hf(source, labels, split)
    path = Path(source).expanduser()
    if path.is_dir():
        if hub.is_saved_dataset(path):
            return hub.open_hf(str(path), labels, split)
        return open_folder(path, labels, exclude=exclude)
    if path.exists():
        raise SmallganError(f"{source} is a file; pass the folder that contains the images")
    if HUB_ID.match(source):  # "faces" or "owner/name" that is not a local folder: try the hub
        try:
            return hub.open_hf(f"hf:{source}", labels, split)
        except SmallganError as e:
            raise SmallganError(f"no folder {source} here, and {e}") from None
    raise SmallganError(f"folder {source} does not exist (for a Hugging Face dataset write hf:owner/name)")


def prepare(
    source: str | Path | None,
    out: str | Path | None = None,
    options: PrepareOptions | None = None,
    *,
    builtin: str | None = None,
    force: bool = False,
    console: Any = None,
) -> Report:
    """Prepare ``source`` (a folder, ``builtin:NAME``, ``hf:NAME``, ``imagefolder:PATH`` or a saved dataset)."""
    from rich.console import Console

    opts = options or PrepareOptions()
    background = opts.validate()
    console = console or Console(stderr=True)
    if builtin:
        if source:
            raise SmallganError("give either a SOURCE folder or --builtin NAME, not both")
        source = f"builtin:{builtin}"
    if not source:
        raise SmallganError("nothing to prepare: give a SOURCE folder or --builtin shapes|digits")
    source = str(source)
    out_arg = Path(out).expanduser() if out is not None else None
    src = open_source(source, opts.labels, opts.split, exclude=(out_arg,) if out_arg else ())
    try:
        out_path = out_arg or Path(src.default_out.replace("{resolution}", str(opts.resolution)))
        _check_output(out_path, source, force)
        return _run(src, out_path, opts, background, force, console)
    finally:
        src.cleanup()


def _check_output(out: Path, source: str, force: bool) -> None:
    out_abs = out.absolute()
    src = Path(source).expanduser()
    if src.exists() and (out_abs == src.absolute() or out_abs in src.absolute().parents):
        raise SmallganError(f"--out {out} would replace the source folder; choose another --out")
    if out.exists() or out.is_symlink():
        if not force:
            raise SmallganError(f"output {out} already exists; pass --force to overwrite it, or choose --out")
        if not out.is_dir() or (any(out.iterdir()) and read_meta(out) is None):
            raise SmallganError(f"output {out} exists and is not a prepared dataset; refusing to overwrite it")


def _run(
    src: Source, out: Path, opts: PrepareOptions, background: tuple[int, int, int], force: bool, console: Any
) -> Report:
    import datasets

    start = time.perf_counter()
    report = Report(source=src.name, output=str(out), found=src.total, options=asdict(opts))
    report.ignored, report.ignored_extensions = src.walk.ignored, dict(src.walk.ignored_extensions)
    report.hidden_dirs, report.symlink_loops = src.walk.hidden_dirs, src.walk.symlink_loops
    report.per_class = dict.fromkeys(src.class_names, 0)
    for rel, reason in src.prelabel_skips:
        report.skip(rel, reason, "a file next to the class folders belongs to no class")
    settings = Settings(opts.resolution, opts.crop, opts.min_size, opts.dedupe, background, opts.max_pixels, opts.seed)
    n_items = src.total - len(src.prelabel_skips)
    workers = opts.workers or available_cores()
    workers = max(1, min(workers, -(-n_items // CHUNK)))  # no idle processes for a handful of images

    out.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging = out.parent / f".{out.name}.tmp-{tag}"
    cache = out.parent / f".{out.name}.cache-{tag}"
    features = datasets.Features({
        "image": datasets.Image(),                              # PNG bytes at the target resolution
        "label": datasets.ClassLabel(names=src.class_names),
        "source": datasets.Value("string"),                     # path relative to the source folder
    })
    bars_were_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # our own rich bar replaces the "Generating train split" one
    try:
        rows = _rows(src, settings, workers, report, console)
        # A fresh fingerprint: the generator is not hashed, and the throw-away cache is never reused.
        try:
            ds = datasets.Dataset.from_generator(rows, features=features, cache_dir=str(cache), fingerprint=tag)
        except ValueError:  # datasets refuses a split with no rows; say why instead
            if report.used or not report.accounted():
                raise
        except datasets.exceptions.DatasetGenerationError as e:
            if isinstance(e.__cause__, SmallganError):  # raised in our generator, wrapped by datasets
                raise e.__cause__ from None
            raise
        if report.used == 0:
            print_summary(report, console)
            raise SmallganError(f"no usable images in {src.name} ({report.found} found, none kept); see the table")
        ds.save_to_disk(str(staging))
        del ds
        report.seconds = time.perf_counter() - start
        report.images_per_second = report.found / report.seconds if report.seconds else 0.0
        report.write(staging / REPORT_FILE)
        _write_meta(staging / META_FILE, src, opts, report)
        _swap_in(staging, out, force)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)
        if bars_were_on:
            datasets.enable_progress_bars()
    print_summary(report, console)
    return report


def _rows(
    src: Source, s: Settings, workers: int, report: Report, console: Any
) -> Callable[[], Iterator[dict[str, Any]]]:
    """A generator factory for ``Dataset.from_generator``: rows in source order, deduplicated."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    def gen() -> Iterator[dict[str, Any]]:
        deduper = Deduper(s.dedupe)
        kept_names: list[str] = []  # row id -> source path, to name the kept file of a duplicate
        progress = Progress(
            TextColumn("preparing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            console=console, transient=False,
        )
        with progress:
            task = progress.add_task("prepare", total=report.found, completed=sum(report.skipped.values()))
            for r in _results(src.items(), s, workers):
                progress.advance(task)
                if r.reason:
                    report.skip(r.rel, r.reason, r.detail)
                    continue
                match = deduper.check(len(kept_names), r.exact, r.phash)
                if match is not None:
                    report.duplicate(r.rel, match.kind, kept_names[match.kept], match.distance)
                    continue
                kept_names.append(r.rel)
                report.used += 1
                report.upscaled += r.upscaled
                report.per_class[src.class_names[r.label]] += 1
                yield {"image": {"bytes": r.png, "path": None}, "label": r.label, "source": r.rel}

    return gen


def _results(items: Iterator[Item], s: Settings, workers: int) -> Iterator[Result]:
    """Results in item order, computed by ``workers`` processes in chunks of CHUNK items.

    At most PENDING_PER_WORKER chunks per worker are in flight, so memory stays bounded when the
    Arrow writer is slower than the decoders (Pool.imap reads ahead without limit). A process
    pool executor, unlike Pool, raises instead of hanging if a decoder crashes its process.
    """
    chunks = iter(lambda: list(islice(items, CHUNK)), [])
    if workers <= 1:
        for chunk in chunks:
            yield from process_batch(chunk, s)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn: a parent that initialised CUDA or OpenMP (training preparing on the fly) cannot fork safely.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    pending: deque = deque()
    try:
        for chunk in chunks:
            pending.append((chunk, pool.submit(process_batch, chunk, s)))
            if len(pending) >= workers * PENDING_PER_WORKER:
                yield from _oldest(pending)
        while pending:
            yield from _oldest(pending)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _oldest(pending: deque) -> list[Result]:
    from concurrent.futures.process import BrokenProcessPool

    chunk, future = pending.popleft()
    try:
        return future.result()
    except BrokenProcessPool:
        raise SmallganError(
            f"a worker process died while decoding one of {chunk[0].rel} .. {chunk[-1].rel}; "
            "rerun with --workers 1 to find the file"
        ) from None


def _write_meta(path: Path, src: Source, opts: PrepareOptions, report: Report) -> None:
    from smallgan import __version__

    meta = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "resolution": opts.resolution,
        "class_names": src.class_names,
        "num_images": report.used,
        "flip": opts.flip,
        "class_counts": report.per_class,
        "source": src.name,
        "source_kind": src.kind,
        "source_fingerprint": src.fingerprint,
        "options": asdict(opts),
        "counts": {
            "found": report.found, "used": report.used, "skipped": report.skipped, "duplicates": report.duplicates,
        },
        "smallgan_version": __version__,
    }
    path.write_text(json.dumps(meta, indent=2) + "\n")


def _swap_in(staging: Path, out: Path, force: bool) -> None:
    """Rename the finished folder into place; an old output is moved aside first and removed last."""
    old = None
    if out.exists() or out.is_symlink():
        if not force:  # appeared while we were working (another process)
            raise SmallganError(f"output {out} appeared while preparing; pass --force to overwrite it")
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(out, old)
    try:
        os.replace(staging, out)
    except OSError:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
