"""Spectral normalisation (Miyato et al. 2018): ``W -> W / sigma(W)``, one layer type per base layer.

Why our own rather than ``torch.nn.utils.parametrizations.spectral_norm``: the built-in runs its power
iteration with ``torch.mv``, which autocast downcasts to fp16 on CUDA; a sigma estimated in fp16 drifts and
can overflow. Here the power iteration and sigma always run in float32 with autocast disabled.

Behaviour (as in the BigGAN authors' code): W is viewed as (out, -1); one power iteration per forward in
training mode, none in eval mode (the stored u, v are used); u and v are buffers, so they are saved in the
state dict, broadcast by DDP and carried by deepcopy (the EMA generator).

Layout (the state-dict keys of checkpoints, of the converter and of ``torch.nn.utils.parametrize``): the raw
weight at ``<layer>.parametrizations.weight.original``, the vectors at ``...parametrizations.weight.0.u/v``.
Why not ``parametrize.register_parametrization`` itself: it makes a new ``Parametrized*`` class for every
layer (a network has as many module types as layers, each one more thing for torch.compile to trace and guard,
and none picklable). Here every normalised conv is one class (:class:`SNConv2d`), every linear another, and
so on; on a GPU the power iterations of all weights of a network run together, batched by shape
(:func:`power_iteration_`).
"""

from __future__ import annotations

import contextlib
from collections import defaultdict

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize   # is_parametrized: recognises our layout too


def float32_region(device: torch.device) -> contextlib.AbstractContextManager:
    """Disable autocast on ``device`` (a no-op context on devices without autocast, e.g. meta)."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


class SpectralNorm(nn.Module):
    """Parametrization ``W -> W / sigma(W)`` with sigma from a persistent power iteration."""

    def __init__(self, weight: Tensor, eps: float = 1e-6, init_iterations: int = 10) -> None:
        super().__init__()
        self.eps = eps
        mat = weight.detach().float().flatten(1)
        u = torch.randn(mat.shape[0], device=mat.device)
        v = torch.randn(mat.shape[1], device=mat.device)
        self.register_buffer("u", F.normalize(u, dim=0, eps=eps))
        self.register_buffer("v", F.normalize(v, dim=0, eps=eps))
        # Start from a converged estimate so the first forward already divides by ~sigma_max (skipped for
        # shape-only models built on the meta device, where there is nothing to estimate).
        if not mat.is_meta:
            self._power_iteration(mat, init_iterations)

    @torch.no_grad()
    def _power_iteration(self, mat: Tensor, iterations: int) -> None:
        for _ in range(iterations):
            # In-place updates of the buffers: they are state, not part of the autograd graph.
            self.v.copy_(F.normalize(mat.t() @ self.u, dim=0, eps=self.eps))
            self.u.copy_(F.normalize(mat @ self.v, dim=0, eps=self.eps))

    def sigma(self, weight: Tensor) -> Tensor:
        """u^T W v with the stored vectors (float32, differentiable w.r.t. W, no iteration)."""
        with float32_region(weight.device):
            mat = weight.float().flatten(1)
            # normalize() returns new tensors: the buffers change in place at the next training forward, possibly
            # before backward (D called on reals, then fakes, then one backward). It also keeps sigma right when
            # u, v are not unit vectors, e.g. after an EMA averaged them with the rest of the state dict.
            u = F.normalize(self.u, dim=0, eps=self.eps)
            v = F.normalize(self.v, dim=0, eps=self.eps)
            return torch.dot(u, mat @ v)

    # True: one power iteration per training forward (the authors' code). The training loop turns it off and
    # calls power_iteration_() once per optimiser step instead: the same estimate per update however many
    # micro-batches and forwards the step takes, a forward without in-place buffer writes (so activation
    # checkpointing recomputes it exactly and torch.compile sees no side effects), and none at sampling.
    iterate_in_forward: bool = True

    def forward(self, weight: Tensor) -> Tensor:
        with float32_region(weight.device):
            w = weight.float()
            if self.training and self.iterate_in_forward:
                self._power_iteration(w.flatten(1), 1)
            return (w / self.sigma(w)).to(weight.dtype)


class SpectralWeight(nn.ModuleList):
    """``<layer>.parametrizations.weight``: the raw weight (``original``) and, at index 0, its :class:`SpectralNorm`.

    The layout of ``parametrize``'s ParametrizationList, so the state-dict keys are those of every checkpoint."""

    def __init__(self, original: Tensor, norm: SpectralNorm) -> None:
        super().__init__([norm])
        self.original = nn.Parameter(original.detach(), requires_grad=original.requires_grad)

    def forward(self) -> Tensor:
        return self[0](self.original)


