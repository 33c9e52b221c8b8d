"""BigGAN's orthogonal regularisation (section 3.1) and LeCam regularisation of D.

``R = beta / 2 * sum_W || W W^T (.) (1 - I) ||_F^2`` with each weight reshaped to (out, -1): it pushes filters
towards mutual orthogonality without constraining their norms, which makes G amenable to truncation. Its
gradient, ``2 * beta * (W W^T (.) (1 - I)) W``, is exactly what the authors' code (utils.py ``ortho``) adds to
each weight's gradient, so ``train.ortho_beta`` means their ``--G_ortho`` (the paper writes beta without the 1/2).

Which weights: every parameter with >= 2 dimensions (conv and linear weights) except embeddings (G's shared
class embedding, as in the paper); biases, BatchNorm parameters and scalar gains are 1-D or 0-D and so excluded.
With spectral norm the raw (unnormalised) weight is regularised, as the authors' code does.
"""

from __future__ import annotations

from typing import Any

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
    """``beta / 2 * sum_W ||W W^T (.) (1 - I)||_F^2`` over the module's conv/linear weights (float32 scalar): the
    1/2 makes its gradient the authors' ``2 * beta * (W W^T (.) (1 - I)) W``."""
    weights = regularized_weights(module)
    if not weights:
        return torch.zeros(())
    # float32 even under autocast: the terms are differences of 4th powers, which bf16/fp16 would cancel badly.
    with float32_region(weights[0][1].device):
        return 0.5 * beta * torch.stack([off_diagonal_gram_sq(p) for _, p in weights]).sum()


def lecam_penalty(real_logits: Tensor, fake_logits: Tensor, anchors: Tensor) -> Tensor:
    """LeCam's penalty of one micro-batch (unweighted), with `anchors` (a_R, a_F) from :meth:`LeCam.anchors`."""
    real, fake = real_logits.float(), fake_logits.float()
    a_real, a_fake = anchors[0], anchors[1]
    return (real - a_fake).relu().square().mean() + (a_real - fake).relu().square().mean()


class LeCam:
    """The anchors of LeCam regularisation (Tseng et al., CVPR 2021) of D, as the authors' code computes it:
    ``weight x (E[relu(D(x) - a_F)^2] + E[relu(a_R - D(G(z)))^2])``, with a_R and a_F moving averages (decay
    0.99) of D's mean output on real and on generated images. Only a real output *above* the fake anchor and a
    fake output *below* the real anchor are penalised: D is kept from pulling real and fake predictions further
    apart than its recent history, while predictions between the anchors cost nothing (the paper's eq. 3 is
    written without the relu; the authors' code, lecam-gan's ``lecam_reg``, has it). On BigGAN with
    DiffAugment the paper finds better FID with 10-20% of CIFAR-10.

    The anchors are the averages *before* this D step, shared by all of its micro-batches, so an accumulated
    step gives the loss of one big batch; after the step the averages take the step's mean outputs, summed
    over micro-batches and processes (one all-reduce per D step), so every process holds the same anchors.
    The averages are zero-debiased as the authors' TensorFlow code does (the first step's mean is the
    first anchor, not 0.01 of it).
    """

    def __init__(self, decay: float, accelerator: Any) -> None:
        device = accelerator.device
        self.decay, self.accelerator = decay, accelerator
        self.ema = torch.zeros(2, device=device)       # biased averages of mean D(real), mean D(fake)
        self.updates = torch.zeros((), device=device)  # D steps averaged so far (for the debiasing)

    def anchors(self) -> Tensor:
        """(a_R, a_F), debiased; (0, 0) before the first step."""
        return self.ema / (1.0 - self.decay ** self.updates).clamp_min(1e-12)

    def update(self, real_logits: list[Tensor], fake_logits: list[Tensor]) -> None:
        """Fold a D step's outputs (its micro-batches' logits, over every process) into the averages."""
        sums = torch.zeros(4, device=self.ema.device)   # sum D(real), count, sum D(fake), count
        for real, fake in zip(real_logits, fake_logits):
            sums[0] += real.float().sum()
            sums[1] += real.numel()
            sums[2] += fake.float().sum()
            sums[3] += fake.numel()
        sums = self.accelerator.reduce(sums, reduction="sum")
        means = torch.stack([sums[0] / sums[1].clamp_min(1), sums[2] / sums[3].clamp_min(1)])
        # A step skipped for non-finite values must not poison the anchors of every later step.
        finite = torch.isfinite(means).all()
        self.ema.copy_(torch.where(finite, self.decay * self.ema + (1.0 - self.decay) * means, self.ema))
        self.updates += finite.float()

    def state_dict(self) -> dict[str, Any]:
        return {"ema": self.ema.tolist(), "updates": int(self.updates.item())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ema.copy_(torch.tensor(state["ema"]))
        self.updates.fill_(state["updates"])
