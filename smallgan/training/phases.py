"""One optimiser step of D and of G, each accumulated over its own micro-batches.

Accumulation is driven here rather than by ``accelerator.accumulate``: BigGAN's D and G phases have separate
micro-batch loops, and entering Accelerate's context once per network would advance its shared counter twice
per micro-batch. So the Accelerator keeps ``gradient_accumulation_steps=1``; each micro-batch loss is divided
by the number of accumulation steps, and all but the last micro-batch run under ``no_sync`` so DDP all-reduces
gradients once per optimiser step.

Each network has its own GradScaler: with fp16, D and G gradients differ by orders of magnitude and step at
different times, and one shared scale would be updated twice per iteration; with fp32 and bf16 it is a
:class:`UnitScaler` that only skips non-finite steps. Accelerate is used for device placement, DDP and autocast.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from smallgan.augment import DiffAugment
from smallgan.latents import sample_latents
from smallgan.losses import D_LOSSES, g_hinge, mode_seeking, r1_penalty
from smallgan.registry import capabilities_of
from smallgan.regularizers import LeCam, orthogonal_regularization


@dataclass
class GANPhases:
    accelerator: object              # accelerate.Accelerator
    G: nn.Module                     # as prepared (DDP-wrapped on several processes): trains in the G phase
    D: nn.Module                     # as prepared: trains in the D phase
    G_raw: nn.Module                 # the same modules unwrapped: used frozen in the other phase, so DDP
    D_raw: nn.Module                 #   never sees a forward whose gradients it will not reduce
    augment: DiffAugment
    d_loss_name: str
    micro_batch: int
    accumulation: int
    r1_gamma: float = 0.0
    ortho_beta: float = 0.0
    perceptual: nn.Module | None = None   # LPIPS, for a D that reconstructs real images (FastGAN)
    recon_weight: float = 1.0
    # D is told how many leading images are real (registry.Capabilities); None: as D's architecture registers.
    splits_real_fake: bool | None = None
    # Few-shot regularisers: sees D's logits on each real micro-batch (the r_t gauge, training/ada.py), and
    # LeCam's penalty on D (regularizers.py); None = neither.
    observe_real: Callable[[Tensor], None] | None = None
    lecam: LeCam | None = None
    mode_seeking: float = 0.0        # weight of MSGAN's term in G's loss (losses.mode_seeking); 0 = off

    def __post_init__(self) -> None:
        self.d_loss = D_LOSSES[self.d_loss_name]
        self.z_dim: int = self.G_raw.z_dim
        self.n_classes: int = self.G_raw.n_classes
        if self.splits_real_fake is None:
            self.splits_real_fake = capabilities_of(self.D_raw).splits_real_fake
        self.last_recon: Tensor | None = None  # mean reconstruction loss of the last D step, for the logs
        # What of D trains (all of it unless fine-tuning froze blocks, train.freeze_d): the G phase freezes it
        # and gives back exactly this set.
        self._d_trainable = [p for p in self.D_raw.parameters() if p.requires_grad]

    def _d_trains(self, on: bool) -> None:
        for p in self._d_trainable:
            p.requires_grad_(on)

    def _sync_context(self, model: nn.Module, micro_index: int) -> contextlib.AbstractContextManager:
        last = micro_index == self.accumulation - 1
        return contextlib.nullcontext() if last else self.accelerator.no_sync(model)

    def _latents(self) -> tuple[Tensor, Tensor]:
        return sample_latents(self.micro_batch, self.z_dim, self.n_classes, device=self.accelerator.device)

    def discriminator(self, reals: Callable[[], tuple[Tensor, Tensor]], scaler: torch.amp.GradScaler) -> Tensor:
        """Accumulate D's gradients for one optimiser step; returns the mean loss (a device tensor)."""
        self._d_trains(True)
        total = torch.zeros((), device=self.accelerator.device)
        recon_total = torch.zeros((), device=self.accelerator.device)
        anchors = self.lecam.anchors() if self.lecam is not None else None   # the same for every micro-batch
        for i in range(self.accumulation):
            x_real, y_real = reals()
            z, y_fake = self._latents()
            with self._sync_context(self.D, i):
                with torch.no_grad(), self.accelerator.autocast():
                    fake = self.G_raw(z, y_fake)
                with self.accelerator.autocast():
                    # Real and fake in one D forward: one batch through DDP per micro-batch, avoiding the
                    # buffer-broadcast in-place error of two forwards (accelerate-gan.md).
                    x = torch.cat([x_real, fake.to(x_real.dtype)])
                    x = self.augment(x)
                    if self.r1_gamma > 0:
                        x.requires_grad_(True)
                    y = torch.cat([y_real, y_fake])
                    if self.splits_real_fake:
                        logits, pairs = self.D(x, y, n_real=x_real.shape[0])
                    else:
                        logits, pairs = self.D(x, y), []
                    logits = logits.float()
                    real_logits, fake_logits = logits.split([x_real.shape[0], fake.shape[0]])
                    loss = self.d_loss(real_logits, fake_logits)
                    if self.observe_real is not None:
                        self.observe_real(real_logits)
                    if self.lecam is not None:
                        loss = loss + self.lecam.penalty(real_logits, fake_logits, anchors)
                    if pairs:
                        recon = self.reconstruction_loss(pairs)
                        loss = loss + self.recon_weight * recon
                        recon_total += recon.detach()
                    if self.r1_gamma > 0:
                        loss = loss + 0.5 * self.r1_gamma * r1_penalty(real_logits, x)
                scaler.scale(loss / self.accumulation).backward()
            total += loss.detach()
        if self.lecam is not None:
            self.lecam.end_step()
        self.last_recon = recon_total / self.accumulation
        return total / self.accumulation

    def reconstruction_loss(self, pairs: list[tuple[Tensor, Tensor]]) -> Tensor:
        """FastGAN's L_recons (sec. 3.2): per decoder the mean perceptual distance to its target, summed."""
        if self.perceptual is None:
            raise ValueError("the discriminator reconstructs real images but GANPhases has no perceptual loss")
        return sum(self.perceptual(decoded, target).float().mean() for decoded, target in pairs)

    def generator(self, scaler: torch.amp.GradScaler) -> Tensor:
        """Accumulate G's gradients for one optimiser step; returns the mean loss (a device tensor)."""
        # Freeze D so G's backward does not leave gradients in D's .grad (StyleGAN2-ADA does the same).
        self._d_trains(False)
        total = torch.zeros((), device=self.accelerator.device)
        try:
            for i in range(self.accumulation):
                z, y = self._latents()
                if self.mode_seeking > 0:   # pairs (i, i + n/2) of one class: the term compares them
                    half = len(y) // 2
                    y = torch.cat([y[:half], y[:half], y[2 * half:]])
                with self._sync_context(self.G, i):
                    with self.accelerator.autocast():
                        fake = self.G(z, y)
                        loss = g_hinge(self.D_raw(self.augment(fake), y).float())
                        if self.mode_seeking > 0:
                            loss = loss + self.mode_seeking * mode_seeking(fake, z)
                    scaler.scale(loss / self.accumulation).backward()
                total += loss.detach()
        finally:
            self._d_trains(True)
        return total / self.accumulation

    def add_orthogonal_gradient(self) -> None:
        """Add the gradient of BigGAN's orthogonal regulariser (sec. 3.1) to G's unscaled gradients.

        It depends only on G's weights, identical on every process, so it is added after DDP's all-reduce
        with ``autograd.grad`` (which does not fire DDP's gradient hooks) instead of through a loss.
        """
        if self.ortho_beta <= 0:
            return
        params = [p for p in self.G_raw.parameters() if p.requires_grad]
        with torch.autocast(device_type=self.accelerator.device.type, enabled=False):
            reg = orthogonal_regularization(self.G_raw, self.ortho_beta)
        if not reg.requires_grad:
            return
        grads = torch.autograd.grad(reg, params, allow_unused=True)
        for p, g in zip(params, grads):
            if g is not None:
                p.grad = g if p.grad is None else p.grad.add_(g)


