"""Find the candidate image files under a folder, in a stable order, without hanging on symlink loops."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

# Extensions considered images; everything else is counted as "ignored" and never opened.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


@dataclass
class WalkResult:
    files: list[str] = field(default_factory=list)  # POSIX paths relative to the root, sorted by path parts
    ignored: int = 0                                  # files with other extensions (text, videos, .DS_Store...)
    ignored_extensions: dict[str, int] = field(default_factory=dict)
    hidden_dirs: int = 0                              # folders starting with "." are not entered
    symlink_loops: int = 0                            # directory links that lead back to a folder already seen


def walk_images(root: Path, exclude: tuple[Path, ...] = ()) -> WalkResult:
    """Recursively list image files under ``root``, following directory symlinks once each.

    Hidden folders (``.git``, Colab's ``.ipynb_checkpoints``) are skipped: their copies would
    become duplicates or, with ``--labels auto``, a bogus class.
    """
    root = Path(root)
    excluded = {os.path.realpath(p) for p in exclude}
    result = WalkResult()
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:  # a link back to an ancestor or a sibling already walked
            result.symlink_loops += 1
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        keep = []
        for d in dirnames:
            if d.startswith("."):
                result.hidden_dirs += 1
            elif os.path.realpath(os.path.join(dirpath, d)) not in excluded:
                keep.append(d)
        dirnames[:] = keep
        rel_dir = Path(dirpath).relative_to(root)
        for name in filenames:
            ext = os.path.splitext(name)[1].lower()
            if ext in IMAGE_EXTENSIONS and not name.startswith("."):
                result.files.append((rel_dir / name).as_posix())
            else:
                result.ignored += 1
                key = ext or "(none)"
                result.ignored_extensions[key] = result.ignored_extensions.get(key, 0) + 1
    # Sorting by path parts (not the raw string) keeps a folder's files together: "a/b" before "a-b".
    result.files.sort(key=lambda p: p.split("/"))
    return result


def folder_fingerprint(root: Path, files: list[str]) -> str:
    """Cheap content signature (names, sizes, mtimes) to notice that a cached preparation is stale."""
    h = hashlib.blake2b(digest_size=16)
    for rel in files:
        try:
            st = os.stat(root / rel)
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{rel}\0missing\n".encode())
    return h.hexdigest()
