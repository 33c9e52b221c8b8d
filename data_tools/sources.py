"""Where the rows come from: an image folder or a built-in procedural set (:mod:`data_tools.hub` gives
Hugging Face datasets the same shape; :func:`data_tools.prepare.open_source` picks one for a SOURCE argument).

A :class:`Source` knows its class names and yields work items in a stable order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from data_tools.builtin import builtin_spec
from data_tools.report import NO_CLASS
from data_tools.walk import WalkResult, folder_fingerprint, walk_images
from data_tools.worker import BuiltinItem, FileItem, Item
from smallgan.errors import SmallganError

@dataclass
class Source:
    name: str                          # shown in the report and stored as metadata
    kind: str                          # folder | builtin | hf
    class_names: list[str]
    total: int                         # candidate items (the report's "found")
    items: Callable[[], Iterator[Item]]
    walk: WalkResult = field(default_factory=WalkResult)
    prelabel_skips: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) decided before decoding
    fingerprint: str = ""              # folder sources: names/sizes/mtimes, to notice a stale cache
    default_out: str = ""             # may hold "{resolution}"
    cleanup: Callable[[], None] = lambda: None


def open_folder(root: Path, labels: str, exclude: tuple[Path, ...] = ()) -> Source:
    """An image folder; with ``labels="auto"`` immediate sub-folders are classes when there are two or more."""
    walk = walk_images(root, exclude=exclude)
    top = sorted({rel.split("/")[0] for rel in walk.files if "/" in rel})
    by_folder = labels == "auto" and len(top) >= 2
    class_names = top if by_folder else [_class_name(root)]
    index = {name: i for i, name in enumerate(class_names)}
    items: list[Item] = []
    skips: list[tuple[str, str]] = []
    for rel in walk.files:
        if by_folder and "/" not in rel:
            skips.append((rel, NO_CLASS))
            continue
        label = index[rel.split("/")[0]] if by_folder else 0
        items.append(FileItem(rel, str(root / rel), label))
    return Source(
        name=str(root),
        kind="folder",
        class_names=class_names,
        total=len(walk.files),
        items=lambda: iter(items),
        walk=walk,
        prelabel_skips=skips,
        fingerprint=folder_fingerprint(root, walk.files),
        default_out=str(root.absolute().parent / f"{root.absolute().name}-prepared"),
    )


def _class_name(root: Path) -> str:
    return root.absolute().name or "images"


def open_builtin(name: str) -> Source:
    try:
        spec = builtin_spec(name)
    except KeyError:
        from data_tools.builtin import BUILTINS

        raise SmallganError(f"unknown built-in dataset {name!r}; available: {', '.join(BUILTINS)}") from None

    labels = spec.label_list()   # here, not in items(): a missing optional dependency fails before any work

    def items() -> Iterator[Item]:
        for i, label in enumerate(labels):
            yield BuiltinItem(f"builtin:{name}/{spec.class_names[label]}/{i:05d}", name, i, label)

    return Source(
        name=f"builtin:{name}",
        kind="builtin",
        class_names=list(spec.class_names),
        total=spec.count,
        items=items,
        default_out=f"{name}-prepared",
    )
