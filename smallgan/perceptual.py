"""LPIPS (Zhang et al. 2018) with a VGG-16 trunk: FastGAN's reconstruction loss, loaded without hanging offline.

The ``lpips`` wheel ships only the small linear heads; its trunk is torchvision's ImageNet VGG-16
(``vgg16-397923af.pth``), which ``lpips`` would fetch through torchvision with no timeout. Here the network is
always built with an untrained trunk (``pnet_rand=True``: nothing is downloaded) and the trunk weights are then
loaded from a file resolved like the Inception weights (smallgan.weights): an explicit file
(``train.lpips_weights``), else torch.hub's cache (``$TORCH_HOME/hub/checkpoints``), else a download with a
timeout unless offline, else a one-line error saying where to put the file. ``"random"`` keeps the untrained
trunk (tests: the same code path, no weights).

The distance itself is LPIPS v0.1 (unit-normalised trunk features per layer, squared differences weighted by the
learned 1x1 heads, averaged over space, summed over layers), computed here by :class:`PerceptualDistance` so
that the normalisation has a finite gradient where a feature vector is all zero (``lpips`` divides by
``norm + eps``, whose gradient at a zero vector is NaN: one dead location would poison D's whole step).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from smallgan.errors import SmallganError
from smallgan.weights import WeightsFile

VGG_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
VGG = WeightsFile("LPIPS' VGG-16 weights", VGG_URL, "397923af", "--lpips-weights FILE",
                  hint="or model.decoder=false to train FastGAN without them")
VGG_FILE = VGG.name
RANDOM = "random"
# lpips splits torchvision's vgg16.features into five slices, keeping the original layer indices as names.
VGG_SLICES = ((1, range(0, 4)), (2, range(4, 9)), (3, range(9, 16)), (4, range(16, 23)), (5, range(23, 30)))


def resolve_vgg_weights(weights: str | Path | None = None, *, allow_download: bool | None = None) -> Path:
    """The VGG-16 weights file: the given one, else torch.hub's cache, else a download (when allowed and online)."""
    if weights and not Path(weights).expanduser().is_file():
        raise SmallganError(f"train.lpips_weights {weights} does not exist (expected {VGG_FILE} from {VGG_URL})")
    return VGG.resolve(weights, allow_download=allow_download)


def _trunk_state(path: Path) -> dict[str, Tensor]:
    """torchvision's vgg16 state dict (weights only) renamed to the keys of lpips' trunk (``slice<k>.<i>.*``)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - pickle and torch errors alike mean "not a plain weights file"
        raise SmallganError(f"{path} is not a plain weights file ({type(e).__name__}); expected {VGG_FILE}") from None
    out = {}
    for k, layers in VGG_SLICES:
        for i in layers:
            for p in ("weight", "bias"):
                if f"features.{i}.{p}" in state:
                    out[f"slice{k}.{i}.{p}"] = state[f"features.{i}.{p}"]
    if len(out) != 26:  # the 13 convs of VGG-16, weight and bias each
        raise SmallganError(f"{path} does not hold VGG-16 weights; expected {VGG_FILE} from {VGG_URL}")
    return out


def unit_normalize(features: Tensor, eps: float = 1e-10) -> Tensor:
    """Features divided by their norm over channels; eps inside the root keeps the gradient finite at zero."""
    return features * torch.rsqrt(features.float().square().sum(dim=1, keepdim=True) + eps).to(features.dtype)


class PerceptualDistance(nn.Module):
    """``d(a, b) -> (B, 1, 1, 1)``: LPIPS between images in [-1, 1], from an ``lpips.LPIPS`` network's parts."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.scaling, self.trunk, self.heads = net.scaling_layer, net.net, net.lins

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        # Two trunk passes, not one on the concatenation: b is usually a detached target, and alone it builds
        # no autograd graph through the frozen trunk.
        fa, fb = self.trunk(self.scaling(a)), self.trunk(self.scaling(b))
        total = 0
        for head, xa, xb in zip(self.heads, fa, fb):
            total = total + head((unit_normalize(xa) - unit_normalize(xb)).square()).mean(dim=(2, 3), keepdim=True)
        return total


def build_lpips(weights: str | Path | None = None, *, allow_download: bool | None = None) -> PerceptualDistance:
    """LPIPS-VGG in eval mode with frozen weights; ``weights="random"`` keeps an untrained trunk (tests only).

    Call as ``lpips(a, b)`` on images in [-1, 1]: one distance per image, shape (B, 1, 1, 1).
    """
    import lpips

    path = None if weights == RANDOM else resolve_vgg_weights(weights, allow_download=allow_download)
    with warnings.catch_warnings():  # lpips asks torchvision with its deprecated `pretrained=` argument
        warnings.simplefilter("ignore", UserWarning)
        net = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False)
    if path is not None:
        trunk = _trunk_state(path)
        try:
            net.net.load_state_dict(trunk)
        except RuntimeError as e:
            raise SmallganError(f"{path} does not fit LPIPS' VGG-16 ({str(e).splitlines()[0]})") from None
    return PerceptualDistance(net).eval().requires_grad_(False)
