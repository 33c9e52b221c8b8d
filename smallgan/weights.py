"""Pretrained weights that libraries fetch at run time (Inception for FID/KID, VGG-16 for LPIPS).

The normal way for real users: an explicit local file, else torch.hub's cache ($TORCH_HOME/hub/checkpoints),
else one download into that cache, with a timeout on the connect and every read so a blocked network fails
fast, and a SHA-256 check. Offline (:func:`smallgan.offline.offline`: SMALLGAN_OFFLINE, HF_HUB_OFFLINE or
HF_DATASETS_OFFLINE set) nothing is attempted: a one-line error names the file, where it comes from, and where
to put it.
"""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch

from smallgan.errors import SmallganError
from smallgan.offline import offline, offline_vars_set

CONNECT_TIMEOUT_S = 15.0


def weights_cache_dir() -> Path:
    """Where torch.hub keeps downloaded weights: $TORCH_HOME/hub/checkpoints."""
    return Path(torch.hub.get_dir()) / "checkpoints"


@dataclass(frozen=True)
class WeightsFile:
    what: str             # "Inception weights", used in messages
    url: str
    sha256_prefix: str    # torch.hub convention: the file name carries the start of its SHA-256
    option: str           # how to pass a local file, e.g. "--inception-weights FILE"
    hint: str = ""        # an extra way out, appended to the error

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[1]

    def missing(self, reason: str) -> SmallganError:
        extra = f" ({self.hint})" if self.hint else ""
        return SmallganError(f"{self.what} {self.name} not found ({reason}): download {self.url} into "
                             f"{weights_cache_dir()}/ or pass {self.option}{extra}")

    def resolve(self, path: str | Path | None = None, *, allow_download: bool | None = None) -> Path:
        """The file to load: `path`, else the cache, else a download (when allowed and online)."""
        if path:
            p = Path(path).expanduser()
            if not p.is_file():
                raise SmallganError(f"{self.option.split()[0]} {p} does not exist (expected {self.name} from {self.url})")
            return p
        cached = weights_cache_dir() / self.name
        if cached.is_file():
            return cached
        if allow_download is None:
            allow_download = not offline()
        if not allow_download:
            raise self.missing(f"offline: {' / '.join(offline_vars_set())} set" if offline() else "downloads disabled")
        self._download(cached)
        return cached

    def _download(self, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
        print(f"downloading {self.url} -> {dest}", file=sys.stderr)
        digest = hashlib.sha256()
        try:
            with urllib.request.urlopen(self.url, timeout=CONNECT_TIMEOUT_S) as resp, open(tmp, "wb") as f:
                while chunk := resp.read(1 << 20):
                    digest.update(chunk)
                    f.write(chunk)
        except (urllib.error.URLError, OSError) as e:
            tmp.unlink(missing_ok=True)
            raise self.missing(f"download failed: {getattr(e, 'reason', e)}") from None
        if not digest.hexdigest().startswith(self.sha256_prefix):
            tmp.unlink(missing_ok=True)
            raise self.missing("the downloaded file has the wrong SHA-256")
        os.replace(tmp, dest)
