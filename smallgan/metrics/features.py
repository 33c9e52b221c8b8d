"""Feature extractors for the quality metrics, and the Inception weights they load.

Every extractor takes uint8 images (N, 3, H, W) of any size and returns ``{"pool": (N, D) float32,
"logits": (N, K) float32 or None}``; its ``name`` keys the cached real-set statistics.

:func:`inception_v3` is the one that gives standard numbers: torch-fidelity's port of the TensorFlow
Inception-v3 used by the original FID code (weights ``weights-inception-2015-12-05-6726825d.pth``, the
same network as pytorch-fid's and clean-fid's legacy mode), with its TF-1.x bilinear resize to 299 px built
in. :class:`TinyExtractor` is a small randomly initialised conv net with the same interface, for tests and
benchmarks only: its numbers mean nothing outside them.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from smallgan.data import to_float
from smallgan.errors import SmallganError
from smallgan.metrics.names import EXTRACTORS
from smallgan.weights import WeightsFile

INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)
INCEPTION_FILE = INCEPTION_URL.rsplit("/", 1)[1]
INCEPTION_SHA256_PREFIX = "6726825d"  # torch.hub convention: the hash prefix is part of the file name


class FeatureExtractor(nn.Module):
    """Interface: ``forward(uint8 (N, 3, H, W)) -> {"pool": (N, D), "logits": (N, K) or None}``."""

    name: str = "extractor"
    feature_dim: int = 0

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


class TinyExtractor(FeatureExtractor):
    """A small random conv net (test/benchmark extractor only): fast on CPU, no weights to download.

    Deterministic for a given seed, so tests can compare numbers across calls and processes.
    """

    def __init__(self, seed: int = 0, dim: int = 32, n_classes: int = 10, size: int = 32):
        super().__init__()
        self.name = f"tiny-s{seed}-d{dim}"
        self.feature_dim, self.size = dim, size
        self.convs = nn.ModuleList(
            [nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.Conv2d(32, 64, 3, stride=2, padding=1),
             nn.Conv2d(64, dim, 3, stride=2, padding=1)]
        )
        self.fc = nn.Linear(dim, n_classes)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for m in (*self.convs, self.fc):
                # He initialisation keeps activations at unit scale through the leaky ReLUs (He et al. 2015),
                # so distances between features are O(1) like a trained network's.
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                m.bias.zero_()
        self.requires_grad_(False)
        self.eval()

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor | None]:
        x = to_float(_check_uint8(images).to(self.device))
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
        pool = x.mean(dim=(2, 3))
        return {"pool": pool, "logits": self.fc(pool)}


class PixelExtractor(FeatureExtractor):
    """Images area-resized to 32 px as vectors in [-1, 1] (3,072 numbers): the memorisation check's offline
    feature space (no weights, nothing to download). Pixel distances find copies and near copies, as the
    nearest-neighbour figures of the BigGAN paper's appendix do; they do not see semantic likeness."""

    name = "pixels-32"

    def __init__(self, size: int = 32) -> None:
        super().__init__()
        self.size, self.feature_dim = size, 3 * size * size
        self.register_buffer("_device_anchor", torch.zeros(()), persistent=False)   # no parameters to ask

    @property
    def device(self) -> torch.device:
        return self._device_anchor.device

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor | None]:
        x = to_float(_check_uint8(images).to(self.device))
        return {"pool": F.interpolate(x, size=(self.size, self.size), mode="area").flatten(1), "logits": None}


class InceptionV3(FeatureExtractor):
    """torch-fidelity's TF-ported Inception-v3: pool3 (2048) features and the bias-free 1008-way logits."""

    name = "inception-v3-tf"
    feature_dim = 2048

    def __init__(self, state: bytes):
        super().__init__()
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        # torch-fidelity reads the weights with torch.load(weights_only=False); it gets the bytes that
        # load_weights() already read with weights_only=True, so nothing but tensors is ever unpickled.
        try:
            self.net = FeatureExtractorInceptionV3(
                "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=io.BytesIO(state)
            )
        except RuntimeError as e:  # load_state_dict: missing / unexpected keys or wrong shapes
            first = str(e).splitlines()[0]
            raise SmallganError(f"the weights file is not {INCEPTION_FILE} ({first})") from None

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor | None]:
        pool, logits = self.net(_check_uint8(images).to(self.device))
        return {"pool": pool, "logits": logits}


def _check_uint8(images: torch.Tensor) -> torch.Tensor:
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected uint8 images (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    return images


# ---------------------------------------------------------------------------------------------
# Weights: an explicit file, else torch.hub's cache, else a download (unless offline): smallgan.weights.

INCEPTION = WeightsFile("Inception weights", INCEPTION_URL, INCEPTION_SHA256_PREFIX, "--inception-weights FILE")


def resolve_weights(weights_path: str | Path | None = None, *, allow_download: bool | None = None) -> Path:
    """The Inception weights file to use; downloads into the torch.hub cache only when allowed and online."""
    return INCEPTION.resolve(weights_path, allow_download=allow_download)


def load_weights(path: Path) -> bytes:
    """The file's bytes, after checking that they hold only tensors (torch.load with weights_only=True)."""
    data = path.read_bytes()
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors and torch's own are all "not a plain state dict"
        raise SmallganError(
            f"{path} is not a plain weights file ({type(e).__name__}); expected {INCEPTION_FILE}"
        ) from None
    if not isinstance(state, dict) or "fc.weight" not in state:
        raise SmallganError(
            f"{path} does not hold Inception-v3 weights; expected {INCEPTION_FILE} from {INCEPTION_URL}"
        )
    return data


def inception_v3(
    weights_path: str | Path | None = None,
    *,
    device: torch.device | str = "cpu",
    allow_download: bool | None = None,
) -> InceptionV3:
    """The standard FID/KID/IS extractor, in eval mode on ``device``."""
    from importlib.util import find_spec

    if find_spec("torch_fidelity") is None:
        raise SmallganError("the quality metrics need torch-fidelity: pip install torch-fidelity")
    path = resolve_weights(weights_path, allow_download=allow_download)
    return InceptionV3(load_weights(path)).to(device).eval()


def build_extractor(
    name: str, weights_path: str | Path | None = None, device: torch.device | str = "cpu"
) -> FeatureExtractor:
    """``inception`` (the standard one), ``pixels`` (32-px pixels: the memorisation check offline) or ``tiny``
    (a random net for tests and benchmarks: numbers meaningless)."""
    if name == "inception":
        return inception_v3(weights_path or None, device=device)
    if name == "tiny":
        return TinyExtractor(0).to(device)
    if name == "pixels":
        return PixelExtractor().to(device)
    raise SmallganError(f"the feature extractor must be one of {', '.join(EXTRACTORS)}, got {name!r}")
