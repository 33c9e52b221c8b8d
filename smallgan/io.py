"""Files smallgan writes and reads back: atomic writes, JSON, safetensors weights and their metadata.

The bottom of the package: it imports nothing from smallgan but :mod:`smallgan.errors`, and torch and
safetensors only inside the functions that need them, so :mod:`data_tools` and the CLI's start-up can use it
without loading torch.

Every write goes to a temporary file in the same folder, is fsynced, then renamed over the target: a reader
(or a run killed mid-write) sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smallgan.errors import SmallganError

if TYPE_CHECKING:
    import torch


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable; a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> None:
    """Call ``write(tmp_path)``, fsync it, then rename it to `path` (readers see old or new, never half)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda p: Path(p).write_text(text))


def write_json(path: str | Path, value: Any, *, indent: int | None = 2, sort_keys: bool = False) -> None:
    """`value` as JSON, written atomically."""
    atomic_write_text(path, json.dumps(value, indent=indent, sort_keys=sort_keys))


def read_json(path: str | Path) -> Any:
    """The JSON value in `path`; a missing, unreadable or invalid file raises a one-line SmallganError."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise SmallganError(f"cannot read {path} ({_first_line(e)})") from None


# ---------------------------------------------------------------------------------------------
# safetensors: weights only, so loading never executes code


def save_weights(path: str | Path, state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """A state dict (CPU copies, contiguous) as a safetensors file with string `metadata`, atomically."""
    from safetensors.torch import save_file

    # safetensors refuses tensors that share storage or are not contiguous; state dicts of our models hold
    # no shared ones, so a contiguous CPU copy is all it takes.
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    atomic_write(path, lambda p: save_file(tensors, str(p), metadata=metadata))


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file (on the CPU); a damaged file raises a one-line SmallganError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise SmallganError(f"checkpoint file {path} is damaged or unreadable ({_first_line(e)}); "
                            "use an earlier checkpoint") from None


def read_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a safetensors file ({} when it has none), without reading its tensors."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as e:
        raise SmallganError(f"{path} is damaged or not a safetensors file ({_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    lines = str(e).splitlines()
    return lines[0] if lines else type(e).__name__