class _NormalisedWeight:
    """Mixin: ``weight`` is the normalised raw weight, computed at each access (as a parametrization's is)."""

    parametrizations: nn.ModuleDict

    @property
    def weight(self) -> Tensor:
        return self.parametrizations.weight()


class SNConv2d(_NormalisedWeight, nn.Conv2d):
    pass


class SNConvTranspose2d(_NormalisedWeight, nn.ConvTranspose2d):
    pass


class SNLinear(_NormalisedWeight, nn.Linear):
    pass


class SNEmbedding(_NormalisedWeight, nn.Embedding):
    pass


_SN_TYPES: dict[type, type] = {nn.Conv2d: SNConv2d, nn.ConvTranspose2d: SNConvTranspose2d, nn.Linear: SNLinear,
                               nn.Embedding: SNEmbedding}


def _spectral_norms(module: nn.Module) -> list[tuple[SpectralNorm, Tensor]]:
    found = []
    for mod in module.modules():
        if parametrize.is_parametrized(mod):
            for plist in mod.parametrizations.values():
                found += [(p, plist.original) for p in plist if isinstance(p, SpectralNorm)]
    return found


def iterate_once_per_step(module: nn.Module) -> None:
    """Stop power iterations inside forward; the owner calls :func:`power_iteration_` once per step."""
    for sn, _ in _spectral_norms(module):
        sn.iterate_in_forward = False


@torch.no_grad()
def _iterate_together(group: list[tuple[SpectralNorm, Tensor]]) -> None:
    """One power iteration of same-shape weights as one batched matmul pair (float32, no autocast); the same
    sums as a layer's own ``_power_iteration``, to float rounding."""
    sns = [sn for sn, _ in group]
    mats = torch.stack([w.detach().float().flatten(1) for _, w in group])   # (N, out, in)
    eps = sns[0].eps
    u = torch.stack([sn.u for sn in sns])
    v = F.normalize(torch.bmm(u.unsqueeze(1), mats).squeeze(1), dim=1, eps=eps)   # W^T u, row-wise
    u = F.normalize(torch.bmm(mats, v.unsqueeze(2)).squeeze(2), dim=1, eps=eps)
    torch._foreach_copy_([sn.v for sn in sns], list(v.unbind(0)))
    torch._foreach_copy_([sn.u for sn in sns], list(u.unbind(0)))


@torch.no_grad()
def power_iteration_(module: nn.Module, batched: bool | None = None) -> None:
    """One power iteration for every spectrally normalised weight of `module` that trains (float32, no
    autocast). A frozen weight (fine-tuning) keeps its estimate too: the layer computes exactly what it did.

    `batched` (default: on every device but the CPU): weights of one shape together, two batched products per
    shape instead of two per layer, for devices where a step is bound by kernel launches. On the CPU the
    per-layer products are faster (the batched form first copies the weights into one stack) and give the
    same numbers to float rounding."""
    groups: dict[tuple, list[tuple[SpectralNorm, Tensor]]] = defaultdict(list)
    for sn, weight in _spectral_norms(module):
        if weight.requires_grad:
            groups[(weight.device, weight.shape[0], weight[0].numel(), sn.eps)].append((sn, weight))
    for (device, *_), group in groups.items():
        with float32_region(device):
            if batched if batched is not None else device.type != "cpu":
                _iterate_together(group)
            else:
                for sn, weight in group:
                    sn._power_iteration(weight.detach().float().flatten(1), 1)


