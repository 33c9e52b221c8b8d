"""Class- (and latent-) conditional BatchNorm, BigGAN section 3 / appendix B.

``out = BN(x) * (1 + gain(c)) + bias(c)``: BN without its own affine, then a per-sample, per-channel gain and
bias projected linearly from the conditioning vector c = [shared_embedding(y), z_chunk]. The projections are
spectrally normalised linears without bias (authors' code with the shared embedding); the ``1 +`` keeps the
layer an identity-scaled BN at initialisation.
"""

from __future__ import annotations

from torch import Tensor, nn

from smallgan.layers.spectral_norm import init_orthogonal, sn_linear

SHARED_INITS = ("normal", "ortho")


def shared_embedding(n_classes: int, dim: int, init: str) -> nn.Embedding:
    """G's shared class embedding (BigGAN section 3), without spectral norm (the authors found it cripples G).

    ``"ortho"`` (the authors' code) gives each class a vector of norm <= 1, while the z chunk beside it in
    every CBN input has norm ~sqrt(chunk): the class barely moves the gains until Adam has grown the
    embedding, step by lr-sized step. ``"normal"`` (N(0, 1) entries, norm ~sqrt(dim)) starts the class on
    an equal footing with z.
    """
    embedding = nn.Embedding(n_classes, dim)
    if init == "ortho":
        return init_orthogonal(embedding)
    if init == "normal":
        nn.init.normal_(embedding.weight)
        return embedding
    raise ValueError(f"unknown shared-embedding init {init!r}; choose from {', '.join(SHARED_INITS)}")


class ConditionalBatchNorm2d(nn.Module):
    def __init__(self, channels: int, cond_dim: int, *, bn_eps: float = 1e-5, sn_eps: float = 1e-6) -> None:
        super().__init__()
        # A plain BatchNorm2d child so nn.SyncBatchNorm.convert_sync_batchnorm can swap it for multi-GPU runs.
        self.norm = nn.BatchNorm2d(channels, eps=bn_eps, affine=False)
        self.gain = sn_linear(cond_dim, channels, bias=False, eps=sn_eps)
        self.bias = sn_linear(cond_dim, channels, bias=False, eps=sn_eps)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        gain = 1.0 + self.gain(c)[:, :, None, None]   # (B, C, 1, 1)
        bias = self.bias(c)[:, :, None, None]
        return self.norm(x) * gain + bias
