"""The BigGAN training loop on Hugging Face Accelerate: one CPU, one GPU, many GPUs or nodes, same code.

One iteration = ``d_steps`` D optimiser steps + one G optimiser step, each accumulated over micro-batches so
that every step sees ``train.batch`` images in total (BigGAN's 2048 = 256 x 8 on any number of devices).
All randomness of an iteration comes from a seed derived from (seed, rank, step), and which real images a
process sees is a function of how many it has consumed: a resumed run replays exactly the same trajectory.
What the loop is built from, saves and reports lives beside it: build.py, state.py, events.py, stopping.py.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from smallgan import checkpoint as ckpt
from smallgan.augment import DiffAugment
from smallgan.config import Config
from smallgan.data import check_data_path
from smallgan.training.ada import AdaptiveAugment
from smallgan.training.batch_plan import plan_batches
from smallgan.device import accelerate_cpu, choose_precision
from smallgan.ema import prepare_for_sampling
from smallgan.io import atomic_write_text
from smallgan.layers.spectral_norm import power_iteration_
from smallgan.registry import capabilities
from smallgan.regularizers import LeCam
from smallgan.sampling.export import GENERATOR_FILE
from smallgan.sampling.generator import TrainedGenerator, standing_batch
from smallgan.training.batches import (
    FIXED_LATENTS_STREAM, STANDING_STATS_STREAM, derive_seed, load_real_data, resolve_flip, step_seed,
)
from smallgan.training.build import build_parts, build_perceptual
from smallgan.training.evaluation import QualityTracker
from smallgan.training.events import Reporter, TrainingDiverged, flat_scalars
from smallgan.training.phases import GANPhases, optimizer_step
from smallgan.training.rollback import Recovery
from smallgan.training.state import Counters, TrainState, data_record, resume_path
from smallgan.training.schedule import schedule
from smallgan.training.stopping import Stopping, limit_reached
from smallgan.training.transfer import load_pretrained, trainable, trainable_summary
from smallgan.training.stats import MetricsLog
from smallgan.training.tracking import (
    log_scalars, publish_samples, resolve_log_with, start_trackers, write_reals,
)

# Re-exported: callers import them from here.
__all__ = ["Counters", "Trainer", "TrainingDiverged", "resolve_flip", "run_dir_for", "train"]


def run_dir_for(cfg: Config) -> Path:
    return Path(cfg.train.out_dir) / (cfg.train.name or cfg.recipe or "run")


def _make_accelerator(cfg: Config, run_dir: Path):
    """The Accelerator of a run and the mixed precision it uses (train.precision=auto resolved for the device)."""
    from accelerate import Accelerator, PartialState
    from accelerate.utils import DistributedDataParallelKwargs

    # broadcast_buffers=False: with DDP's default, rank 0's buffers (spectral-norm u, BN statistics) are copied
    # in every forward, which breaks backward after an in-place u update (PyTorch #22095). Spectral-norm
    # vectors stay equal across ranks anyway: same init, same weights, same updates.
    ddp = DistributedDataParallelKwargs(broadcast_buffers=False)
    cpu = accelerate_cpu()
    # The device Accelerate will train on, asked before the Accelerator exists: its mixed precision is fixed then.
    precision = choose_precision(cfg.train.precision, PartialState(cpu=cpu).device)
    accelerator = Accelerator(
        cpu=cpu,
        mixed_precision=precision.value,
        kwargs_handlers=[ddp],
        log_with=resolve_log_with(cfg.train.log_with),
        project_dir=str(run_dir),
    )
    return accelerator, precision


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
        self.cfg = cfg
        t = cfg.train
        if dataset is None:   # a missing dataset is one line before anything is written
            check_data_path(cfg.data.path, cfg.model.resolution)
        self.run_dir = run_dir_for(cfg)
        self.accelerator, choice = _make_accelerator(cfg, self.run_dir)
        acc = self.accelerator
        self.precision, self.precision_why = choice.value, choice.why   # no | fp16 | bf16, and why
        self.is_main = acc.is_main_process
        self.console = console or Console(stderr=True, soft_wrap=True)  # log lines stay whole
        self.rank, self.world = acc.process_index, acc.num_processes
        self.plan = plan_batches(cfg, self.world)
        self.accumulation, self.micro_batch = self.plan.accumulation, self.plan.micro_batch
        # Real images through D per iteration: the unit of kimg (logs, train.max_kimg, the EMA half-life).
        self.images_per_step = self.plan.batch * t.d_steps
        self.augment = DiffAugment(t.diffaug, p=t.augment_start())
        if choice.note:
            self._note(choice.note)
        note = self.plan.describe(cfg, self.world)
        if note:
            self._note(note)
        resumed_from = resume_path(self.run_dir, resume, overwrite, acc, self.console)

        # Data: prepared once (main process first), then held in memory as uint8.
        data = load_real_data(cfg, acc, self.console, dataset)
        self.stream, self.class_names, self.n_classes = data.stream, data.class_names, data.n_classes
        self.flip = self.stream.flip
        self.data_info = data_record(cfg.data.path if dataset is None else "(in memory)", data.fingerprint,
                                data.n_images)
        # Saved configs (checkpoints, generator export) hold the resolved class count: self-describing.
        self.cfg = cfg = copy.deepcopy(cfg)
        cfg.model.n_classes = self.n_classes
        cfg.train.precision = self.precision      # auto, resolved: config.json says what the run used

        self.parts = parts = build_parts(cfg, self.n_classes, acc.device, world=self.world, precision=self.precision,
                                         images_per_step=self.images_per_step, note=self._note)
        G, D, self.ema = parts.G, parts.D, parts.ema
        self.state = TrainState(parts, acc, self.run_dir, self.console)
        self._resumed_state: dict | None = None
        if resumed_from is not None:
            self._resumed_state = self.state.load(resumed_from, self.cfg.model, data=self.data_info)
        elif t.init:   # a new run from another run's weights (fine-tuning), not a resume
            load_pretrained(G, D, self.ema, cfg, self.n_classes, self._note)

        if self.is_main:
            removed = ckpt.remove_incomplete(self.run_dir)
            if removed:
                self.console.print(f"note: removed {len(removed)} incomplete checkpoint write(s) of an interrupted run")
            needed = ckpt.estimated_checkpoint_bytes(trained=[G, D], frozen=[self.ema.shadow]) * (t.keep_ckpts + 1)
            ckpt.check_writable(self.run_dir, needed)

        # Few-shot regularisers (docs/fewshot-regularisers.md): r_t always, adaptive p and LeCam when asked.
        self.ada = AdaptiveAugment(self.augment, t, self.images_per_step, acc)
        self.lecam = LeCam(t.lecam, t.lecam_decay, acc) if t.lecam > 0 else None
        self.restore_fewshot(self._resumed_state or {})

        G_wrapped, D_wrapped = acc.prepare(G, D)
        self.G, self.D = G, D  # unwrapped
        self._g_params, self._d_params = trainable(G), trainable(D)
        self.phases = GANPhases(
            accelerator=acc, G=G_wrapped, D=D_wrapped, G_raw=G, D_raw=D, augment=self.augment,
            d_loss_name=t.loss, micro_batch=self.micro_batch, accumulation=self.accumulation,
            r1_gamma=t.r1_gamma, ortho_beta=t.ortho_beta, perceptual=build_perceptual(cfg, acc),
            recon_weight=t.recon_weight, splits_real_fake=capabilities(cfg.model).splits_real_fake,
            observe_real=self.ada.observe, lecam=self.lecam, mode_seeking=t.mode_seeking,
        )
        self._sampling, self._sampling_step = None, -1
        self._grid: tuple[int, Path] | None = None   # (step, file) of the last progress grid this session wrote
        self.stopping: Stopping | None = None   # of the last run(): which signal, if any, stopped it
        self.quality = QualityTracker(cfg, data.path, acc, (self._resumed_state or {}).get("best"))

    def restore_fewshot(self, state: dict) -> None:
        """The augmentation probability and LeCam's anchors of a checkpoint's state.pt (resume, rollback)."""
        fewshot = state.get("fewshot", {})
        if "ada" in fewshot:
            self.ada.load_state_dict(fewshot["ada"])
        if self.lecam is not None and "lecam" in fewshot:
            self.lecam.load_state_dict(fewshot["lecam"])

    def _note(self, message: str) -> None:
        if self.is_main:
            self.console.print(f"note: {message}")

    @property
    def counters(self) -> Counters:
        return self.state.counters

    @property
    def total_steps(self) -> int:
        """Iterations the run trains in all (train.max_kimg)."""
        return schedule(self.cfg.train, self.images_per_step).total

    def sync_counters(self) -> Counters:
        """Copy the device-side skip counters into `counters` (a host sync: log intervals and checkpoints)."""
        return self.state.sync()

    def save_checkpoint(self) -> Path | None:
        """Every process takes part (gathers the stream positions); only the main one writes."""
        fewshot = {"ada": self.ada.state_dict(), **({"lecam": self.lecam.state_dict()} if self.lecam else {})}
        return self.state.save(self.cfg, self.class_names, self.sampling_generator,
                               {"best": self.quality.best.state_dict(), "fewshot": fewshot, "data": self.data_info})

    # ------------------------------------------------------------------------------------------------
    def sampling_generator(self) -> torch.nn.Module:
        """The EMA generator with its own spectral-norm vectors and BatchNorm statistics (see
        :func:`~smallgan.ema.prepare_for_sampling`), made once per step for grids, evaluation and export."""
        if self._sampling_step != self.counters.step:
            self._sampling = prepare_for_sampling(
                self.ema.shadow, batch_size=standing_batch(self.cfg),
                seed=derive_seed(self.cfg.train.seed, STANDING_STATS_STREAM))
            self._sampling_step = self.counters.step
        return self._sampling

    def write_samples(self) -> Path | None:
        if not self.is_main:
            return None
        if self._grid is not None and self._grid[0] == self.counters.step:   # the last step's, written already
            return self._grid[1]
        G = TrainedGenerator(self.sampling_generator(), self.cfg, self.class_names, step=self.counters.step)
        # Fixed latents from their own seed: every grid of a run (and of its reruns) shows the same z and classes.
        z, y = G.random_inputs(self.cfg.sample.n, self.cfg.sample.trunc,
                               seed=derive_seed(self.cfg.train.seed, FIXED_LATENTS_STREAM))
        with self.accelerator.autocast():
            images = G.generate(z, y, batch_size=self.micro_batch)
        path = self.run_dir / "samples" / f"step-{self.counters.step:07d}.png"
        self._grid = (self.counters.step, publish_samples(self.accelerator, images, path, self.counters.step))
        return path

    def _next_real(self) -> tuple[torch.Tensor, torch.Tensor]:
        pos = self.counters.real_seen
        self.counters.real_seen += self.micro_batch
        return self.stream.batch(pos, self.micro_batch)

    def train_iteration(self) -> dict[str, torch.Tensor]:
        """d_steps D steps and one G step. Returns device tensors; nothing here waits for the device."""
        t, c, dc, p = self.cfg.train, self.counters, self.state.on_device, self.parts
        torch.manual_seed(step_seed(t.seed, self.rank, c.step, c.rollbacks))
        bad = torch.zeros((), device=self.accelerator.device)
        d_losses, recon = [], []
        for _ in range(t.d_steps):
            power_iteration_(self.D)  # one spectral-norm power iteration per optimiser step
            d_losses.append(self.phases.discriminator(self._next_real, p.d_scaler))
            recon.append(self.phases.last_recon)
            skipped = optimizer_step(p.d_opt, p.d_scaler, self._d_params)
            dc["skipped_d"] += skipped
            bad = torch.maximum(bad, skipped)
        power_iteration_(self.G)
        g_loss = self.phases.generator(p.g_scaler)
        skipped = optimizer_step(p.g_opt, p.g_scaler, self._g_params,
                                 before_step=self.phases.add_orthogonal_gradient)
        dc["skipped_g"] += skipped
        dc["bad_streak"] = (dc["bad_streak"] + 1) * torch.maximum(bad, skipped)
        c.step += 1
        self.ema.update(self.G, c.step)
        losses = {"d_loss": torch.stack(d_losses).mean(), "g_loss": g_loss, **self.ada.end_iteration(c.step)}
        if self.phases.perceptual is not None:
            losses["d_recon"] = torch.stack(recon).mean()
        return losses

    def run(self) -> Counters:
        """Train to train.max_kimg or a stop request, then checkpoint; returns the counters."""
        c = self.counters
        self._start()
        keys = ["d_loss", "g_loss", "r_t", "augment_p"] + (["d_recon"] if self.phases.perceptual is not None else [])
        total = self.total_steps
        report = Reporter(self.cfg, self.state, console=self.console, total_steps=total,
                          images_per_step=self.images_per_step, loss_keys=keys, networks=(self.G, self.D))
        t_start, elapsed0 = time.perf_counter(), c.elapsed
        stop_reason, recovery = None, Recovery(self)
        with Stopping(self.cfg.train.max_minutes, self.accelerator) as stopping, report:
            self.stopping = stopping
            while c.step < total:
                losses = self.train_iteration()
                c.elapsed = elapsed0 + time.perf_counter() - t_start
                try:
                    at_log = report.iteration(losses)
                except TrainingDiverged as diverged:
                    recovery.recover(diverged, report)    # back to a checkpoint (train.on_diverge), or raises
                    continue
                self._periodic(report.log)
                stop_reason = stopping.reason(check_now=at_log)
                if stop_reason:
                    break
        self._finish(stop_reason or limit_reached(self.cfg.train))
        return c

    def _start(self) -> None:
        cfg, acc = self.cfg, self.accelerator
        if self.is_main:
            atomic_write_text(self.run_dir / "config.json", cfg.to_json())
            start_trackers(acc, self.run_dir, flat_scalars(cfg.to_dict()))
            # The global RNG this touches (random flips) is reseeded at every iteration: the trajectory is unchanged.
            write_reals(acc, self.stream, cfg.sample.n, self.run_dir, self.counters.step)
            self.console.print(
                f"run {self.run_dir}: {cfg.model.arch} {cfg.model.resolution}px, {self.n_classes} class(es), "
                f"{len(self.stream) * self.world} images, batch {self.plan.batch}{self.plan.rounding(cfg)} = "
                f"{self.micro_batch} x {self.accumulation} accumulation x {self.world} process(es), "
                f"{trainable_summary(self.G, self.D, cfg.train)}, device {acc.device}, "
                f"precision {self.precision} ({self.precision_why})"
            )

    def _periodic(self, log: MetricsLog | None) -> None:
        """Progress grids, evaluation and checkpoints, each every N iterations as the config asks."""
        every, c = schedule(self.cfg.train, self.images_per_step), self.counters
        if every.due("sample", c.step):
            self.write_samples()
        if every.due("eval", c.step):
            self.evaluate(log)
        if every.due("ckpt", c.step) and c.step < every.total:
            self.save_checkpoint()

    def evaluate(self, log: MetricsLog | None) -> None:
        """FID/KID of the EMA generator now (train.eval_every_kimg); the tracker keeps the best in best/."""
        c = self.counters
        results = self.quality.evaluate(self.sampling_generator(), c.step, self.run_dir,
                                        self.class_names)
        if log is not None:
            log.write({"event": "eval", "step": c.step, "extractor": self.quality.extractor.name,
                       **results})
        log_scalars(self.accelerator, results, c.step)   # FID/KID beside the losses, at the same steps
        if self.is_main:
            shown = ", ".join(f"{k} {results[k]:.4g}" for k in self.cfg.eval.metrics if k in results)
            self.console.print(f"step {c.step} eval ({results['n_fake']} images): {shown}")

    def _finish(self, why: str) -> None:
        path = self.save_checkpoint()
        samples = self.write_samples()
        # The trackers' end only: Accelerator.end_training would also destroy the process group, on the main
        # process alone (the only one with trackers), and leave the others waiting in their next collective.
        for tracker in self.accelerator.trackers:
            tracker.finish()
        if self.is_main:
            self.console.print(f"{why}: checkpoint {path}, samples {samples}, generator "
                               f"{self.run_dir / GENERATOR_FILE}")


def train(cfg: Config, *, resume: str | None = None, overwrite: bool = False, console: Console | None = None) -> Trainer:
    """Train a run described by `cfg` to completion (or a stop condition); returns the Trainer."""
    trainer = Trainer(cfg, resume=resume, overwrite=overwrite, console=console)
    trainer.run()
    return trainer
