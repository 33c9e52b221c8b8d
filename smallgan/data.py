"""Prepared dataset -> tensors. The training loop and the metrics use exactly these three things:

- :func:`resolve_dataset`: ``builtin:NAME``, a prepared folder or a raw image folder -> a prepared folder
- :func:`load_prepared`: a prepared folder -> :class:`PreparedImages` (all images decoded once, uint8)
- :func:`to_float`: uint8 images -> float in [-1, 1]

and :func:`random_flip`, the horizontal flip both :class:`PreparedImages` and the training loop's real stream use.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from smallgan.errors import SmallganError

log = logging.getLogger(__name__)

DEFAULT_CACHE = "~/.cache/smallgan"  # overridden by the SMALLGAN_CACHE environment variable
PREPARED_SUFFIX = "-prepared"        # `smallgan prepare ./faces` writes ./faces-prepared (the recipes' data.path)
URI_PREFIXES = ("builtin:", "hf:", "imagefolder:")


def check_data_path(path: str, resolution: int) -> None:
    """Refuse, in one line and before a run writes anything, a data.path that names nothing on this machine."""
    if not path:
        raise SmallganError("no dataset: pass --data DIR (a folder `smallgan prepare` wrote, an image folder, "
                            "hf:NAME or builtin:shapes), or a recipe that names one")
    if path.startswith(URI_PREFIXES) or Path(path).expanduser().exists():
        return
    where = Path(path).expanduser().absolute()
    looked = "" if str(where) == path else f" (looked for {where})"
    raise SmallganError(f"dataset {path} does not exist{looked}; make it with `{prepare_command(path, resolution)}`, "
                        "or pass --data DIR")


def prepare_command(path: str, resolution: int) -> str:
    """The `smallgan prepare` command that writes `path` (at `resolution`)."""
    folder = Path(path)
    size = "" if resolution == 64 else f" --resolution {resolution}"    # 64: prepare's default
    if not folder.name.endswith(PREPARED_SUFFIX):
        return f"smallgan prepare ./my-images --out {path}{size}"
    source = str(folder.with_name(folder.name[:-len(PREPARED_SUFFIX)]))
    return f"smallgan prepare {source if folder.is_absolute() or source.startswith('.') else './' + source}{size}"


def content_fingerprint(images: torch.Tensor, labels: torch.Tensor, class_names: list[str]) -> str:
    """What a run was trained on, by content: the same images, labels and class names anywhere on disk give the
    same value (a run continues on a copy of its data at a new path, and refuses other images)."""
    digest = hashlib.sha256(json.dumps(list(class_names)).encode())
    digest.update(labels.detach().to("cpu", torch.int64).numpy().tobytes())
    digest.update(images.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def to_float(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1] (x / 127.5 - 1), the range G's tanh output lives in."""
    return images_uint8.float().div_(127.5).sub_(1.0)


def random_flip(images: torch.Tensor) -> torch.Tensor:
    """Each image of a (N, C, H, W) batch mirrored left-right with probability 1/2.

    The coin flips come from torch's global RNG on the images' device: the training loop seeds it per step, so
    a resumed run flips the same images.
    """
    mask = torch.rand(images.shape[0], 1, 1, 1, device=images.device) < 0.5
    return torch.where(mask, images.flip(-1), images)


def cache_root(cache_dir: str | Path | None = None) -> Path:
    return Path(cache_dir or os.environ.get("SMALLGAN_CACHE") or DEFAULT_CACHE).expanduser()


def resolve_dataset(path: str, resolution: int, *, cache_dir: str | Path | None = None, console: Any = None,
                    workers: int = 0) -> Path:
    """Turn ``data.path`` into a prepared dataset folder, preparing into the cache when needed.

    ``builtin:NAME`` is prepared once per resolution; a raw image folder is prepared into a cache
    entry keyed by its absolute path and the resolution, and prepared again when its files change;
    ``hf:NAME`` / ``imagefolder:PATH`` / a plain ``save_to_disk`` folder are prepared once.
    In a multi-process run call this on the main process first, then on the others. ``workers``: processes
    for a preparation (0 = all cores).
    """
    from data_tools.hub import is_saved_dataset
    from data_tools.prepare import read_meta
    from data_tools.sources import open_folder

    root = cache_root(cache_dir)
    if path.startswith("builtin:"):
        target = root / "builtin" / f"{path.split(':', 1)[1]}-{resolution}"
        return _prepared(path, target, resolution, console, note=False, workers=workers)
    folder = Path(path).expanduser()
    is_dir = folder.is_dir()
    if is_dir and read_meta(folder) is not None:
        return folder
    if path.startswith(("hf:", "imagefolder:")) or (is_dir and is_saved_dataset(folder)):
        # A Hugging Face dataset has no cheap fingerprint: prepared once per name and resolution.
        key = _key(str(folder.resolve()) if is_dir else path)
        return _prepared(path, root / "hf" / f"{key}-{resolution}", resolution, console, workers=workers)
    if not is_dir:
        check_data_path(path, resolution)
        raise SmallganError(f"dataset {path} is not a folder; give a prepared folder, an image folder or builtin:shapes")
    src = open_folder(folder, "auto")
    if src.total == 0:
        raise SmallganError(f"{path} contains no images (jpg, png, webp, bmp, gif, tiff); nothing to train on")
    target = root / "folders" / f"{folder.resolve().name}-{_key(str(folder.resolve()))}-{resolution}"
    return _prepared(str(folder), target, resolution, console, fingerprint=src.fingerprint, workers=workers)


