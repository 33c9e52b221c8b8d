"""Fine-tuning: a new run that starts from another run's weights (train.init), for a new set of classes, and
what of G and D stays frozen while it trains (train.freeze_d, train.finetune).

Starting from a GAN trained on a large data set beats training from scratch on a few hundred images (Wang et
al. 2018, "Transferring GANs"; FreezeD, Mo et al. 2020; MineGAN, Wang et al. 2020). Everything but the class
embeddings is loaded as it is: G's shared embedding and D's projection embedding have one row per class, so
they are rebuilt for the new classes from the pretrained rows (train.init_classes picks one per new class,
else their mean plus small noise). A new run, not a resume: fresh optimisers, step 0, its own run folder.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import Tensor, nn

from smallgan import checkpoint as ckpt
from smallgan import runs
from smallgan.config import Config, ModelConfig, TrainConfig, read_config, with_overrides
from smallgan.ema import EMA
from smallgan.errors import SmallganError
from smallgan.layers.conditional_bn import ConditionalBatchNorm2d
from smallgan.layers.spectral_norm import converge_power_iteration_
from smallgan.registry import build_discriminator, build_generator, capabilities, resolved

__all__ = [
    "NOISE", "adapt_state", "apply_freezing", "config_for_init", "init_checkpoint", "load_pretrained", "trainable",
    "trainable_summary",
]

# Rows for new classes without train.init_classes: the pretrained mean plus this much of the per-dimension
# spread across pretrained classes, so that the new classes start apart (G's conditional gains differ from the
# first step) and no closer to any one pretrained class than to another.
NOISE = 0.1
# Settings that may differ from the pretrained run: the class count, and how an embedding is initialised
# (it is loaded instead).
FREE_MODEL_KEYS = ("n_classes", "shared_init")


def init_checkpoint(path: str) -> Path:
    """The checkpoint folder train.init names: a checkpoints/step-* folder, or a run folder (its newest), local or
    on the Hugging Face Hub (hf:USER/NAME)."""
    from smallgan.hub import resolve_run

    folder = resolve_run(path).expanduser()
    if (folder / ckpt.STATE_FILE).is_file():
        return folder
    latest = runs.latest_checkpoint(folder) if folder.is_dir() else None
    if latest is None:
        what = "does not exist" if not folder.exists() else "has no checkpoint (G and D weights)"
        raise SmallganError(f"train.init={path}: {what}; pass a run folder with checkpoints/ (a smallgan run, or "
                            "one written by `smallgan convert`) or a checkpoints/step-* folder")
    return latest


def config_for_init(init: str, overrides: list[str]) -> Config:
    """A new run from `init` without a recipe: the source's model (only the class count, taken from the new data,
    may differ, so nothing is asked for), every other setting smallgan's default (config.py: the paper's
    fine-tuning rates), then `overrides`; the run folder is named after the source unless train.name says."""
    theirs = read_config(init_checkpoint(init) / "config.json")
    cfg = Config(model=dataclasses.replace(theirs.model, n_classes=0))
    cfg.train.name = f"{Path(init.split(':')[-1]).name}-finetune"
    cfg.recipe = ""
    return with_overrides(cfg, [*overrides, f"train.init={init}"])


def _check_same_model(theirs: ModelConfig, ours: ModelConfig, source: Path) -> None:
    theirs, ours = resolved(theirs), resolved(ours)     # d_ch = 0 means "as ch": compare what each builds
    differ = [f.name for f in dataclasses.fields(ModelConfig)
              if f.name not in FREE_MODEL_KEYS and getattr(theirs, f.name) != getattr(ours, f.name)]
    if differ:
        shown = ", ".join(f"model.{k}={getattr(theirs, k)!r} (this run: {getattr(ours, k)!r})" for k in differ)
        sets = " ".join(f"--set model.{k}={_toml(getattr(theirs, k))}" for k in differ)
        raise SmallganError(f"train.init={source} was trained with {shown}; only the class count may differ: use "
                            f"a recipe with its architecture (finetune128 for the BigGAN authors' 128 px "
                            f"checkpoints) or {sets}")


def _toml(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value).replace(" ", "")


def _class_rows(pretrained: Tensor, n_new: int, init_classes: list[int], generator: torch.Generator) -> Tensor:
    """(n_new, dim) rows for the new classes from the (n_old, dim) pretrained ones."""
    if init_classes:
        return pretrained[torch.tensor(init_classes)].clone()
    mean = pretrained.mean(0, keepdim=True)
    if n_new == 1:
        return mean.clone()
    spread = pretrained.std(0, keepdim=True) if pretrained.shape[0] > 1 else torch.zeros_like(mean)
    noise = torch.randn(n_new, pretrained.shape[1], generator=generator, dtype=pretrained.dtype)
    return mean + NOISE * spread * noise


def _embedding_prefixes(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, nn.Embedding)]


def _under(key: str, prefixes: list[str]) -> str | None:
    return next((p for p in prefixes if key.startswith(p + ".")), None)


def adapt_state(model: nn.Module, pretrained: dict[str, Tensor], their_embeddings: list[str],
                init_classes: list[int], seed: int, source: Path) -> list[str]:
    """Load `pretrained` into `model` (built for the new classes), rebuilding the class embeddings (modules
    `their_embeddings` in the pretrained network). Returns the embeddings that start fresh (none pretrained)."""
    ours, our_embeddings = model.state_dict(), _embedding_prefixes(model)
    merged: dict[str, Tensor] = {}
    for key, value in pretrained.items():
        prefix = _under(key, their_embeddings)
        if prefix is None:
            if key not in ours:
                raise SmallganError(f"train.init={source}: {key} has no place in this run's model")
            if ours[key].shape != value.shape:
                raise SmallganError(f"train.init={source}: {key} has shape {tuple(value.shape)}, this run's "
                                    f"model {tuple(ours[key].shape)}")
            merged[key] = value
        elif prefix in our_embeddings and key.endswith((".weight", ".original")):  # rows = classes (SN or not)
            if init_classes and max(init_classes) >= value.shape[0]:
                raise SmallganError(f"train.init_classes: class {max(init_classes)} is not among the "
                                    f"{value.shape[0]} classes of {source}")
            generator = torch.Generator().manual_seed(seed)   # the same rows for G and its EMA
            merged[key] = _class_rows(value.float(), ours[key].shape[0], init_classes, generator).to(value.dtype)
        # Else: an embedding this run does not have (an unconditional run drops D's class projection), or its
        # spectral-norm vectors (u has an entry per class), which start over below.
    missing = [k for k in ours if k not in merged and _under(k, our_embeddings) is None]
    if missing:
        raise SmallganError(f"train.init={source}: no pretrained weights for {', '.join(missing[:3])}")
    for key, tensor in ours.items():
        merged.setdefault(key, tensor)
    model.load_state_dict(merged)
    for prefix in set(our_embeddings) & set(their_embeddings):
        converge_power_iteration_(model.get_submodule(prefix))   # new rows need their own sigma estimate
    return [p for p in our_embeddings if p not in their_embeddings]


def load_pretrained(G: nn.Module, D: nn.Module, ema: EMA, cfg: Config, n_classes: int) -> list[str]:
    """Start G, D and G's EMA from the checkpoint train.init names; returns notes on what was loaded."""
    t, notes = cfg.train, []
    source = init_checkpoint(t.init)
    weights, _, theirs = ckpt.load_checkpoint(source)
    _check_same_model(theirs.model, cfg.model, source)
    if t.init_classes and len(t.init_classes) != n_classes:
        raise SmallganError(f"train.init_classes has {len(t.init_classes)} entries for the {n_classes} classes of "
                            "this data set; give one pretrained class per class (or none: their mean)")
    for name in ("G", "D"):
        if name not in weights:
            raise SmallganError(f"train.init={source}: no {name}.safetensors; the checkpoint is incomplete")
    with torch.device("meta"):   # the pretrained networks' layout, without their memory
        their_g, their_d = build_generator(theirs.model), build_discriminator(theirs.model)
    seed = t.seed + 1            # its own stream: the rows of new classes do not repeat the weight init's noise
    for name, module, layout in (("G", G, their_g), ("D", D, their_d), ("G_ema", ema.shadow, their_g)):
        state = weights.get(name, weights["G"])     # a checkpoint without an EMA copy: the EMA starts at G
        fresh = adapt_state(module, state, _embedding_prefixes(layout), t.init_classes, seed, source)
        if fresh and name == "D":
            notes.append(f"D's {', '.join(fresh)} starts fresh: the pretrained D has no class projection")
    how = (f"classes from pretrained {t.init_classes}" if t.init_classes else
           f"{n_classes} class(es) from the mean of {theirs.model.n_classes} pretrained")
    notes.append(f"initialised from {source} ({how}); fresh optimisers, step 0")
    return notes


