"""A trained generator ready to sample: latents, class selection, batching and standing statistics.

Every image smallgan generates comes through :class:`TrainedGenerator`: ``smallgan sample`` and the Python
API, the training loop's progress grids, evaluation (``smallgan eval`` and ``train.eval_every``) and
``smallgan compare``. Files are written and loaded by :mod:`smallgan.sampling.export`.

Determinism: latents (and the random classes of standing statistics) are drawn on the CPU from a
``torch.Generator`` seeded by the caller, then moved to the device, so a seed gives the same z on every
device and for every batch size. In eval mode BatchNorm uses stored statistics, so mathematically each image
depends on its own (z, y) only; in floating point it also depends on the shape of the forward pass (the CPU's
convolution library picks its algorithm by shape, and another algorithm rounds the last bits differently,
which flips a few pixels once rounded to 8 bits). So the generator always runs on chunks of one fixed shape
(:func:`forward_chunk`), whatever batch size the caller asks for: the same seed gives the same bytes with the
same machine type, torch build and thread count, and images within one level of 255 elsewhere (docs/reproducibility.md).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Union

import torch
from torch import Tensor, nn

from smallgan.config import Config
from smallgan.device import resolve_device
from smallgan.errors import SmallganError
from smallgan.latents import sample_latents, truncated_normal
from smallgan.sampling.images import to_pil, to_uint8

ClassSpec = Union[int, str, Sequence[Union[int, str]], Tensor, None]
Progress = Callable[[int, int], None]   # (images done, images in all)

_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def _describe_classes(class_names: list[str], n_classes: int) -> str:
    shown = ", ".join(class_names[:30]) + (f", ... ({len(class_names)} in all)" if len(class_names) > 30 else "")
    indices = f"an index 0..{n_classes - 1}"
    return f"{shown} (or {indices})" if class_names else indices


def _one_class(item: int | str, class_names: list[str], n_classes: int) -> int:
    if isinstance(item, str):
        name = item.strip()
        if name in class_names:
            return class_names.index(name)
        folded = [i for i, c in enumerate(class_names) if c.casefold() == name.casefold()]
        if len(folded) == 1:
            return folded[0]
        if not name.lstrip("-").isdigit():
            raise SmallganError(f"unknown class {name!r}; this generator's classes are: "
                                f"{_describe_classes(class_names, n_classes)}")
        item = int(name)
    index = int(item)
    if not 0 <= index < n_classes:
        raise SmallganError(f"class index {index} is out of range; this generator's classes are: "
                            f"{_describe_classes(class_names, n_classes)}")
    return index


def resolve_classes(classes: ClassSpec, class_names: list[str], n_classes: int) -> list[int] | None:
    """Class names and/or indices -> indices; None -> None. Unknown names fail listing the valid classes."""
    if classes is None:
        return None
    if isinstance(classes, Tensor):
        classes = classes.reshape(-1).tolist()
    items = [classes] if isinstance(classes, (int, str)) else list(classes)
    if not items:
        raise SmallganError("the class list is empty; name at least one class or leave classes out")
    if n_classes <= 1:
        raise SmallganError("this generator is unconditional (trained on a single class); sample it without "
                            "--class / classes=")
    return [_one_class(c, class_names, n_classes) for c in items]


def forward_chunk(device: torch.device) -> int:
    """Images in every forward pass of a sampling generator on `device`: fixed per device type, never the
    caller's batch size (see the module's note on determinism). Small on the CPU, where a larger batch gains
    little and a padded last chunk costs little; larger on accelerators, which need wide batches to be busy."""
    return 8 if device.type == "cpu" else 32


def standing_batch(config: Config) -> int:
    """The batch size of standing statistics: the recipe's micro-batch (at least 32, for stable batch statistics),
    never a sampling batch size, so statistics, and every image after them, do not change with --batch-size."""
    return max(int(config.train.micro_batch), 32)


def spread(choices: Sequence[int], n: int, nrow: int | None = None) -> Tensor:
    """Labels for n samples cycling through `choices`: per sample, or per grid row of `nrow` images.

    Per sample, a list of exactly n labels comes back unchanged; per row, each grid row shows one class.
    """
    per = max(1, nrow or 1)
    idx = (torch.arange(n) // per) % len(choices)
    return torch.as_tensor(list(choices), dtype=torch.long)[idx]


class TrainedGenerator:
    """A generator loaded for sampling (eval mode, no gradients): ``.sample(n, trunc, classes, seed)``."""

    def __init__(self, module: nn.Module, config: Config, class_names: list[str], path: Path | None = None,
                 step: int | None = None) -> None:
        self.module = module.eval().requires_grad_(False)
        self.config = config
        self.class_names = list(class_names)
        self.path = path      # the file it was loaded from (None: made in memory, e.g. by the training loop)
        self.step = step      # the training step it was exported at, when known

    # -------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    @property
    def z_dim(self) -> int:
        return int(self.module.z_dim)

    @property
    def n_classes(self) -> int:
        return int(self.module.n_classes)

    @property
    def resolution(self) -> int:
        return int(self.config.model.resolution)

    def to(self, device: str | torch.device | None) -> TrainedGenerator:
        self.module.to(resolve_device(device))
        return self

    def __repr__(self) -> str:
        return (f"TrainedGenerator({self.config.model.arch} {self.resolution}px, {self.n_classes} class(es), "
                f"z_dim {self.z_dim}, device {self.device}, from {self.path})")

    # -------------------------------------------------------------------------------------------
    def latents(self, n: int, trunc: float = 0.0, seed: int | None = None) -> Tensor:
        """(n, z_dim) on the CPU: z ~ N(0, I), truncated at `trunc` when > 0 (BigGAN section 3.1).

        The same seed gives the same base draw at every threshold: only entries beyond the threshold are
        redrawn, so a truncation sweep shows the same samples moving towards the mode.
        """
        _check_draw(n, trunc)
        return truncated_normal((n, self.z_dim), trunc, generator=_cpu_generator(seed))

    def random_inputs(self, n: int, trunc: float = 0.0, seed: int | None = None) -> tuple[Tensor, Tensor]:
        """(z, y) on the CPU with classes drawn uniformly, both from one generator seeded with `seed`.

        z is :meth:`latents` (the same seed gives the same z); the classes come after it from the same stream.
        What evaluation and the training loop's progress grids sample: random classes, as in training.
        """
        _check_draw(n, trunc)
        return sample_latents(n, self.z_dim, self.n_classes, trunc=trunc, generator=_cpu_generator(seed))

    def seed_inputs(self, seeds: Sequence[int], trunc: float = 0.0, classes: ClassSpec = None) -> tuple[Tensor, Tensor]:
        """(z, y) on the CPU with one generator per image, seeded by its own seed: image i depends on seeds[i]
        (and trunc, classes) only, not on its neighbours, their number or the batch size. Its z is
        :meth:`latents` of that seed (n=1); its class is drawn next from the same stream, uniformly among
        `classes` (default: all classes)."""
        _check_draw(max(1, len(seeds)), trunc)
        chosen = resolve_classes(classes, self.class_names, self.n_classes) or list(range(self.n_classes))
        z, y = [], []
        for seed in seeds:
            g = _cpu_generator(seed)
            z.append(truncated_normal((1, self.z_dim), trunc, generator=g))
            y.append(chosen[int(torch.randint(len(chosen), (1,), generator=g))])
        return torch.cat(z), torch.as_tensor(y, dtype=torch.long)

    def labels(self, n: int, classes: ClassSpec = None, nrow: int | None = None) -> Tensor:
        """(n,) class labels: the given classes (names or indices) or all classes, spread per sample or row."""
        chosen = resolve_classes(classes, self.class_names, self.n_classes)
        return spread(chosen if chosen is not None else range(self.n_classes), n, nrow)

    def batches(
        self, z: Tensor, y: Tensor, *, batch_size: int = 64, embedding: Tensor | None = None,
        progress: Progress | None = None,
    ) -> Iterator[Tensor]:
        """G(z, y) as uint8 (B, 3, R, R) CPU tensors; `embedding` replaces shared(y) (see below).

        `batch_size` only sets how many images each yielded tensor holds (rounded up to whole chunks): the
        generator itself always runs on :func:`forward_chunk` images, the last chunk padded by repeating its
        last input, so image i's bytes do not depend on `batch_size`, on n or on its neighbours.
        """
        if batch_size < 1:
            raise SmallganError(f"batch size must be at least 1, got {batch_size}")
        n, device = z.shape[0], self.device
        chunk = forward_chunk(device)
        per_batch = -(-batch_size // chunk) * chunk
        with _shared_embedding_override(self.module, embedding is not None) as override:
            for start in range(0, n, per_batch):
                stop = min(start + per_batch, n)
                parts = []
                for first in range(start, stop, chunk):
                    rows = torch.arange(first, first + chunk).clamp_(max=min(first + chunk, stop) - 1)
                    if embedding is not None:
                        override["value"] = embedding[rows].to(device)
                    with torch.no_grad():   # not around the yield: grad mode would leak into the caller's code
                        images = self.module(z[rows].to(device), y[rows].to(device))
                    parts.append(to_uint8(images[: min(chunk, stop - first)]).cpu())
                yield torch.cat(parts)
                if progress is not None:
                    progress(stop, n)

    def generate(self, z: Tensor, y: Tensor, **kwargs: Any) -> Tensor:
        """All of :meth:`batches` in one (n, 3, R, R) uint8 tensor."""
        return torch.cat(list(self.batches(z, y, **kwargs)))

    def sample(
        self, n: int, trunc: float = 0.0, classes: ClassSpec = None, seed: int | None = None, *,
        batch_size: int = 64, as_pil: bool = False, nrow: int | None = None, progress: Progress | None = None,
    ) -> Tensor | list:
        """n images as a uint8 (n, 3, R, R) CPU tensor, or a list of PIL images with ``as_pil=True``.

        ``classes``: None (all classes in turn), one name/index, or several (cycled; n labels are used as
        given). ``nrow``: give each grid row of nrow images one class instead of cycling per image.
        """
        z, y = self.latents(n, trunc, seed), self.labels(n, classes, nrow)
        images = self.generate(z, y, batch_size=batch_size, progress=progress)
        return to_pil(images) if as_pil else images

    def class_embedding(self, classes: Sequence[int]) -> Tensor:
        """The shared class embeddings (BigGAN section 3) of class indices, (len, shared_dim)."""
        shared = _shared(self.module)
        with torch.no_grad():
            return shared(torch.as_tensor(list(classes), dtype=torch.long, device=self.device)).cpu()

    # -------------------------------------------------------------------------------------------
    def standing_stats(self, k: int, trunc: float = 0.0, *, batch_size: int | None = None, seed: int = 0,
                       progress: Progress | None = None) -> TrainedGenerator:
        """BigGAN's "standing statistics" at this truncation, in place (see :func:`standing_statistics`), over
        k batches of `batch_size` images (default :func:`standing_batch` of the generator's recipe)."""
        batch_size = standing_batch(self.config) if batch_size is None else batch_size
        standing_statistics(self.module, k, trunc, batch_size=batch_size, seed=seed, progress=progress)
        return self


@torch.no_grad()
def standing_statistics(module: nn.Module, k: int, trunc: float = 0.0, *, batch_size: int = 64, seed: int = 0,
                        progress: Progress | None = None) -> None:
    """Re-estimate `module`'s BatchNorm statistics over k batches of random latents (BigGAN's "standing
    statistics"), in place: statistics reset, then a plain average (momentum None) over the k batches, classes
    uniform. Only BatchNorm layers enter train mode (spectral norm in train mode would move its u, v); the
    latents come from a CPU generator seeded with `seed`, so the global RNG is untouched. `module` is left in
    eval mode. Needs ``module.z_dim`` and ``module.n_classes``.
    """
    if k < 1:
        raise SmallganError(f"standing statistics need at least 1 forward pass, got {k}")
    if batch_size < 2:
        raise SmallganError("standing statistics need batches of at least 2 images (BatchNorm batch stats)")
    if not trunc >= 0:
        raise SmallganError(f"truncation must be >= 0 (0 = none), got {trunc}")
    norms = [m for m in module.modules() if isinstance(m, _BATCHNORMS) and m.track_running_stats]
    if not norms:
        return
    g = _cpu_generator(seed)
    momenta = [m.momentum for m in norms]
    device = next(module.parameters()).device
    try:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        for i in range(k):
            z = truncated_normal((batch_size, module.z_dim), trunc, generator=g)
            y = torch.randint(module.n_classes, (batch_size,), generator=g)
            module(z.to(device), y.to(device))
            if progress is not None:
                progress(i + 1, k)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        module.eval()


def _check_draw(n: int, trunc: float) -> None:
    if n < 1:
        raise SmallganError(f"the number of samples must be at least 1, got {n}")
    if not math.isfinite(trunc) or trunc < 0:
        raise SmallganError(f"truncation must be >= 0 (0 = none), got {trunc}")


def _cpu_generator(seed: int | None) -> torch.Generator:
    if seed is None:  # from torch's global generator, so torch.manual_seed still makes a script repeatable
        seed = int(torch.randint(0, 2**62, ()).item())
    return torch.Generator().manual_seed(int(seed))


def _shared(module: nn.Module) -> nn.Embedding:
    shared = getattr(module, "shared", None)
    if not isinstance(shared, nn.Embedding):
        raise SmallganError(f"{type(module).__name__} has no shared class embedding; class interpolation needs one")
    return shared


@contextlib.contextmanager
def _shared_embedding_override(module: nn.Module, active: bool) -> Iterator[dict[str, Tensor]]:
    """While active, the shared embedding returns ``holder["value"]`` instead of embed(y).

    This lets a sheet move between classes through embedding space (the paper's class interpolations)
    without a second forward path in the model.
    """
    holder: dict[str, Tensor] = {}
    if not active:
        yield holder
        return
    handle = _shared(module).register_forward_hook(lambda _m, _inp, out: holder["value"].to(out.dtype))
    try:
        yield holder
    finally:
        handle.remove()
