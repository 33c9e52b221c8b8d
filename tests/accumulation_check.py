"""Shared by test_training.py (1 process) and dist_accumulation.py (2 processes under torchrun).

Computes D's gradient for one optimiser step through the real D phase (micro-batches, accumulation, DDP
no_sync) and the same gradient from one full-batch forward/backward, and returns the largest difference relative to
each gradient's largest entry. With ``lecam`` > 0 both add LeCam's penalty (with anchors away from zero) and the
averages it updates after the step are compared too: one all-reduced update equal to the full batch's.
D and G are in eval mode: D has no BatchNorm, and eval mode freezes the spectral-norm power iteration, so the
only difference between the two computations is how the batch is split.
"""

import copy

import torch

from smallgan.augment import DiffAugment
from smallgan.config import load_config
from smallgan.losses import d_hinge
from smallgan.registry import build_discriminator, build_generator
from smallgan.regularizers import LeCam
from smallgan.training.loss import GANLoss
from smallgan.training.phases import GANPhases

FULL_BATCH = 8


def accumulated_vs_full_gradient(accelerator, micro_batch: int = 2, lecam: float = 0.0) -> float:
    rank, world = accelerator.process_index, accelerator.num_processes
    cfg = load_config("tiny-cpu", ["model.ch=4", "model.z_dim=32", "model.shared_dim=8", "model.n_classes=3"])
    torch.manual_seed(0)  # identical weights and data on every process
    G = build_generator(cfg.model).eval()
    D = build_discriminator(cfg.model).eval()
    D_ref = copy.deepcopy(D)
    reals = torch.rand(FULL_BATCH, 3, 32, 32) * 2 - 1
    real_y = torch.randint(3, (FULL_BATCH,))
    z = torch.randn(FULL_BATCH, G.z_dim)
    fake_y = torch.randint(3, (FULL_BATCH,))

    # Full batch: one forward of all reals and fakes, as the D phase does per micro-batch.
    with torch.no_grad():
        fakes = G(z, fake_y)
    logits = D_ref(torch.cat([reals, fakes]), torch.cat([real_y, fake_y]))
    real_logits, fake_logits = logits[:FULL_BATCH], logits[FULL_BATCH:]
    loss = d_hinge(real_logits, fake_logits)
    reg = None
    if lecam:
        reg = LeCam(0.9, accelerator)
        reg.ema.copy_(torch.tensor([0.05, -0.03]))   # anchors 0.5 and -0.3 after one debiased update
        reg.updates.fill_(1)
        a_real, a_fake = reg.anchors().tolist()
        loss = loss + lecam * ((real_logits - a_fake).relu().square().mean() + (a_real - fake_logits).relu().square().mean())
        expected_ema = 0.9 * reg.ema + 0.1 * torch.stack([real_logits.mean(), fake_logits.mean()]).detach()
    loss.backward()

    # This process's shard, split into micro-batches.
    per_rank = FULL_BATCH // world
    shard = slice(rank * per_rank, (rank + 1) * per_rank)
    accumulation = per_rank // micro_batch
    real_batches = iter(zip(reals[shard].split(micro_batch), real_y[shard].split(micro_batch)))
    latent_batches = iter(zip(z[shard].split(micro_batch), fake_y[shard].split(micro_batch)))
    D_wrapped = accelerator.prepare(D)
    phases = GANPhases(accelerator=accelerator, G=G, D=D_wrapped, G_raw=G, D_raw=D, augment=DiffAugment(""),
                       loss=GANLoss(d_hinge, lecam=lecam), micro_batch=micro_batch, accumulation=accumulation)
    phases._latents = lambda: next(latent_batches)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    result = phases.discriminator(lambda: next(real_batches), scaler, p=1.0,
                                  anchors=reg.anchors() if reg is not None else None)
    if reg is not None:
        reg.update(result.real_logits, result.fake_logits)
    assert next(real_batches, None) is None  # every micro-batch was used once

    # Relative to each gradient's scale: sum-pooled D features make absolute values vary by layer.
    diffs = [((p.grad - q.grad).abs().max() / q.grad.abs().max().clamp_min(1e-12)).item()
             for p, q in zip(D.parameters(), D_ref.parameters()) if q.grad is not None]
    assert len(diffs) > 5 and all(p.grad is not None for p in D.parameters() if p.requires_grad)
    if reg is not None:   # the averages after the step: the full batch's means, on every process
        diffs.append((reg.ema - expected_ema).abs().max().item())
        assert reg.updates.item() == 2
    return max(diffs)
