"""Hugging Face datasets as input: a hub name, a local ``imagefolder``, or a ``save_to_disk`` folder.

Rows are handed to the same workers as files (encoded bytes, decoded by our own safe decoder),
so skip reasons, size limits and dedupe behave identically for every kind of source.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smallgan.errors import SmallganError
from smallgan.offline import offline, offline_vars_set


def is_saved_dataset(path: Path) -> bool:
    """A folder written by ``save_to_disk`` (a Dataset, a DatasetDict, or a smallgan prepared set)."""
    return (path / "dataset_dict.json").is_file() or (
        (path / "state.json").is_file() and (path / "dataset_info.json").is_file()
    )


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


@dataclass
class _Loaded:
    ds: Any                    # a datasets.Dataset
    name: str                  # shown in the report; the single class name without labels
    default_out: str           # may hold "{resolution}"
    base: Path | None = None   # local image paths in rows are reported relative to this folder
    cache: str | None = None   # a throw-away cache to delete afterwards


def _load(spec: str, split: str) -> _Loaded:
    import datasets

    if spec.startswith("imagefolder:"):
        folder = Path(spec.split(":", 1)[1]).expanduser().absolute()
        if not folder.is_dir():
            raise SmallganError(f"imagefolder path {folder} is not a folder")
        # The imagefolder index is rebuilt for each run in a throw-away cache, not the user's HF cache.
        cache = tempfile.mkdtemp(prefix="smallgan-imagefolder-")
        try:
            ds = datasets.load_dataset("imagefolder", data_dir=str(folder), split=split, cache_dir=cache)
        except Exception as e:  # noqa: BLE001 - datasets raises many types; the user needs one line
            shutil.rmtree(cache, ignore_errors=True)
            raise SmallganError(f"could not read {folder} as an imagefolder dataset ({_first_line(e)})") from None
        return _Loaded(ds, folder.name, str(folder.parent / f"{folder.name}-prepared"), base=folder, cache=cache)
    if not spec.startswith("hf:"):
        try:
            ds = datasets.load_from_disk(spec)
        except Exception as e:  # noqa: BLE001
            raise SmallganError(f"could not load the saved dataset {spec} ({_first_line(e)})") from None
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise SmallganError(f"{spec} has splits {', '.join(ds)}; choose one with --split")
            ds = ds[split]
        path = Path(spec).absolute()
        return _Loaded(ds, path.name, str(path.parent / f"{path.name}-{{resolution}}"))
    name = spec[3:]
    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as e:  # noqa: BLE001
        hint = (
            f"offline mode is on ({'/'.join(offline_vars_set())}): go online once or pass a local folder"
            if offline()
            else "check the name and your network, or pass a local folder"
        )
        raise SmallganError(f"could not load Hugging Face dataset {name!r}: {hint} ({_first_line(e)})") from None
    return _Loaded(ds, name.split("/")[-1], f"{name.replace('/', '--')}-prepared")


def open_hf(spec: str, labels: str, split: str) -> Any:
    """A :class:`data_tools.sources.Source` over a Hugging Face dataset's image (and label) column."""
    loaded = _load(spec, split)
    try:
        return _source(loaded, labels, split)
    except BaseException:
        if loaded.cache:
            shutil.rmtree(loaded.cache, ignore_errors=True)
        raise


def _source(loaded: _Loaded, labels: str, split: str) -> Any:
    import datasets

    from data_tools.sources import Source
    from data_tools.worker import BytesItem

    ds, name = loaded.ds, loaded.name
    image_cols = [c for c, f in ds.features.items() if isinstance(f, datasets.Image)]
    if not image_cols:
        raise SmallganError(f"dataset {name} has no image column (columns: {', '.join(ds.column_names)})")
    image_col = "image" if "image" in image_cols else image_cols[0]
    label_cols = [c for c, f in ds.features.items() if isinstance(f, datasets.ClassLabel)]
    label_col = ("label" if "label" in label_cols else label_cols[0]) if labels == "auto" and label_cols else None
    class_names = list(ds.features[label_col].names) if label_col else [name or "images"]
    has_source = isinstance(ds.features.get("source"), datasets.Value)  # a smallgan prepared set
    columns = [image_col] + ([label_col] if label_col else []) + (["source"] if has_source else [])
    ds = ds.select_columns(columns).cast_column(image_col, datasets.Image(decode=False))

    def row_name(i: int, row: dict[str, Any]) -> str:
        path = (row[image_col] or {}).get("path")
        if has_source:
            return str(row["source"])
        if path and loaded.base is not None:
            return Path(os.path.relpath(path, loaded.base)).as_posix()
        return path or f"{name}[{split}][{i}]"

    def items() -> Iterator[BytesItem]:
        for i, row in enumerate(ds):
            img = row[image_col] or {}
            label = row[label_col] if label_col else 0
            label = label if isinstance(label, int) and label >= 0 else 0  # -1 / None: unlabelled rows
            yield BytesItem(row_name(i, row), img.get("bytes"), img.get("path"), label)

    def cleanup() -> None:
        if loaded.cache:
            shutil.rmtree(loaded.cache, ignore_errors=True)

    return Source(name=name, kind="hf", class_names=class_names, total=len(ds), items=items,
                  cleanup=cleanup, default_out=loaded.default_out)
