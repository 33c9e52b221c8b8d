"""The BigGAN training loop on Hugging Face Accelerate: one CPU, one GPU, many GPUs or nodes, same code.

One iteration = ``d_steps`` D optimiser steps + one G optimiser step, each accumulated over micro-batches so
that every step sees ``train.batch`` images in total (BigGAN's 2048 = 256 x 8 on any number of devices).
All randomness of an iteration comes from a seed derived from (seed, rank, step), and which real images a
process sees is a function of how many it has consumed: a resumed run replays exactly the same trajectory.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from smallgan import checkpoint as ckpt
from smallgan.augment import DiffAugment
from smallgan.config import Config, ConfigError, accumulation_steps
from smallgan.ema import EMA
from smallgan.errors import SmallganError
from smallgan.latents import sample_latents
from smallgan.layers.spectral_norm import top_singular_values
from smallgan.registry import build_discriminator, build_generator
from smallgan.training.batches import RealStream, derive_seed
from smallgan.training.phases import GANPhases, optimizer_step
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
    extra: dict[str, Any] = field(default_factory=dict)


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


class Trainer:
    def __init__(
        self,
        cfg: Config,
        *,
        resume: str | None = None,
        overwrite: bool = False,
        console: Console | None = None,
    ) -> None:
        from smallgan.data import load_prepared, resolve_dataset

        self.cfg = cfg
        t = cfg.train
        self.run_dir = run_dir_for(cfg)
        self.accelerator = acc = _make_accelerator(cfg, self.run_dir)
        self.is_main = acc.is_main_process
        self.console = console or Console(stderr=True)
        self.rank, self.world = acc.process_index, acc.num_processes
        self.accumulation = accumulation_steps(cfg, self.world)
        self.augment = DiffAugment(t.diffaug)
        resume_path = self._resume_path(resume, overwrite)

        # Data: prepared once (main process first), then held in memory as uint8.
        with acc.main_process_first():
            data_path = resolve_dataset(cfg.data.path, cfg.model.resolution, console=self.console)
        dataset = load_prepared(data_path, resolution=cfg.model.resolution)
        self.class_names = list(dataset.class_names)
        n_data_classes = max(len(self.class_names), 1)
        if cfg.model.n_classes not in (0, 1) and cfg.model.n_classes != n_data_classes:
            raise ConfigError(
                f"model.n_classes={cfg.model.n_classes} but the dataset {data_path} has {n_data_classes} classes; "
                "set model.n_classes=0 (from the data) or 1 (unconditional)"
            )
        self.n_classes = cfg.model.n_classes or n_data_classes
        labels = dataset.labels if self.n_classes > 1 else torch.zeros_like(dataset.labels)
        if self.n_classes == 1:
            self.class_names = []
        self.stream = RealStream(
            dataset.images, labels, rank=self.rank, world=self.world, seed=t.seed, flip=cfg.data.flip,
            device=acc.device, on_device=cfg.data.on_device,
        )

        # Models: the same seed on every process, so all ranks start from identical weights.
        torch.manual_seed(t.seed)
        G = build_generator(cfg.model, n_classes=self.n_classes)
        D = build_discriminator(cfg.model, n_classes=self.n_classes)
        if t.sync_bn and self.world > 1 and acc.device.type == "cuda":
            G = torch.nn.SyncBatchNorm.convert_sync_batchnorm(G)
        elif t.sync_bn and self.is_main:
            self.console.print("note: train.sync_bn needs several CUDA processes; using plain BatchNorm")
        G, D = G.to(acc.device), D.to(acc.device)
        self.ema = EMA(G, t.ema_decay, t.ema_start)
        adam = dict(betas=tuple(t.betas), eps=t.adam_eps)
        self.g_opt = torch.optim.Adam(G.parameters(), lr=t.g_lr, **adam)
        self.d_opt = torch.optim.Adam(D.parameters(), lr=t.d_lr, **adam)
        fp16 = t.precision == "fp16"
        self.g_scaler = torch.amp.GradScaler(acc.device.type, enabled=fp16)
        self.d_scaler = torch.amp.GradScaler(acc.device.type, enabled=fp16)
        self.counters = Counters()
        self._resumed_state: dict | None = None
        if resume_path is not None:
            self._resumed_state = self._load(resume_path, G, D)

        if self.is_main:
            removed = ckpt.remove_incomplete(self.run_dir)
            if removed:
                self.console.print(f"note: removed {len(removed)} incomplete checkpoint write(s) of an interrupted run")
            needed = ckpt.estimated_checkpoint_bytes([G, D, self.ema.shadow]) * (t.keep_ckpts + 1)
            ckpt.check_writable(self.run_dir, needed)

        G_wrapped, D_wrapped = acc.prepare(G, D)
        self.G, self.D = G, D  # unwrapped
        self.phases = GANPhases(
            accelerator=acc, G=G_wrapped, D=D_wrapped, G_raw=G, D_raw=D, augment=self.augment,
            d_loss_name=t.loss, micro_batch=t.micro_batch, accumulation=self.accumulation,
            r1_gamma=t.r1_gamma, ortho_beta=t.ortho_beta,
        )
        # Fixed latents for the progress grids, drawn from their own generator: the same on every run.
        g = torch.Generator().manual_seed(derive_seed(t.seed, 0xA11CE))
        z, y = sample_latents(cfg.sample.n, G.z_dim, self.n_classes, trunc=cfg.sample.trunc, generator=g)
        self.fixed_z, self.fixed_y = z.to(acc.device), y.to(acc.device)
        self._stop_signal: str | None = None
        self._setup_evaluation(data_path)

    # ------------------------------------------------------------------------------------------------
    def _setup_evaluation(self, data_path: Path) -> None:
        """Quality tracking (train.eval_every): the extractor is built now, so missing weights fail early."""
        from smallgan.metrics.best import BestTracker

        self.data_path = data_path
        self.best = BestTracker()
        if self._resumed_state is not None and "best" in self._resumed_state:
            self.best.load_state_dict(self._resumed_state["best"])
        self.extractor = None
        self._real_stats = None
        if self.cfg.train.eval_every:
            from smallgan.metrics.features import build_extractor

            e = self.cfg.eval
            self.extractor = build_extractor(e.extractor, e.inception_weights, self.accelerator.device)

    def evaluate(self) -> dict[str, float]:
        """FID/KID/... of the EMA generator; keeps best/ when the tracked metric improves. All processes call it."""
        from smallgan.metrics.evaluate import evaluate_generator, real_statistics
        from smallgan.metrics.generate import generator_sample_fn

        e, acc = self.cfg.eval, self.accelerator
        if self._real_stats is None:  # computed once, cached beside the dataset (not under main_process_first:
            # it gathers across processes)
            self._real_stats = real_statistics(self.data_path, self.extractor, resolution=self.cfg.model.resolution,
                                               batch_size=e.batch_size, accelerator=acc)
        # The same latents at every evaluation, so successive numbers differ only by the generator.
        sample_fn = generator_sample_fn(self.ema.shadow, self.n_classes, seed=self.cfg.train.seed,
                                        trunc=self.cfg.sample.trunc, device=acc.device)
        results = evaluate_generator(sample_fn, e.n, self._real_stats, self.extractor, metrics=tuple(e.metrics),
                                     batch_size=e.batch_size, accelerator=acc)
        if self.best.update(e.best, results[e.best], self.counters.step) and self.is_main:
            best_dir = self.run_dir / "best"
            ckpt.export_generator(best_dir / ckpt.GENERATOR_FILE, self.ema.shadow, self.cfg, self.class_names,
                                  self.counters.step)
            ckpt.atomic_write_text(best_dir / "best.json", json.dumps(
                {"metric": e.best, "value": results[e.best], "step": self.counters.step, **results}, indent=2))
        return results

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
        seen = torch.tensor([self.counters.real_seen], device=self.accelerator.device)
        real_seen_by_rank = self.accelerator.gather(seen).tolist()
        if not self.is_main:
            return None
        state = {
            "g_opt": self.g_opt.state_dict(), "d_opt": self.d_opt.state_dict(),
            "g_scaler": self.g_scaler.state_dict(), "d_scaler": self.d_scaler.state_dict(),
            "counters": vars(self.counters), "real_seen_by_rank": real_seen_by_rank, "world": self.world,
            "best": self.best.state_dict(),
        }
        weights = {"G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.ema.state_dict()}
        path = ckpt.save_checkpoint(self.run_dir, self.counters.step, weights, state, self.cfg, self.cfg.train.keep_ckpts)
        ckpt.export_generator(self.run_dir / ckpt.GENERATOR_FILE, self.ema.shadow, self.cfg, self.class_names,
                              self.counters.step)
        return path

    @torch.no_grad()
    def write_samples(self) -> Path | None:
        if not self.is_main:
            return None
        from smallgan.sampling import save_grid

        G = self.ema.shadow
        chunks = []
        for z, y in zip(self.fixed_z.split(self.cfg.train.micro_batch), self.fixed_y.split(self.cfg.train.micro_batch)):
            with self.accelerator.autocast():
                chunks.append(G(z, y).float().cpu())
        images = torch.cat(chunks)
        path = self.run_dir / "samples" / f"step-{self.counters.step:07d}.png"
        return save_grid(images, path, nrow=max(1, int(math.sqrt(images.shape[0]))))

    # ------------------------------------------------------------------------------------------------
    def _next_real(self) -> tuple[torch.Tensor, torch.Tensor]:
        pos = self.counters.real_seen
        self.counters.real_seen += self.cfg.train.micro_batch
        return self.stream.batch(pos, self.cfg.train.micro_batch)

    def train_iteration(self) -> dict[str, torch.Tensor]:
        """d_steps D steps and one G step. Returns device tensors (no host sync beyond the finite checks)."""
        t, c = self.cfg.train, self.counters
        torch.manual_seed(derive_seed(t.seed, self.rank, c.step))
        bad = False
        d_losses = []
        for _ in range(t.d_steps):
            d_losses.append(self.phases.discriminator(self._next_real, self.d_scaler))
            if not optimizer_step(self.d_opt, self.d_scaler, list(self.D.parameters())):
                c.skipped_d += 1
                bad = True
        g_loss = self.phases.generator(self.g_scaler)
        if not optimizer_step(self.g_opt, self.g_scaler, list(self.G.parameters()),
                              before_step=self.phases.add_orthogonal_gradient):
            c.skipped_g += 1
            bad = True
        c.step += 1
        self.ema.update(self.G, c.step)
        c.bad_streak = c.bad_streak + 1 if bad else 0
        return {"d_loss": torch.stack(d_losses).mean(), "g_loss": g_loss}

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
                f"{len(self.stream) * self.world} images, batch {t.batch} = {t.micro_batch} x "
                f"{self.accumulation} accumulation x {self.world} process(es), device {acc.device}, "
                f"precision {t.precision}"
            )
        progress = ProgressLine(self.console, t.max_steps, c.step, enabled=self.is_main)
        spikes, speed = SpikeDetector(), Throughput()
        sums = {"d_loss": torch.zeros((), device=acc.device), "g_loss": torch.zeros((), device=acc.device)}
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
                speed.add(t.batch)
                c.elapsed = elapsed0 + time.perf_counter() - t_start
                if c.bad_streak >= t.max_bad_steps:
                    raise TrainingDiverged(
                        f"{c.bad_streak} consecutive steps with non-finite gradients at step {c.step}; stopped. "
                        f"Last good checkpoint: {ckpt.latest_checkpoint(self.run_dir) or 'none'}. "
                        "Lower the learning rates, or use train.precision=bf16 instead of fp16"
                    )
                at_log = c.step % t.log_every == 0 or c.step == t.max_steps
                if at_log:
                    record = {k: (v / since_log).item() for k, v in sums.items()}
                    record.update(step=c.step, kimg=c.step * t.batch * t.d_steps / 1000, img_s=speed.rate(),
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
                    results = self.evaluate()
                    if log is not None:
                        log.write({"event": "eval", "step": c.step, "extractor": self.extractor.name, **results})
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
