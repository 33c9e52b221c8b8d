"""The BigGAN training loop on Hugging Face Accelerate: one CPU, one GPU, many GPUs or nodes, same code.

One iteration = ``d_steps`` D optimiser steps + one G optimiser step, each accumulated over micro-batches so
that every step sees ``train.batch`` images in total (BigGAN's 2048 = 256 x 8 on any number of devices).
All randomness of an iteration comes from a seed derived from (seed, rank, step), and which real images a
process sees is a function of how many it has consumed: a resumed run replays exactly the same trajectory.
"""

from __future__ import annotations

import copy
import math
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from smallgan import checkpoint as ckpt
from smallgan.augment import DiffAugment
from smallgan.config import Config, ConfigError, plan_batches
from smallgan.ema import EMA, prepare_for_sampling
from smallgan.errors import SmallganError
from smallgan.latents import sample_latents
from smallgan.layers.spectral_norm import iterate_once_per_step, power_iteration_, top_singular_values
from smallgan.registry import build_discriminator, build_generator, capabilities
from smallgan.training.batches import (
    FIXED_LATENTS_STREAM, STANDING_STATS_STREAM, RealStream, derive_seed, step_seed,
)
from smallgan.training.evaluation import QualityTracker
from smallgan.training.phases import GANPhases, UnitScaler, optimizer_step
from smallgan.training.speed import apply_speed_options
from smallgan.training.stats import MetricsLog, ProgressLine, SpikeDetector, Throughput


class TrainingDiverged(SmallganError):
    """Too many consecutive non-finite steps; the last good checkpoint is left as it was."""


@dataclass
class Counters:
    step: int = 0                # completed iterations (G steps)
    real_seen: int = 0           # real images consumed by this process (the data stream position)
    skipped_d: int = 0           # D steps skipped for non-finite gradients (incl. fp16 overflow)
    skipped_g: int = 0
    bad_streak: int = 0          # consecutive iterations with a skipped step
    elapsed: float = 0.0         # training seconds over all sessions of this run


def run_dir_for(cfg: Config) -> Path:
    return Path(cfg.train.out_dir) / (cfg.train.name or cfg.recipe or "run")


def _make_accelerator(cfg: Config, run_dir: Path):
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    # broadcast_buffers=False: with DDP's default, rank 0's buffers (spectral-norm u, BN statistics) are copied
    # in every forward, which breaks backward after an in-place u update (PyTorch #22095). Spectral-norm
    # vectors stay equal across ranks anyway: same init, same weights, same updates.
    ddp = DistributedDataParallelKwargs(broadcast_buffers=False)
    precision = cfg.train.precision
    cuda = torch.cuda.is_available()
    if precision == "fp16" and not cuda:
        raise ConfigError("train.precision=fp16 needs a CUDA GPU (none found); use train.precision=bf16 or no")
    if precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise ConfigError("train.precision=bf16 is not supported by this GPU; use train.precision=fp16")
    # Without a GPU, Accelerate only joins a multi-process launch (torchrun, gloo) when told to run on CPU.
    multi_cpu = not cuda and int(os.environ.get("WORLD_SIZE", "1")) > 1
    return Accelerator(
        cpu=multi_cpu,
        mixed_precision=precision,
        kwargs_handlers=[ddp],
        log_with=cfg.train.log_with or None,
        project_dir=str(run_dir),
    )


def resolve_flip(setting: str, data_path: Path | None) -> bool:
    """data.flip: "true" / "false", or "dataset": what `smallgan prepare --flip` recorded (off when nothing)."""
    if setting != "dataset":
        return setting == "true"
    from data_tools.prepare import read_meta

    return bool((read_meta(data_path) or {}).get("flip", False)) if data_path is not None else False


