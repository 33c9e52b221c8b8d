"""Whether smallgan may download anything: one answer for the Inception and VGG weights and for Hugging Face
datasets alike, so a machine told to stay offline in any of the usual ways never waits on the network."""

from __future__ import annotations

import os

# smallgan's own switch, and the Hugging Face ones users already set for `datasets` and the hub.
OFFLINE_VARS = ("SMALLGAN_OFFLINE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
_TRUE = ("1", "true", "yes", "on")


def offline_vars_set() -> list[str]:
    """The offline variables that are set to a true value (1, true, yes, on)."""
    return [v for v in OFFLINE_VARS if os.environ.get(v, "").strip().lower() in _TRUE]


def offline() -> bool:
    """True when any of :data:`OFFLINE_VARS` is set: nothing may be downloaded."""
    return bool(offline_vars_set())
