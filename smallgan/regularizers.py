"""BigGAN's orthogonal regularisation (section 3.1).

``R = beta * sum_W || W W^T (.) (1 - I) ||_F^2`` with each weight reshaped to (out, -1): it pushes filters
towards mutual orthogonality without constraining their norms, which makes G amenable to truncation.

Which weights: every parameter with >= 2 dimensions (conv and linear weights) except embeddings (G's shared
class embedding, as in the paper); biases, BatchNorm parameters and scalar gains are 1-D or 0-D and so excluded.
With spectral norm the raw (unnormalised) weight is regularised, as the authors' code does.

Note on scale: the authors' code adds ``beta * 2 * (W W^T (.) (1 - I)) W`` to the gradient, which is the gradient
of ``beta / 2 * R`` here; pass half the authors' beta to reproduce their update exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from smallgan.layers.spectral_norm import float32_region


def regularized_weights(module: nn.Module) -> list[tuple[str, Tensor]]:
    """(name, parameter) of every weight the regulariser sees (raw weights under spectral norm; frozen ones,
    fine-tuning, are left out: they cannot move)."""
    skip = {id(p) for m in module.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    return [(n, p) for n, p in module.named_parameters() if p.ndim >= 2 and id(p) not in skip and p.requires_grad]


def off_diagonal_gram_sq(w: Tensor) -> Tensor:
    """||W W^T (.) (1 - I)||_F^2 without forming an identity, and through the smaller Gram matrix.

    ||W W^T||_F^2 = ||W^T W||_F^2 (both are sum sigma_i^4), and diag(W W^T) holds the squared row norms,
    so the off-diagonal part is ||gram||_F^2 - sum_i ||w_i||^4 with gram the smaller of W W^T, W^T W
    (a 24576 x 20 linear needs a 20 x 20 Gram, not a 24576 x 24576 one).
    """
    w = w.flatten(1).float()
    gram = w @ w.t() if w.shape[0] <= w.shape[1] else w.t() @ w
    return gram.square().sum() - w.square().sum(dim=1).square().sum()


def orthogonal_regularization(module: nn.Module, beta: float) -> Tensor:
    """``beta * sum_W ||W W^T (.) (1 - I)||_F^2`` over the module's conv/linear weights (float32 scalar)."""
    weights = regularized_weights(module)
    if not weights:
        return torch.zeros(())
    # float32 even under autocast: the terms are differences of 4th powers, which bf16/fp16 would cancel badly.
    with float32_region(weights[0][1].device):
        return beta * torch.stack([off_diagonal_gram_sq(p) for _, p in weights]).sum()