class Trainer:
    def __init__(
        self,
        cfg: Config,
        *,
        resume: str | None = None,
        overwrite: bool = False,
        console: Console | None = None,
        dataset: Any = None,
    ) -> None:
        """`dataset`: an already loaded set (``.images`` uint8, ``.labels``, ``.class_names``) instead of
        ``cfg.data.path``; benchmarks use it to time steps on synthetic images."""
        from smallgan.data import load_prepared, resolve_dataset

        self.cfg = cfg
        t = cfg.train
        self.run_dir = run_dir_for(cfg)
        self.accelerator = acc = _make_accelerator(cfg, self.run_dir)
        self.is_main = acc.is_main_process
        self.console = console or Console(stderr=True, soft_wrap=True)  # log lines stay whole
        self.rank, self.world = acc.process_index, acc.num_processes
        self.plan = plan_batches(cfg, self.world)
        self.accumulation, self.micro_batch = self.plan.accumulation, self.plan.micro_batch
        self.augment = DiffAugment(t.diffaug)
        note = self.plan.describe(cfg, self.world)
        if note:
            self._note(note)
        resume_path = self._resume_path(resume, overwrite)

        # Data: prepared once (main process first), then held in memory as uint8.
        if dataset is None:
            with acc.main_process_first():
                data_path = resolve_dataset(cfg.data.path, cfg.model.resolution, console=self.console,
                                            workers=cfg.data.workers)
            dataset = load_prepared(data_path, resolution=cfg.model.resolution)
        else:
            data_path = None
        self.class_names = list(dataset.class_names)
        n_data_classes = max(len(self.class_names), 1)
        if cfg.model.n_classes not in (0, 1) and cfg.model.n_classes != n_data_classes:
            raise ConfigError(
                f"model.n_classes={cfg.model.n_classes} but the dataset {data_path} has {n_data_classes} classes; "
                "set model.n_classes=0 (from the data) or 1 (unconditional)"
            )
        self.n_classes = cfg.model.n_classes or n_data_classes
        # Saved configs (checkpoints, generator export) hold the resolved class count: self-describing.
        self.cfg = cfg = copy.deepcopy(cfg)
        cfg.model.n_classes = self.n_classes
        labels = dataset.labels if self.n_classes > 1 else torch.zeros_like(dataset.labels)
        if self.n_classes == 1:
            self.class_names = []
        self.flip = resolve_flip(cfg.data.flip, data_path)
        self.stream = RealStream(
            dataset.images, labels, rank=self.rank, world=self.world, seed=t.seed, flip=self.flip,
            device=acc.device, on_device=cfg.data.on_device, channels_last=t.channels_last,
        )

        # Models: the same seed on every process, so all ranks start from identical weights.
        torch.manual_seed(t.seed)
        G = build_generator(cfg.model, n_classes=self.n_classes)
        D = build_discriminator(cfg.model, n_classes=self.n_classes)
        if t.sync_bn and self.world > 1 and acc.device.type == "cuda":
            G = torch.nn.SyncBatchNorm.convert_sync_batchnorm(G)
        elif t.sync_bn:
            self._note("train.sync_bn needs several CUDA processes; using plain BatchNorm")
        G, D = G.to(acc.device), D.to(acc.device)
        iterate_once_per_step(G)
        iterate_once_per_step(D)
        self.ema = EMA(G, t.ema_decay, t.ema_start)
        apply_speed_options(G, D, t, acc.device, note=self._note)
        # Fused Adam: one kernel per step, and it skips a non-finite step on the device (no host sync).
        adam = dict(betas=tuple(t.betas), eps=t.adam_eps, fused=True)
        self.g_opt = torch.optim.Adam(G.parameters(), lr=t.g_lr, **adam)
        self.d_opt = torch.optim.Adam(D.parameters(), lr=t.d_lr, **adam)
        # fp16: dynamic loss scaling per network; fp32 and bf16: a UnitScaler, which only skips non-finite steps.
        scaler = torch.amp.GradScaler if t.precision == "fp16" else UnitScaler
        self.g_scaler, self.d_scaler = scaler(acc.device.type), scaler(acc.device.type)
        self.counters = Counters()
        self._resumed_state: dict | None = None
        if resume_path is not None:
            self._resumed_state = self._load(resume_path, G, D)

        if self.is_main:
            removed = ckpt.remove_incomplete(self.run_dir)
            if removed:
                self.console.print(f"note: removed {len(removed)} incomplete checkpoint write(s) of an interrupted run")
            needed = ckpt.estimated_checkpoint_bytes(trained=[G, D], frozen=[self.ema.shadow]) * (t.keep_ckpts + 1)
            ckpt.check_writable(self.run_dir, needed)

        G_wrapped, D_wrapped = acc.prepare(G, D)
        self.G, self.D = G, D  # unwrapped
        self._g_params, self._d_params = list(G.parameters()), list(D.parameters())
        self._device_counters = {name: torch.tensor(float(getattr(self.counters, name)), device=acc.device)
                                 for name in ("skipped_d", "skipped_g", "bad_streak")}
        perceptual = None
        caps = capabilities(cfg.model)
        if caps.reconstructs:  # FastGAN's self-supervised D: LPIPS, frozen, outside D's state
            from smallgan.perceptual import build_lpips

            with acc.main_process_first():  # one process downloads the VGG weights, the others find them cached
                perceptual = build_lpips(t.lpips_weights).to(acc.device)
        self.phases = GANPhases(
            accelerator=acc, G=G_wrapped, D=D_wrapped, G_raw=G, D_raw=D, augment=self.augment,
            d_loss_name=t.loss, micro_batch=self.micro_batch, accumulation=self.accumulation,
            r1_gamma=t.r1_gamma, ortho_beta=t.ortho_beta, perceptual=perceptual, recon_weight=t.recon_weight,
            splits_real_fake=caps.splits_real_fake,
        )
        # Fixed latents for the progress grids, drawn from their own generator: the same on every run.
        g = torch.Generator().manual_seed(derive_seed(t.seed, FIXED_LATENTS_STREAM))
        z, y = sample_latents(cfg.sample.n, G.z_dim, self.n_classes, trunc=cfg.sample.trunc, generator=g)
        self.fixed_z, self.fixed_y = z.to(acc.device), y.to(acc.device)
        self._stop_signal: str | None = None
        self._sampling, self._sampling_step = None, -1
        self.quality = QualityTracker(cfg, data_path, acc, (self._resumed_state or {}).get("best"))

    def _note(self, message: str) -> None:
        if self.is_main:
            self.console.print(f"note: {message}")

    # ------------------------------------------------------------------------------------------------
    def _resume_path(self, resume: str | None, overwrite: bool) -> Path | None:
        existing = ckpt.latest_checkpoint(self.run_dir)
        if resume in (None, ""):
            if existing is not None and not overwrite:
                raise SmallganError(
                    f"run folder {self.run_dir} already has checkpoints; pass --resume to continue it, "
                    "or choose another name with --set train.name=NEW"
                )
            if existing is not None and self.is_main:
                shutil.rmtree(ckpt.checkpoint_dir(self.run_dir), ignore_errors=True)
            self.accelerator.wait_for_everyone()
            return None
        if resume == "latest":
            if existing is None:
                if self.is_main:
                    self.console.print(f"note: no checkpoint in {self.run_dir} yet; starting a new run")
                return None
            return existing
        path = Path(resume)
        if not path.is_dir():
            raise SmallganError(f"--resume {resume}: no such checkpoint folder; pass runs/NAME/checkpoints/step-*")
        return path

    def _load(self, path: Path, G: torch.nn.Module, D: torch.nn.Module) -> dict:
        weights, state, saved_cfg = ckpt.load_checkpoint(path)
        if saved_cfg.model != self.cfg.model:
            diff = [k for k in vars(saved_cfg.model) if getattr(saved_cfg.model, k) != getattr(self.cfg.model, k)]
            raise SmallganError(
                f"checkpoint {path} was trained with other model settings ({', '.join('model.' + k for k in diff)}); "
                "resume with the same recipe and --set options"
            )
        for name, module in (("G", G), ("D", D), ("G_ema", self.ema.shadow)):
            if name not in weights:
                raise SmallganError(f"checkpoint {path} has no {name}.safetensors; it is incomplete")
            ckpt.load_into(module, weights[name], path / f"{name}.safetensors")
        self.g_opt.load_state_dict(state["g_opt"])
        self.d_opt.load_state_dict(state["d_opt"])
        self.g_scaler.load_state_dict(state["g_scaler"])
        self.d_scaler.load_state_dict(state["d_scaler"])
        c = state["counters"]
        self.counters = Counters(**{k: c[k] for k in vars(Counters()) if k in c})
        if "real_seen_by_rank" in state and self.world == state.get("world", 1):
            self.counters.real_seen = state["real_seen_by_rank"][self.rank]
        if self.is_main:
            self.console.print(f"resumed from {path} at step {self.counters.step}")
        return state

    def save_checkpoint(self) -> Path | None:
        """Every process takes part (gathers the stream positions); only the main one writes."""
        self.sync_counters()
        seen = torch.tensor([self.counters.real_seen], device=self.accelerator.device)
        real_seen_by_rank = self.accelerator.gather(seen).tolist()
        if not self.is_main:
            return None
        state = {
            "g_opt": self.g_opt.state_dict(), "d_opt": self.d_opt.state_dict(),
            "g_scaler": self.g_scaler.state_dict(), "d_scaler": self.d_scaler.state_dict(),
            "counters": vars(self.counters), "real_seen_by_rank": real_seen_by_rank, "world": self.world,
            "best": self.quality.best.state_dict(),
        }
        # G_ema is saved prepared for sampling: its parameters are the average that training resumes from, and
        # its buffers are overwritten from G at the next EMA update anyway.
        G_ema = self.sampling_generator()
        weights = {"G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": G_ema.state_dict()}
        path = ckpt.save_checkpoint(self.run_dir, self.counters.step, weights, state, self.cfg,
                                    self.cfg.train.keep_ckpts, class_names=self.class_names)
        ckpt.export_generator(self.run_dir / ckpt.GENERATOR_FILE, G_ema, self.cfg, self.class_names,
                              self.counters.step)
        return path

    def sampling_generator(self) -> torch.nn.Module:
        """The EMA generator with its own spectral-norm vectors and BatchNorm statistics (see
        :func:`~smallgan.ema.prepare_for_sampling`), made once per step for grids, evaluation and export."""
        if self._sampling_step != self.counters.step:
            self._sampling = prepare_for_sampling(
                self.ema.shadow, batch_size=max(self.micro_batch, 32),
                seed=derive_seed(self.cfg.train.seed, STANDING_STATS_STREAM))
            self._sampling_step = self.counters.step
        return self._sampling

    @torch.no_grad()
    def write_samples(self) -> Path | None:
        if not self.is_main:
            return None
        from smallgan.sampling import save_grid

        G = self.sampling_generator()
        chunks = []
        for z, y in zip(self.fixed_z.split(self.micro_batch), self.fixed_y.split(self.micro_batch)):
            with self.accelerator.autocast():
                chunks.append(G(z, y).float().cpu())
        images = torch.cat(chunks)
        path = self.run_dir / "samples" / f"step-{self.counters.step:07d}.png"
        return save_grid(images, path, nrow=max(1, int(math.sqrt(images.shape[0]))))

    # ------------------------------------------------------------------------------------------------
    def _next_real(self) -> tuple[torch.Tensor, torch.Tensor]:
        pos = self.counters.real_seen
        self.counters.real_seen += self.micro_batch
        return self.stream.batch(pos, self.micro_batch)

    def train_iteration(self) -> dict[str, torch.Tensor]:
        """d_steps D steps and one G step. Returns device tensors; nothing here waits for the device."""
        t, c, dc = self.cfg.train, self.counters, self._device_counters
        torch.manual_seed(step_seed(t.seed, self.rank, c.step))
        bad = torch.zeros((), device=self.accelerator.device)
        d_losses, recon = [], []
        for _ in range(t.d_steps):
            power_iteration_(self.D)  # one spectral-norm power iteration per optimiser step
            d_losses.append(self.phases.discriminator(self._next_real, self.d_scaler))
            recon.append(self.phases.last_recon)
            skipped = optimizer_step(self.d_opt, self.d_scaler, self._d_params)
            dc["skipped_d"] += skipped
            bad = torch.maximum(bad, skipped)
        power_iteration_(self.G)
        g_loss = self.phases.generator(self.g_scaler)
        skipped = optimizer_step(self.g_opt, self.g_scaler, self._g_params,
                                 before_step=self.phases.add_orthogonal_gradient)
        dc["skipped_g"] += skipped
        dc["bad_streak"] = (dc["bad_streak"] + 1) * torch.maximum(bad, skipped)
        c.step += 1
        self.ema.update(self.G, c.step)
        losses = {"d_loss": torch.stack(d_losses).mean(), "g_loss": g_loss}
        if self.phases.perceptual is not None:
            losses["d_recon"] = torch.stack(recon).mean()
        return losses

    def sync_counters(self) -> Counters:
        """Copy the device-side skip counters into `counters` (a host sync: log intervals and checkpoints)."""
        for name, value in self._device_counters.items():
            setattr(self.counters, name, int(value.item()))
        return self.counters

    def _install_signal_handlers(self) -> dict:
        previous = {}

        def handler(signum, _frame):
            if self._stop_signal is not None:  # second signal: stop now
                raise KeyboardInterrupt
            self._stop_signal = signal.Signals(signum).name

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                previous[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread (e.g. a notebook launcher): keep defaults
                pass
        return previous

    def _should_stop(self, t_start: float, check_now: bool) -> str | None:
        t = self.cfg.train
        reason = None
        if self._stop_signal:
            reason = f"stopped by {self._stop_signal}"
        elif t.max_minutes and (time.perf_counter() - t_start) / 60 >= t.max_minutes:
            reason = f"reached train.max_minutes={t.max_minutes:g}"
        if self.world > 1:
            if not check_now:
                return None
            # All processes must agree, or one would wait forever in the next all-reduce.
            flag = torch.tensor([1.0 if reason else 0.0], device=self.accelerator.device)
            if self.accelerator.reduce(flag, reduction="sum").item() > 0:
                return reason or "stopped by another process"
        return reason

    def run(self) -> Counters:
        cfg, t, c, acc = self.cfg, self.cfg.train, self.counters, self.accelerator
        log = MetricsLog(self.run_dir / "metrics.jsonl") if self.is_main else None
        if self.is_main:
            ckpt.atomic_write_text(self.run_dir / "config.json", cfg.to_json())
            if t.log_with:
                acc.init_trackers(self.run_dir.name, config=_flat_scalars(cfg.to_dict()))
            self.console.print(
                f"run {self.run_dir}: {cfg.model.arch} {cfg.model.resolution}px, {self.n_classes} class(es), "
                f"{len(self.stream) * self.world} images, batch {self.plan.batch} = {self.micro_batch} x "
                f"{self.accumulation} accumulation x {self.world} process(es), device {acc.device}, "
                f"precision {t.precision}"
            )
        progress = ProgressLine(self.console, t.max_steps, c.step, enabled=self.is_main)
        spikes, speed = SpikeDetector(), Throughput()
        keys = ["d_loss", "g_loss"] + (["d_recon"] if self.phases.perceptual is not None else [])
        sums = {k: torch.zeros((), device=acc.device) for k in keys}
        since_log = 0
        t_start = time.perf_counter()
        elapsed0 = c.elapsed
        previous = self._install_signal_handlers()
        stop_reason = None
        try:
            while c.step < t.max_steps:
                losses = self.train_iteration()
                for k in sums:
                    sums[k] += losses[k]
                since_log += 1
                speed.add(self.plan.batch * t.d_steps)
                c.elapsed = elapsed0 + time.perf_counter() - t_start
                at_log = c.step % t.log_every == 0 or c.step == t.max_steps
                if at_log:
                    # Skipped steps never touched the weights; the streak is read here, not every step.
                    if self.sync_counters().bad_streak >= t.max_bad_steps:
                        raise TrainingDiverged(
                            f"{c.bad_streak} consecutive steps with non-finite gradients at step {c.step}; "
                            f"stopped. Last good checkpoint: {ckpt.latest_checkpoint(self.run_dir) or 'none'}. "
                            "Lower the learning rates, or use train.precision=bf16 instead of fp16"
                        )
                    record = {k: (v / since_log).item() for k, v in sums.items()}
                    # img/s counts real images through D (batch x d_steps per iteration), like kimg.
                    record.update(step=c.step, kimg=c.step * self.plan.batch * t.d_steps / 1000, img_s=speed.rate(),
                                  seconds=round(c.elapsed, 2), skipped_d=c.skipped_d, skipped_g=c.skipped_g)
                    for v in sums.values():
                        v.zero_()
                    since_log = 0
                    if t.sv_every and c.step % t.sv_every == 0:
                        record.update(self._singular_values(spikes))
                    if log is not None:
                        log.write(record)
                    if t.log_with:
                        acc.log({k: v for k, v in record.items() if isinstance(v, (int, float))}, step=c.step)
                    progress.update(
                        c.step,
                        f"d {record['d_loss']:.3f} g {record['g_loss']:.3f} {record['img_s']:.1f} img/s",
                        log_line=True,
                    )
                else:
                    progress.update(c.step, "", log_line=False)
                if t.sample_every and c.step % t.sample_every == 0:
                    self.write_samples()
                if t.eval_every and c.step % t.eval_every == 0:
                    results = self.quality.evaluate(self.sampling_generator(), self.n_classes, c.step, self.run_dir,
                                                    self.class_names)
                    if log is not None:
                        log.write({"event": "eval", "step": c.step, "extractor": self.quality.extractor.name,
                                   **results})
                    if self.is_main:
                        shown = ", ".join(f"{k} {results[k]:.4g}" for k in self.cfg.eval.metrics if k in results)
                        self.console.print(f"step {c.step} eval ({results['n_fake']} images): {shown}")
                if t.ckpt_every and c.step % t.ckpt_every == 0 and c.step < t.max_steps:
                    self.save_checkpoint()
                stop_reason = self._should_stop(t_start, check_now=at_log)
                if stop_reason:
                    break
        finally:
            progress.close()
            for sig, h in previous.items():
                signal.signal(sig, h)
        path = self.save_checkpoint()
        samples = self.write_samples()
        if log is not None:
            log.close()
        if t.log_with:
            acc.end_training()
        if self.is_main:
            why = stop_reason or f"reached train.max_steps={t.max_steps}"
            self.console.print(f"{why}: checkpoint {path}, samples {samples}, generator "
                               f"{self.run_dir / ckpt.GENERATOR_FILE}")
        return c

    def _singular_values(self, spikes: SpikeDetector) -> dict[str, Any]:
        values = {f"G.{k}": v for k, v in top_singular_values(self.G).items()}
        values.update({f"D.{k}": v for k, v in top_singular_values(self.D).items()})
        jumped = spikes.update(values)
        if jumped and self.is_main:
            self.console.print(
                f"[yellow]warning:[/] top singular value jumped in {', '.join(jumped[:4])} at step "
                f"{self.counters.step}: BigGAN's sign of imminent collapse (keep the last checkpoints)"
            )
        return {"sv_G_max": max((v for k, v in values.items() if k.startswith("G.")), default=0.0),
                "sv_D_max": max((v for k, v in values.items() if k.startswith("D.")), default=0.0),
                "sv": values}


def _flat_scalars(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat_scalars(v, key + "."))
        elif isinstance(v, (int, float, str, bool)):
            out[key] = v
        else:
            out[key] = str(v)
    return out


def train(cfg: Config, *, resume: str | None = None, overwrite: bool = False, console: Console | None = None) -> Trainer:
    """Train a run described by `cfg` to completion (or a stop condition); returns the Trainer."""
    trainer = Trainer(cfg, resume=resume, overwrite=overwrite, console=console)
    trainer.run()
    return trainer