# ---------------------------------------------------------------------------------------------
# What trains


def _g_norm_modules(G: nn.Module) -> list[nn.Module]:
    """What train.finetune=g_norm trains: G's shared class embedding, each conditional BatchNorm's gain and bias
    projections (full cond_dim x channels linears, spectrally normalised: they map [class, z chunk] to the
    per-channel gain and bias) and the output BatchNorm's per-channel scale and shift. Noguchi & Harada (2019)
    adapt only per-channel scales and shifts; BigGAN's conditional BatchNorm has no per-channel affine of its
    own, so what trains here is the projections that make it: far more weights (2.2M of G's 70.3M parameters
    at 128 px ch 96 and a few classes, against ~15k per-channel values). The run line prints the count."""
    kinds = (nn.Embedding, ConditionalBatchNorm2d, nn.modules.batchnorm._BatchNorm)
    return [m for m in G.modules() if isinstance(m, kinds)]


def apply_freezing(G: nn.Module, D: nn.Module, t: TrainConfig, model_cfg: ModelConfig) -> str | None:
    """Freeze what train.finetune and train.freeze_d leave out of training; returns a note, or None."""
    parts = []
    if t.finetune == "g_norm":
        G.requires_grad_(False)
        for module in _g_norm_modules(G):
            module.requires_grad_(True)     # how many: the run line (trainable_summary)
    if t.freeze_d:
        if not capabilities(model_cfg).d_stages:
            raise SmallganError(f"train.freeze_d: {model_cfg.arch}'s D has no blocks to freeze")
        stages = D.stages()
        if t.freeze_d > len(stages):
            raise SmallganError(f"train.freeze_d={t.freeze_d}, but D has {len(stages)} blocks; "
                                f"choose at most {len(stages) - 1}")
        for stage in stages[:t.freeze_d]:
            for module in stage:
                module.requires_grad_(False)
        parts.append(f"D's first {t.freeze_d} of {len(stages)} blocks are frozen (train.freeze_d)")
    return "; ".join(parts) or None


def trainable(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


def trainable_summary(G: nn.Module, D: nn.Module, t: TrainConfig) -> str:
    """For the run line: how many of G's and D's parameters train (train.finetune, train.freeze_d)."""
    def count(module: nn.Module) -> str:
        return f"{sum(p.numel() for p in trainable(module)):,} of {sum(p.numel() for p in module.parameters()):,}"

    return f"training G {count(G)} parameters (train.finetune={t.finetune}), D {count(D)}"