@torch.no_grad()
def converge_power_iteration_(module: nn.Module, tol: float = 1e-6, max_iterations: int = 2000) -> None:
    """Power-iterate every spectrally normalised weight of `module` until sigma settles (relative change below
    `tol` over 10 iterations, at most `max_iterations`).

    For weights whose stored u, v were not computed for them: an averaged (EMA) generator, whose weights are
    not those the training vectors were iterated on. The training vectors are the start (the averaged weights
    are close), so most layers settle in 10-30 iterations; a nearly flat spectrum (top singular values close
    together) needs more, and the sigma it converges to is then within tol of the top singular value
    (tests/test_quality_fixes.py compares with an SVD).
    """
    for sn, weight in _spectral_norms(module):
        with float32_region(weight.device):
            mat = weight.detach().float().flatten(1)
            previous = float(sn.sigma(mat))
            for _ in range(0, max_iterations, 10):
                sn._power_iteration(mat, 10)
                sigma = float(sn.sigma(mat))
                if abs(sigma - previous) <= tol * max(abs(sigma), 1e-12):
                    break
                previous = sigma


def spectral_norm(module: nn.Module, eps: float = 1e-6) -> nn.Module:
    """Spectrally normalise ``module.weight`` in place (a conv, transposed conv, linear or embedding): the module
    becomes its SN type, the raw weight lives at ``parametrizations.weight.original``."""
    sn_type = _SN_TYPES.get(type(module))
    if sn_type is None:
        supported = ", ".join(t.__name__ for t in _SN_TYPES)
        raise TypeError(f"spectral_norm supports {supported}, not {type(module).__name__}")
    weight = module.weight
    del module.weight   # the parameter moves to parametrizations.weight.original
    holder = SpectralWeight(weight, SpectralNorm(weight, eps))
    with torch.no_grad():
        holder()   # one training-mode forward, as parametrize's registration did: seeded models keep their numbers
    module.parametrizations = nn.ModuleDict({"weight": holder})
    module.__class__ = sn_type
    return module


def init_orthogonal(module: nn.Module) -> nn.Module:
    # Orthogonal init of all conv/linear/embedding weights (paper section 3, authors' `init='ortho'`), before
    # SN is attached so its u, v start from the initialised weight.
    nn.init.orthogonal_(module.weight)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)
    return module


def sn_conv2d(in_ch: int, out_ch: int, kernel_size: int = 3, *, bias: bool = True, eps: float = 1e-6) -> nn.Conv2d:
    """Orthogonally initialised, spectrally normalised conv with 'same' padding."""
    conv = nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=bias)
    return spectral_norm(init_orthogonal(conv), eps)


def sn_linear(in_features: int, out_features: int, *, bias: bool = True, eps: float = 1e-6) -> nn.Linear:
    return spectral_norm(init_orthogonal(nn.Linear(in_features, out_features, bias=bias)), eps)


def sn_embedding(num_embeddings: int, dim: int, *, eps: float = 1e-6) -> nn.Embedding:
    return spectral_norm(init_orthogonal(nn.Embedding(num_embeddings, dim)), eps)


@torch.no_grad()
def top_singular_values(module: nn.Module) -> dict[str, float]:
    """The current sigma estimate of every spectrally normalised weight, keyed by layer path.

    These are the paper's sigma_0 of each raw weight (section 4.1): they grow and explode at collapse.
    Uses the stored u, v (no power iteration, buffers unchanged).
    """
    out: dict[str, float] = {}
    for path, mod in module.named_modules():
        if not parametrize.is_parametrized(mod):
            continue
        for tensor_name, plist in mod.parametrizations.items():
            for p in plist:
                if isinstance(p, SpectralNorm):
                    key = f"{path}.{tensor_name}" if path else tensor_name
                    out[key] = float(p.sigma(plist.original))
    return out
