"""Typed configuration: every default lives here, once (the model section in :mod:`smallgan.models.config`).

A run is described by a :class:`Config` (model, data, train, sample, eval sections). A recipe is a TOML file
that overrides some of these fields (``recipes/*.toml``); the command line overrides further with
``--set section.field=value``. Recipes are data: they are parsed, never executed. Unknown keys and
values of the wrong type are refused with a one-line :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smallgan.config_values import IN_STEPS, apply_items, in_kimg, items_of, parse_override
from smallgan.errors import ConfigError, SmallganError
from smallgan.io import read_json
from smallgan.models.config import ModelConfig
from smallgan.recipe_files import read_recipe, recipe_names

__all__ = [
    "SECTIONS", "Config", "ConfigError", "DataConfig", "EvalConfig", "ModelConfig", "SampleConfig",
    "TrainConfig", "config_from_dict", "load_config", "read_config", "recipe_names",
    "validate", "with_overrides",
]


@dataclass
class DataConfig:
    # A prepared dataset folder, an image folder (prepared on the fly), hf:NAME or builtin:NAME. No default: a run
    # never trains on data nobody named (the recipes for your images name ./faces-prepared, tiny-cpu the shapes).
    path: str = ""
    # Random horizontal flips of the real images: "true" | "false" | "dataset" (what `smallgan prepare --flip`
    # recorded; off when it recorded nothing). Off unless asked, as StyleGAN2-ADA's --mirror: on digits, text
    # or logos a flipped image is another (or no) class, and G learns the mirrored ones too.
    flip: str = "dataset"
    workers: int = 0                  # processes when an image folder is prepared on the fly; 0 = all cores
    on_device: bool = True            # keep the whole (small) dataset on the training device as uint8 when it fits


@dataclass
class TrainConfig:
    name: str = ""                    # run folder name under out_dir; "" = the recipe's name
    out_dir: str = "runs"
    seed: int = 0
    # Batch: `batch` images per optimiser step (the paper's 2048) on any number of processes; `micro_batch` is the
    # most one device takes per forward. Each process accumulates equal micro-batches of min(micro_batch, 8) to
    # micro_batch images; a share that does not split evenly is rounded (within 2% from 25 images a process), not
    # cut into smaller micro-batches (training/batch_plan.py; the run line says when the batch moved).
    batch: int = 64
    micro_batch: int = 32
    d_steps: int = 2                  # D updates per G update (paper: 2; ImageNet-128 launch: 1)
    g_lr: float = 5e-5
    d_lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.0, 0.999])
    adam_eps: float = 1e-6
    loss: str = "hinge"               # hinge | fastgan-hinge (randomised real margin)
    ortho_beta: float = 1e-4          # G orthogonal regularisation strength; 0 = off (paper: 1e-4)
    r1_gamma: float = 0.0             # R1 penalty on D (gamma/2 * E||grad D(x)||^2); 0 = off
    r1_every: int = 16                # lazy R1: every N-th D step, weighted x N (StyleGAN2 sec. 4); 1 = every step
    # EMA of G's weights (BigGAN appendix B) in images, as StyleGAN2-ADA/EDM: a weight's share halves every
    # ema_halflife_kimg x 1000 real images through D (batch x d_steps per iteration: the logs' kimg).
    ema_halflife_kimg: float = 887.18 # the paper's 0.9999 per iteration at batch 64 x 2 D steps
    ema_rampup: float = 0.0           # half-life at most ema_rampup x the images so far (EDM: 0.05); 0 = off
    ema_start_kimg: float = 2560.0    # the EMA copies G until then (the authors: iteration 20k); 0 = from the start
    diffaug: str = ""                 # DiffAugment policy, e.g. "color,translation,cutout"; "" = off
    # Fine-tuning (docs/fine-tuning.md). init: a run or checkpoint folder whose G, D and EMA
    # weights a new run starts from (fresh optimisers, step 0; ignored when resuming); every model setting but
    # n_classes must match. New class i starts from pretrained class init_classes[i]; [] = the mean of the
    # pretrained class embeddings plus small noise. freeze_d: D's first K blocks stay as loaded (FreezeD, Mo et
    # al. 2020). finetune: all | g_norm (G trains only its shared class embedding, the linear projections that
    # make each conditional BatchNorm's per-channel gain and bias from [class, z chunk] (cond_dim x channels
    # each: 2.2M of 70.3M at 128 px ch 96) and the output BatchNorm's scale and shift; every conv stays as loaded.
    # After Noguchi & Harada 2019, who train only per-channel scales and shifts; D trains as usual).
    init: str = ""
    init_classes: list[int] = field(default_factory=list)
    freeze_d: int = 0
    finetune: str = "all"
    # Few-shot regularisers (docs/fewshot-regularisers.md). Each op of `diffaug` is applied to an image with
    # probability p: augment_p (lightweight-gan's --aug-prob), or, with ada_target > 0, p starts at augment_p
    # (0 unless given, as StyleGAN2-ADA) and adapts (StyleGAN2-ADA sec. 3): every ada_interval iterations it moves
    # up when r_t = E[sign(D(real))] is above ada_target (D is sure of the training images: it memorises them),
    # down otherwise, by at most 1 per ada_kimg, within [0, ada_p_max].
    augment_p: float = -1.0           # -1 = auto: 1 (every op on every image, DiffAugment as published), 0 with ADA
    ada_target: float = 0.0           # StyleGAN2-ADA's 0.6; 0 = off (p stays augment_p)
    ada_kimg: float = 100.0           # StyleGAN2-ADA's 500 is 2% of its 25M-image runs; few-shot runs are shorter
    ada_interval: int = 4             # iterations between adjustments (StyleGAN2-ADA's 4)
    # ADA's cap on p: above ~0.8 augmentations that are not invertible (cutout, colour) or whose strength
    # distribution has negative frequency lobes (translation, brightness) leak into G (StyleGAN2-ADA sec. 2.2-2.3).
    ada_p_max: float = 0.8
    lecam: float = 0.0                # LeCam weight (Tseng et al. 2021; 0.3 for BigGAN + DiffAugment); 0 = off
    lecam_decay: float = 0.99         # of the averages of D's real and fake outputs LeCam anchors to (the paper's)
    # Mode seeking (Mao et al. 2019, MSGAN eq. 3) in G's loss: pairs of samples of one class are pushed apart in
    # proportion to their latents' distance, so a class cannot collapse to one image (docs/variety.md); 0 = off.
    mode_seeking: float = 0.0
    # Mixed precision through Accelerate: auto | no | fp16 | bf16. auto = what Accelerate is configured for
    # (accelerate launch --mixed_precision, accelerate config), else bf16 on GPUs with native bf16, fp16 on
    # older GPUs, no on CPU (smallgan/device.py); an explicit value wins.
    precision: str = "auto"
    sync_bn: bool = False             # SyncBatchNorm for G on several GPUs (CUDA only)
    # Lengths and intervals in kimg, thousands of real images through D (batch x d_steps per iteration, the logs'
    # kimg), as StyleGAN2-ADA and EDM: a schedule means the same at any batch. Each also takes iterations (G
    # steps): max_steps, log_every, sample_every, ckpt_every, eval_every, sv_every, converted at the final batch and
    # d_steps (the later of the two spellings wins; one place giving max_steps and max_kimg: whichever comes first).
    # The defaults are 1000, 10, 250, 500, 0 and 100 iterations of 64 x 2 images; training/schedule.py turns them
    # into the iterations the loop runs by.
    max_kimg: float = 128.0           # the run's length (> 0)
    max_minutes: float = 0.0          # stop (with a checkpoint) after this wall time; 0 = no limit
    log_every_kimg: float = 1.28      # a log line (and the divergence and max_minutes checks); 0 = only at the end
    sample_every_kimg: float = 32.0   # a progress grid in samples/; 0 = only at the end
    ckpt_every_kimg: float = 64.0     # a checkpoint; 0 = only at the end
    eval_every_kimg: float = 0.0      # FID/KID (eval.metrics) and best/; 0 = off
    sv_every_kimg: float = 12.8       # top singular values of G and D layers (collapse signal); 0 = off
    keep_ckpts: int = 3               # checkpoints kept (oldest removed first)
    max_bad_steps: int = 10           # consecutive non-finite steps: the run has diverged
    # A diverged run: "rollback" reloads the newest checkpoint from before the trouble and retries with other
    # latents, flips and augmentation, learning rates x rollback_lr_factor each time (training/rollback.py), at
    # most max_rollbacks times (lightweight-gan retries 3 times); "stop" stops at once. Either way it ends exit 3.
    on_diverge: str = "rollback"
    max_rollbacks: int = 3
    rollback_lr_factor: float = 0.5   # a retry at the same rates tends to diverge again; 1 = only new seeds
    # FastGAN's self-supervised D: weight of the reconstruction loss (mean LPIPS per real image, summed over
    # the decoders), and the VGG-16 trunk LPIPS uses: a vgg16-397923af.pth file, "" = torch.hub's cache (or a
    # download when online), "random" = an untrained trunk (tests only: the loss then means little).
    recon_weight: float = 1.0
    lpips_weights: str = ""
    # Accelerate tracker for scalars and image grids: auto (TensorBoard when installed) | none | tensorboard | wandb
    log_with: str = "auto"
    # Speed and memory (measured with `smallgan bench`; see docs/speed.md before changing them)
    channels_last: bool = True        # NHWC memory format for G, D and real batches (1.05-1.3x on CPU)
    compile: bool = False             # torch.compile G and D (eager fallback when no compiler is available)
    # torch.compile backend: "inductor" generates kernels; "aot_eager"/"eager" trace the same graphs without
    # generating code (the compile test checks graph breaks and recompiles with them, cheaply, on the CPU)
    compile_backend: str = "inductor"   # one of COMPILE_BACKENDS
    activation_checkpointing: bool = False  # recompute block activations in backward: less memory, more time

    def augment_start(self) -> float:
        """p at step 0: augment_p when given; else 0 with ADA (it raises p only when D overfits), 1 without.
        With ADA never above ada_p_max (older configs saved augment_p = 1 as the default)."""
        if self.ada_target > 0:
            return min(self.augment_p, self.ada_p_max) if self.augment_p >= 0 else 0.0
        return self.augment_p if self.augment_p >= 0 else 1.0


@dataclass
class SampleConfig:
    n: int = 64                       # images in grids written during training
    trunc: float = 0.0                # truncation threshold for training grids; 0 = no truncation


@dataclass
class EvalConfig:
    """Evaluation during training (every train.eval_every_kimg); `smallgan eval` has its own options."""

    n: int = 5000                     # generated images per evaluation
    metrics: list[str] = field(default_factory=lambda: ["kid", "fid"])
    best: str = "kid"                 # keeps best/ by this metric (KID: unbiased on few-shot sets)
    extractor: str = "inception"      # inception (standard, comparable numbers) | tiny (tests only)
    inception_weights: str = ""       # a local weights file for machines without internet
    batch_size: int = 64


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    recipe: str = ""                  # the recipe this config came from (informational)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


# ---------------------------------------------------------------------------------------------
# Loading and overriding: each place (a recipe, a saved config, the command line) is applied in order, then the
# values given in steps are converted and the result validated.


def load_config(recipe: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults, then the recipe (a built-in name or a .toml path), then ``section.key=value`` overrides."""
    cfg = Config()
    if recipe:
        data, cfg.recipe = read_recipe(recipe)
        _apply_dict(cfg, data)
    return with_overrides(cfg, overrides, copy=False)


