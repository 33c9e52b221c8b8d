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
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor, nn

from smallgan.augment import DiffAugment
from smallgan.latents import sample_latents
from smallgan.registry import capabilities_of
from smallgan.training.loss import GANLoss, Terms, total


@dataclass
class PhaseResult:
    """What one D or G optimiser step computed: each term's value averaged over the micro-batches (unweighted,
    device scalars), the total loss (weighted), and D's logits per micro-batch (D steps: the r_t gauge and
    LeCam's anchors are made from them)."""

    loss: Tensor
    terms: dict[str, Tensor]
    real_logits: list[Tensor] = field(default_factory=list)
    fake_logits: list[Tensor] = field(default_factory=list)


@dataclass
class GANPhases:
    accelerator: object              # accelerate.Accelerator
    G: nn.Module                     # as prepared (DDP-wrapped on several processes): trains in the G phase
    D: nn.Module                     # as prepared: trains in the D phase
    G_raw: nn.Module                 # the same modules unwrapped: used frozen in the other phase, so DDP
    D_raw: nn.Module                 #   never sees a forward whose gradients it will not reduce
    augment: DiffAugment
    loss: GANLoss
    micro_batch: int
    accumulation: int
    # D is told how many leading images are real (registry.Capabilities); None: as D's architecture registers.
    splits_real_fake: bool | None = None

    def __post_init__(self) -> None:
        self.z_dim: int = self.G_raw.z_dim
        self.n_classes: int = self.G_raw.n_classes
        if self.splits_real_fake is None:
            self.splits_real_fake = capabilities_of(self.D_raw).splits_real_fake
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

    def discriminator(self, reals: Callable[[], tuple[Tensor, Tensor]], scaler: torch.amp.GradScaler, *,
                      p: Tensor | float, r1: bool = False, anchors: Tensor | None = None) -> PhaseResult:
        """Accumulate D's gradients for one optimiser step. `p`: DiffAugment's probability now; `r1`: whether
        this step computes R1 (GANLoss.r1_due); `anchors`: LeCam's, when it is on."""
        self._d_trains(True)
        sums, real_out, fake_out = _Sums(self.accelerator.device), [], []
        for i in range(self.accumulation):
            x_real, y_real = reals()
            z, y_fake = self._latents()
            with self._sync_context(self.D, i):
                with torch.no_grad(), self.accelerator.autocast():
                    fake = self.G_raw(z, y_fake)
                with self.accelerator.autocast():
                    # Real and fake in one D forward: one batch through DDP per micro-batch, avoiding the
                    # buffer-broadcast in-place error of two forwards (accelerate-gan.md).
                    x = self.augment(torch.cat([x_real, fake.to(x_real.dtype)]), p=p)
                    if r1:
                        x.requires_grad_(True)
                    y = torch.cat([y_real, y_fake])
                    if self.splits_real_fake:
                        logits, pairs = self.D(x, y, n_real=x_real.shape[0])
                    else:
                        logits, pairs = self.D(x, y), []
                    real_logits, fake_logits = logits.float().split([x_real.shape[0], fake.shape[0]])
                    terms = self.loss.d_terms(real_logits, fake_logits, inputs=x if r1 else None, pairs=pairs,
                                              anchors=anchors)
                    loss = total(terms)
                scaler.scale(loss / self.accumulation).backward()
            sums.add(loss, terms)
            real_out.append(real_logits.detach())
            fake_out.append(fake_logits.detach())
        return PhaseResult(*sums.means(self.accumulation), real_logits=real_out, fake_logits=fake_out)

    def generator(self, scaler: torch.amp.GradScaler, *, p: Tensor | float) -> PhaseResult:
        """Accumulate G's gradients for one optimiser step (`p`: DiffAugment's probability now)."""
        # Freeze D so G's backward does not leave gradients in D's .grad (StyleGAN2-ADA does the same).
        self._d_trains(False)
        sums = _Sums(self.accelerator.device)
        try:
            for i in range(self.accumulation):
                z, y = self._latents()
                y = self.loss.g_labels(y)
                with self._sync_context(self.G, i):
                    with self.accelerator.autocast():
                        fake = self.G(z, y)
                        terms = self.loss.g_terms(self.D_raw(self.augment(fake, p=p), y).float(), fake, z)
                        loss = total(terms)
                    scaler.scale(loss / self.accumulation).backward()
                sums.add(loss, terms)
        finally:
            self._d_trains(True)
        loss, terms = sums.means(self.accumulation)
        return PhaseResult(loss=loss, terms=terms)


class _Sums:
    """Running sums of a phase's loss and terms on the device (no host sync)."""

    def __init__(self, device: torch.device) -> None:
        self.loss = torch.zeros((), device=device)
        self.terms: dict[str, Tensor] = {}

    def add(self, loss: Tensor, terms: Terms) -> None:
        self.loss += loss.detach()
        for name, (_, value) in terms.items():
            self.terms[name] = self.terms.get(name, 0) + value.detach()

    def means(self, n: int) -> tuple[Tensor, dict[str, Tensor]]:
        return self.loss / n, {name: v / n for name, v in self.terms.items()}


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
    params: list[nn.Parameter] | None = None,
    before_step: Callable[[], None] | None = None,
) -> Tensor:
    """Unscale, check, step. Returns a device scalar: 1.0 when the step was skipped (non-finite gradients).

    Gradients are all-reduced before this point, so every process takes the same decision. ``scaler.step``
    skips a step whose unscaled gradients are non-finite; a fused optimiser reads that flag on the device and
    leaves weights, moments and its step count untouched, so no case costs a host sync (the loop reads the
    skip counters at log intervals). With fp16 the scaler also lowers its scale. The returned flag is
    measured here on the same unscaled gradients (public API only). A disabled scaler or an unfused
    optimiser costs one host sync a step. `params`: those whose gradients are checked; None: the optimiser's.
    """
    if params is None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
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