class UnitScaler(torch.amp.GradScaler):
    """A GradScaler held at scale 1, for fp32 and bf16 (their range needs no loss scaling).

    Its ``step`` is PyTorch's public way to skip an optimiser step whose gradients are non-finite: a fused
    optimiser reads the flag on the device, so the skip costs no host sync. Multiplying by 1 is exact, so the
    updates are those of an unscaled step. Its state is empty, as a disabled scaler's, so checkpoints of fp32
    and bf16 runs keep their format and load either way.
    """

    def __init__(self, device: str) -> None:
        super().__init__(device, init_scale=1.0)

    def update(self, new_scale: float | Tensor | None = None) -> None:
        super().update(1.0)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state_dict: dict) -> None:
        pass


def non_finite(params: list[nn.Parameter]) -> Tensor:
    """A device scalar, 1.0 when a gradient holds inf or NaN: their total 2-norm is then inf or NaN.

    The 2-norm rather than the inf-norm (exact, but 4x slower on CPU): it also reads as non-finite when the
    squares of finite gradients overflow float32 (|g| ~ 1e19), a run long diverged by then.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros((), device=params[0].device)
    return (~torch.isfinite(torch.nn.utils.get_total_norm(grads))).float()


def optimizer_step(
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    params: list[nn.Parameter],
    before_step: Callable[[], None] | None = None,
) -> Tensor:
    """Unscale, check, step. Returns a device scalar: 1.0 when the step was skipped (non-finite gradients).

    Gradients are all-reduced before this point, so every process takes the same decision. ``scaler.step``
    skips a step whose unscaled gradients are non-finite; a fused optimiser reads that flag on the device and
    leaves weights, moments and its step count untouched, so no case costs a host sync (the loop reads the
    skip counters at log intervals). With fp16 the scaler also lowers its scale. The returned flag is
    measured here on the same unscaled gradients (public API only). A disabled scaler or an unfused
    optimiser costs one host sync a step.
    """
    if scaler.is_enabled():
        scaler.unscale_(optimizer)
        skipped = non_finite(params)
        if before_step is not None:
            before_step()
        scaler.step(optimizer)
        scaler.update()
    else:
        skipped = non_finite(params)
        if before_step is not None:
            before_step()
        if not skipped.item():
            optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return skipped
