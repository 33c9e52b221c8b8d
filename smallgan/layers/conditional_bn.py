"""Class- (and latent-) conditional BatchNorm, BigGAN section 3 / appendix B.

``out = BN(x) * (1 + gain(c)) + bias(c)``: BN without its own affine, then a per-sample, per-channel gain and
bias projected linearly from the conditioning vector c = [shared_embedding(y), z_chunk]. The projections are
spectrally normalised linears without bias (authors' code with the shared embedding); the ``1 +`` keeps the
layer an identity-scaled BN at initialisation.
"""

from __future__ import annotations

from torch import Tensor, nn

from smallgan.layers.spectral_norm import sn_linear


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
