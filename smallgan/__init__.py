"""smallgan: train BigGAN (and a FastGAN baseline) on your own small image set.

``from smallgan import load_generator, save_grid`` is the sampling API (:mod:`smallgan.sampling`). It is
imported on first use, so ``import smallgan`` (and the CLI's start-up) does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {name: "smallgan.sampling" for name in ("load_generator", "save_grid", "TrainedGenerator")}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'smallgan' has no attribute {name!r}")