def _key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _prepared(source: str, target: Path, resolution: int, console: Any, *, fingerprint: str | None = None,
              note: bool = True, workers: int = 0) -> Path:
    """``target`` if it already holds ``source`` at ``resolution`` (and unchanged files), else prepare it."""
    from rich.console import Console

    from data_tools.prepare import PrepareOptions, prepare, read_meta

    meta = read_meta(target)
    fresh = fingerprint is None or (meta or {}).get("source_fingerprint") == fingerprint
    if meta and meta.get("resolution") == resolution and fresh:
        return target
    console = console or Console(stderr=True, quiet=not note)
    if note:
        console.print(f"note: {source} is not a prepared dataset; preparing it at {resolution} px into {target}")
    prepare(source, target, PrepareOptions(resolution=resolution, workers=workers), force=True, console=console)
    return target


class PreparedImages(torch.utils.data.Dataset):
    """All images of a prepared dataset as one uint8 tensor (N, 3, H, W), decoded once.

    ``dataset[i]`` -> (float image in [-1, 1], label); ``.images`` stays uint8 so the loop can
    move the whole set to the GPU and sample indices without any per-step decoding.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, class_names: list[str], flip: bool = False) -> None:
        if images.ndim != 4 or images.shape[1] != 3 or images.dtype != torch.uint8:
            raise ValueError(f"images must be uint8 (N, 3, H, W), got {tuple(images.shape)} {images.dtype}")
        self.images = images
        self.labels = labels
        self.class_names = class_names
        self.resolution = images.shape[-1]
        self.flip = flip

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = to_float(self.images[i])
        if self.flip:
            x = random_flip(x.unsqueeze(0))[0]
        return x, self.labels[i]


def load_prepared(path: str | Path, *, resolution: int | None = None, flip: bool = False) -> PreparedImages:
    """Decode a prepared dataset's PNGs once. A different ``resolution`` is resized here (Lanczos) and logged."""
    import datasets
    from data_tools.prepare import read_meta

    folder = Path(path).expanduser()
    meta = read_meta(folder)
    if meta is None:
        raise SmallganError(f"{path} is not a prepared dataset (no smallgan.json); run `smallgan prepare {path}` first")
    if not meta.get("num_images"):
        raise SmallganError(f"prepared dataset {path} is empty; prepare it again from a folder with images")
    try:
        ds = datasets.load_from_disk(str(folder))
    except Exception as e:  # noqa: BLE001 - a damaged folder is a user-fixable problem
        raise SmallganError(
            f"could not read the prepared dataset {path} ({type(e).__name__}); prepare it again with --force"
        ) from None
    if len(ds) == 0:
        raise SmallganError(f"prepared dataset {path} is empty; prepare it again from a folder with images")
    stored = int(meta["resolution"])
    size = resolution or stored
    if size != stored:
        log.warning("dataset %s is %d px; resizing to %d px on load (prepare it at %d for best quality)",
                    path, stored, size, size)
    images = torch.empty((len(ds), 3, size, size), dtype=torch.uint8)
    ds = ds.cast_column("image", datasets.Image(decode=False))
    for i, row in enumerate(ds.select_columns(["image"])):
        im = Image.open(io.BytesIO(row["image"]["bytes"])).convert("RGB")
        if im.size != (size, size):
            im = im.resize((size, size), Image.Resampling.LANCZOS)
        images[i] = torch.from_numpy(np.asarray(im).transpose(2, 0, 1).copy())
    labels = torch.from_numpy(ds.data.column("label").to_numpy().astype(np.int64))
    return PreparedImages(images, labels, list(meta["class_names"]), flip=flip)
