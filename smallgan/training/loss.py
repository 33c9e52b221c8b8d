"""The GAN loss, built from the config: D's and G's terms by name, each with its weight (after StyleGAN2-ADA's
``training/loss.py``, whose phases name what they add up).

D: ``adv`` (train.loss: hinge, FastGAN's hinge), ``lecam`` (train.lecam, regularizers.py), ``recon`` (FastGAN's
L_recons, train.recon_weight) and ``r1`` (train.r1_gamma). G: ``adv`` and ``mode_seeking`` (train.mode_seeking);
BigGAN's orthogonal regularisation (train.ortho_beta) is a gradient added after DDP's all-reduce (see
:meth:`GANLoss.add_orthogonal_gradient`). A new term is one more entry in :meth:`GANLoss.d_terms` or
:meth:`GANLoss.g_terms`; the phases (phases.py) sum whatever they return.

R1 is lazy (StyleGAN2, Karras et al. 2020, sec. 4 "lazy regularization"): it is computed on every
train.r1_every-th D step only, its weight multiplied by r1_every so that its gradient has the same expected
size; train.r1_every=1 is the penalty at every step. Unlike StyleGAN2 it rides on the D step's own forward (the
reals are in it anyway) instead of a separate optimiser step, so every step stays one D forward.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from smallgan.config import TrainConfig
from smallgan.losses import D_LOSSES, g_hinge, mode_seeking, r1_penalty
from smallgan.regularizers import lecam_penalty, orthogonal_regularization

# A loss term: (weight, value). The value is unweighted (the logs show it so); the loss is sum(weight x value).
Terms = dict[str, tuple[float, Tensor]]


def total(terms: Terms) -> Tensor:
    """sum(weight x value) in the terms' order (the order fixes the floating-point result)."""
    return functools.reduce(operator.add, (v if w == 1.0 else w * v for w, v in terms.values()))


@dataclass
class GANLoss:
    d_adv: Callable[[Tensor, Tensor], Tensor]
    r1_gamma: float = 0.0
    r1_every: int = 1
    lecam: float = 0.0                     # weight of LeCam's penalty; the anchors come from the training state
    recon_weight: float = 1.0
    perceptual: nn.Module | None = None    # LPIPS, for a D that reconstructs real images (FastGAN)
    ortho_beta: float = 0.0
    mode_seeking: float = 0.0              # weight of MSGAN's term in G's loss (losses.mode_seeking); 0 = off

    def r1_due(self, d_step: int) -> bool:
        """Whether D step number `d_step` (0-based, counted over the run) computes R1."""
        return self.r1_gamma > 0 and d_step % self.r1_every == 0

    def d_terms(self, real_logits: Tensor, fake_logits: Tensor, *, inputs: Tensor | None,
                pairs: list[tuple[Tensor, Tensor]], anchors: Tensor | None) -> Terms:
        """D's terms on one micro-batch. `inputs`: what D saw, requiring grad, when R1 is due (else None);
        `pairs`: (decoded, target) of a D that reconstructs; `anchors`: LeCam's (a_R, a_F) of this step."""
        terms: Terms = {"adv": (1.0, self.d_adv(real_logits, fake_logits))}
        if anchors is not None:
            terms["lecam"] = (self.lecam, lecam_penalty(real_logits, fake_logits, anchors))
        if pairs:
            terms["recon"] = (self.recon_weight, self.reconstruction(pairs))
        if inputs is not None:
            terms["r1"] = (0.5 * self.r1_gamma * self.r1_every, r1_penalty(real_logits, inputs))
        return terms

    def reconstruction(self, pairs: list[tuple[Tensor, Tensor]]) -> Tensor:
        """FastGAN's L_recons (sec. 3.2): per decoder the mean perceptual distance to its target, summed."""
        if self.perceptual is None:
            raise ValueError("the discriminator reconstructs real images but the loss has no perceptual network")
        return sum(self.perceptual(decoded, target).float().mean() for decoded, target in pairs)

    def g_labels(self, y: Tensor) -> Tensor:
        """The classes G's step draws: with mode seeking, pairs (i, i + n/2) of one class, which it compares."""
        if self.mode_seeking <= 0:
            return y
        half = len(y) // 2
        return torch.cat([y[:half], y[:half], y[2 * half:]])

    def g_terms(self, fake_logits: Tensor, fake: Tensor, z: Tensor) -> Terms:
        """G's terms on one micro-batch: D's logits on G's images `fake`, made from latents `z`."""
        terms: Terms = {"adv": (1.0, g_hinge(fake_logits))}
        if self.mode_seeking > 0:
            terms["mode_seeking"] = (self.mode_seeking, mode_seeking(fake, z))
        return terms

    def add_orthogonal_gradient(self, G: nn.Module) -> None:
        """Add the gradient of BigGAN's orthogonal regulariser (sec. 3.1) to G's unscaled gradients.

        It depends only on G's weights, identical on every process, so it is added after DDP's all-reduce
        with ``autograd.grad`` (which does not fire DDP's gradient hooks) instead of through a loss.
        """
        if self.ortho_beta <= 0:
            return
        params = [p for p in G.parameters() if p.requires_grad]
        device = params[0].device if params else torch.device("cpu")
        with torch.autocast(device_type=device.type, enabled=False):
            reg = orthogonal_regularization(G, self.ortho_beta)
        if not reg.requires_grad:
            return
        grads = torch.autograd.grad(reg, params, allow_unused=True)
        for p, g in zip(params, grads):
            if g is not None:
                p.grad = g if p.grad is None else p.grad.add_(g)


def build_loss(t: TrainConfig, perceptual: nn.Module | None = None) -> GANLoss:
    """The loss a run's train.* settings describe."""
    return GANLoss(d_adv=D_LOSSES[t.loss], r1_gamma=t.r1_gamma, r1_every=t.r1_every, lecam=t.lecam,
                   recon_weight=t.recon_weight, perceptual=perceptual, ortho_beta=t.ortho_beta,
                   mode_seeking=t.mode_seeking)
