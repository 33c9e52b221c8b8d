"""What every converter shares: the error it raises and the converted model it returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from smallgan.config import Config
from smallgan.errors import SmallganError


class ConversionError(SmallganError):
    """A checkpoint that cannot be converted exactly; the message names the file, tensor or setting."""


@dataclass
class Converted:
    """A converted model, ready to write as a run folder."""

    cfg: Config
    G: nn.Module
    D: nn.Module
    G_ema: nn.Module
    class_names: list[str]
    source: dict[str, Any]
    notes: list[str]