def with_overrides(cfg: Config, overrides: list[str] | tuple[str, ...], copy: bool = True) -> Config:
    """`cfg` (a copy unless copy=False) with ``section.key=value`` overrides applied, validated (a continued run's
    saved config and the command line's --set options)."""
    cfg = config_from_dict(cfg.to_dict()) if copy else cfg
    apply_items(cfg, SECTIONS, [parse_override(item) for item in overrides])
    _convert_spellings(cfg, announce=True)
    validate(cfg)
    return cfg


def config_from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a Config saved with :meth:`Config.to_dict` (checkpoints, run folders: older ones in steps too);
    strict like recipes."""
    cfg = Config()
    _apply_dict(cfg, data)
    _convert_spellings(cfg, announce=False)  # a saved config's keys are not the user's to change
    return cfg


def read_config(path: str | Path) -> Config:
    """The Config saved in a ``config.json`` (a run folder or a checkpoint); one-line errors when it cannot be."""
    data = read_json(path)
    try:
        if not isinstance(data, dict):
            raise ConfigError(f"expected a JSON object, got {type(data).__name__}")
        return config_from_dict(data)
    except ConfigError as e:
        raise SmallganError(f"{path} holds a config this smallgan does not understand: {e}") from None


SECTIONS = ("model", "data", "train", "sample", "eval")


def _apply_dict(cfg: Config, data: dict[str, Any]) -> None:
    recipe, items = items_of(data, SECTIONS)
    cfg.recipe = cfg.recipe if recipe is None else recipe
    apply_items(cfg, SECTIONS, items)


def _convert_spellings(cfg: Config, announce: bool) -> None:
    """Values given in iterations into kimg, now that batch and d_steps are final; a note for each deprecated key."""
    t = cfg.train
    fields, notes = in_kimg(vars(cfg).pop("_pending", {}), t.batch, t.d_steps, t.max_kimg)
    for name, value in fields.items():
        setattr(t, name, value)
    if announce:   # kept for whoever prints (take_notes): the CLI or the Trainer, once per launch
        vars(cfg).setdefault("_notes", []).extend(notes)


def take_notes(cfg: Config) -> list[str]:
    """The notes loading `cfg` left for the user (deprecated keys converted), removed from it."""
    return vars(cfg).pop("_notes", [])


# ---------------------------------------------------------------------------------------------
# Validation: impossible combinations are refused before any heavy work.

PRECISIONS = ("auto", "no", "fp16", "bf16")   # "auto" is resolved per device (smallgan.device)
FLIPS = ("true", "false", "dataset")
FINETUNE = ("all", "g_norm")                  # what of G trains (smallgan/training/transfer.py)
ON_DIVERGE = ("rollback", "stop")
LOG_WITH = ("auto", "none", "", "tensorboard", "wandb")   # "" = none (configs saved before auto existed)
COMPILE_BACKENDS = ("inductor", "aot_eager", "eager")   # torch.compile backends train.compile may use


def validate(cfg: Config) -> None:
    # Imported here, not at the top: they load torch, and `import smallgan.config` is part of the CLI's start-up.
    from smallgan.losses import D_LOSSES
    from smallgan.registry import capabilities, check_model_config

    m, t = cfg.model, cfg.train
    if m.ch <= 0 or m.d_ch < 0:
        raise ConfigError("model.ch must be > 0 and model.d_ch >= 0 (0 = same as ch)")
    if m.n_classes < 0:
        raise ConfigError("model.n_classes must be >= 0 (0 = from the dataset, 1 = unconditional)")
    choices = (("train.precision", t.precision, PRECISIONS), ("data.flip", cfg.data.flip, FLIPS),
               ("train.loss", t.loss, D_LOSSES), ("train.finetune", t.finetune, FINETUNE),
               ("train.on_diverge", t.on_diverge, ON_DIVERGE), ("train.log_with", t.log_with, LOG_WITH),
               ("train.compile_backend", t.compile_backend, COMPILE_BACKENDS))
    for key, value, allowed in choices:
        if value not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(allowed)}, got {value!r}")
    if t.micro_batch <= 0 or t.batch <= 0:
        raise ConfigError("train.batch and train.micro_batch must be > 0")
    if t.d_steps < 1:
        raise ConfigError("train.d_steps must be >= 1")
    if len(t.betas) != 2 or not all(0.0 <= b < 1.0 for b in t.betas):
        raise ConfigError(f"train.betas must be two numbers in [0, 1), got {t.betas}")
    if not t.max_kimg > 0:
        raise ConfigError(f"train.max_kimg (the run's length) must be > 0, got {t.max_kimg:g}")
    for key in ("ema_halflife_kimg", "ema_rampup", *IN_STEPS.values()):
        if not getattr(t, key) >= 0:
            raise ConfigError(f"train.{key} must be >= 0, got {getattr(t, key):g}")
    if t.freeze_d < 0 or min(t.init_classes, default=0) < 0:
        raise ConfigError("train.freeze_d and the entries of train.init_classes must be >= 0")
    if t.keep_ckpts < 1:
        raise ConfigError("train.keep_ckpts must be >= 1")
    if t.max_rollbacks < 0 or not 0 < t.rollback_lr_factor <= 1:
        raise ConfigError("train.max_rollbacks must be >= 0 and train.rollback_lr_factor in (0, 1]")
    if t.r1_every < 1:
        raise ConfigError(f"train.r1_every must be >= 1 (1 = R1 at every D step), got {t.r1_every}")
    if t.recon_weight < 0 or t.r1_gamma < 0 or t.ortho_beta < 0 or not t.mode_seeking >= 0:
        raise ConfigError("train.recon_weight, train.r1_gamma, train.ortho_beta and train.mode_seeking must be "
                          ">= 0 (0 = off)")
    _validate_fewshot(t)
    if not cfg.sample.trunc >= 0:   # the progress grids sample with it: refused now, not at the first grid
        raise ConfigError(f"sample.trunc must be >= 0 (0 = no truncation), got {cfg.sample.trunc}")
    if t.eval_every_kimg:
        _validate_eval(cfg.eval)
    check_model_config(m)
    if t.freeze_d and not capabilities(m).d_stages:
        raise ConfigError(f"train.freeze_d is for BigGAN discriminators; {m.arch}'s D has no blocks to freeze "
                          "(set train.freeze_d=0)")


def _validate_fewshot(t: TrainConfig) -> None:
    if not (0.0 <= t.augment_p <= 1.0 or t.augment_p == -1.0):
        raise ConfigError(f"train.augment_p must be in [0, 1] (or -1 = auto), got {t.augment_p}")
    if not 0.0 < t.ada_p_max <= 1.0:
        raise ConfigError(f"train.ada_p_max must be in (0, 1], got {t.ada_p_max}")
    for key, value in (("ada_target", t.ada_target), ("lecam_decay", t.lecam_decay)):
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"train.{key} must be in [0, 1), got {value}")
    if not t.ada_kimg > 0 or t.ada_interval < 1 or not t.lecam >= 0:
        raise ConfigError("train.ada_kimg must be > 0, train.ada_interval >= 1 and train.lecam >= 0 (0 = off)")
    if t.ada_target > 0 and not t.diffaug:
        raise ConfigError("train.ada_target adapts how often train.diffaug's ops apply: set train.diffaug too "
                          "(e.g. \"color,translation,cutout\")")


def _validate_eval(e: EvalConfig) -> None:
    from smallgan.metrics.names import EXTRACTORS, direction, metric_of, parse_metrics

    try:
        parse_metrics(e.metrics)
        direction(e.best)
    except SmallganError as err:
        raise ConfigError(f"eval.metrics / eval.best: {err}") from None
    if metric_of(e.best) not in e.metrics:
        raise ConfigError(f"eval.best={e.best!r} must be one of eval.metrics={e.metrics}")
    if e.extractor not in EXTRACTORS:
        raise ConfigError(f"eval.extractor must be one of {', '.join(EXTRACTORS)}, got {e.extractor!r}")
    if e.n < 2:
        raise ConfigError("eval.n must be >= 2")
