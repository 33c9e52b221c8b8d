"""The BigGAN training loop on Hugging Face Accelerate: one CPU, one GPU, many GPUs or nodes, same code.

One iteration = ``d_steps`` D optimiser steps + one G step, each accumulated over micro-batches so that every
step sees ``train.batch`` images in total (BigGAN's 2048 = 256 x 8 on any number of devices). All randomness
of an iteration comes from a seed derived from (seed, rank, step), and which real images a process sees is a
function of how many it has consumed: a resumed run replays exactly the same trajectory. What the loop trains
and saves is the training state (state.py), its loss the phases of phases.py and loss.py; what it reports,
events.py; when it stops, stopping.py; the run folder and its checkpoints, smallgan/runs.py.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from rich.console import Console

from smallgan import runs
from smallgan.augment import DiffAugment
from smallgan.checkpoint import GENERATOR_FILE
from smallgan.config import Config, take_notes
from smallgan.data import check_data_path
from smallgan.io import atomic_write_text
from smallgan.layers.spectral_norm import power_iteration_
from smallgan.registry import capabilities
from smallgan.runs import run_dir_for
from smallgan.training.batch_plan import plan_batches
from smallgan.training.batches import load_real_data, resolve_flip, step_seed
from smallgan.training.build import build_perceptual, build_state, make_accelerator
from smallgan.training.evaluation import QualityTracker
from smallgan.training.events import Reporter, TrainingDiverged, flat_scalars
from smallgan.training.loss import build_loss
from smallgan.training.phases import GANPhases, optimizer_step
from smallgan.training.rollback import rollback
from smallgan.training.schedule import Schedule, schedule
from smallgan.training.state import Counters, load_checkpoint, save_checkpoint
from smallgan.training.stopping import Stopping, limit_reached
from smallgan.training.stats import MetricsLog
from smallgan.training.tracking import ProgressGrids, start_trackers, write_reals
from smallgan.training.transfer import load_pretrained, trainable_summary

# Re-exported: callers import them from here.
__all__ = ["Counters", "Trainer", "TrainingDiverged", "resolve_flip", "run_dir_for", "train"]


class Trainer:
    def __init__(self, cfg: Config, *, resume: str | None = None, overwrite: bool = False,
                 console: Console | None = None, dataset: Any = None, notes: Sequence[str] = ()) -> None:
        """`dataset`: an already loaded set (``.images`` uint8, ``.labels``, ``.class_names``) instead of
        ``cfg.data.path``; benchmarks use it to time steps on synthetic images. `notes`: the caller's, printed
        with the run's own on the main process."""
        if dataset is None:   # a missing dataset is one line before anything is written
            check_data_path(cfg.data.path, cfg.model.resolution)
        self.run_dir = run_dir_for(cfg)
        self.accelerator, self._precision = make_accelerator(cfg, self.run_dir)
        acc = self.accelerator
        self.console = console or Console(stderr=True, soft_wrap=True)  # log lines stay whole
        self.plan = plan_batches(cfg, acc.num_processes)
        self._say([*notes, *take_notes(cfg), self._precision.note, self.plan.describe(cfg, acc.num_processes)])
        resumed_from, notes = runs.resume_decision(self.run_dir, resume, overwrite)
        if overwrite and acc.is_main_process:
            runs.start_over(self.run_dir)
        acc.wait_for_everyone()
        self._say(notes)

        # Data: prepared once (main process first), then held in memory as uint8.
        data = load_real_data(cfg, acc, self.console, dataset)
        self.stream, self.class_names = data.stream, data.class_names
        # Saved configs (checkpoints, generator export) hold the resolved class count: self-describing.
        self.cfg = cfg = copy.deepcopy(cfg)
        cfg.model.n_classes = data.n_classes
        cfg.train.precision = self.precision      # auto, resolved: config.json says what the run used
        self.state, notes = build_state(
            cfg, data.n_classes, acc, precision=self.precision, images_per_step=self.images_per_step,
            data=runs.data_record(cfg.data.path if dataset is None else "(in memory)", data.fingerprint,
                                  data.n_images))
        self._say(notes)
        s = self.state
        if resumed_from is not None:
            self._say([load_checkpoint(s, resumed_from, cfg.model)], prefix="")
        elif cfg.train.init:   # a new run from another run's weights (fine-tuning), not a resume
            self._say(load_pretrained(s.G, s.D, s.ema, cfg, data.n_classes))
        if acc.is_main_process:
            needed = runs.estimated_checkpoint_bytes(trained=[s.G, s.D], frozen=[s.ema.shadow])
            self._say(runs.prepare_run_dir(self.run_dir, needed * (cfg.train.keep_ckpts + 1)))

        G_wrapped, D_wrapped = acc.prepare(s.G, s.D)
        self.phases = GANPhases(
            accelerator=acc, G=G_wrapped, D=D_wrapped, G_raw=s.G, D_raw=s.D,
            augment=DiffAugment(cfg.train.diffaug), loss=build_loss(cfg.train, build_perceptual(cfg, acc)),
            micro_batch=self.plan.micro_batch, accumulation=self.plan.accumulation,
            splits_real_fake=capabilities(cfg.model).splits_real_fake,
        )
        self.grids = ProgressGrids(cfg, self.class_names, acc, self.run_dir, self.plan.micro_batch)
        self.stopping: Stopping | None = None   # of the last run(): which signal, if any, stopped it
        self.quality = QualityTracker(cfg, data.path, acc, s.best)

    def _say(self, notes: Sequence[str | None], prefix: str = "note: ") -> None:
        """Notes for the user, printed once per launch (main process)."""
        for note in notes:
            if note and self.is_main:
                self.console.print(f"{prefix}{note}")

    # What the loop needs, read from its owners.
    G = property(lambda self: self.state.G, doc="G, unwrapped")
    D = property(lambda self: self.state.D, doc="D, unwrapped")
    ema = property(lambda self: self.state.ema)
    counters = property(lambda self: self.state.counters)
    precision = property(lambda self: self._precision.value, doc="no | fp16 | bf16, as resolved for the device")
    is_main = property(lambda self: self.accelerator.is_main_process)
    micro_batch = property(lambda self: self.plan.micro_batch)
    accumulation = property(lambda self: self.plan.accumulation)

    @property
    def images_per_step(self) -> int:
        """Real images through D per iteration: the unit of kimg (logs, train.max_kimg, the EMA half-life)."""
        return self.plan.batch * self.cfg.train.d_steps

    def save_checkpoint(self) -> Path | None:
        """Every process takes part (gathers the stream positions); only the main one writes."""
        return save_checkpoint(self.state, self.run_dir, self.cfg, self.class_names, self.sampling_generator())

    # ------------------------------------------------------------------------------------------------
    def sampling_generator(self) -> torch.nn.Module:
        """The EMA generator prepared for sampling now (grids, evaluation, export): see training/tracking.py."""
        return self.grids.generator(self.ema, self.counters)

    def write_samples(self) -> Path | None:
        return self.grids.write(self.ema, self.counters)

    def _next_real(self) -> tuple[torch.Tensor, torch.Tensor]:
        pos = self.counters.real_seen
        self.counters.real_seen += self.plan.micro_batch
        return self.stream.batch(pos, self.plan.micro_batch)

    def train_iteration(self) -> dict[str, torch.Tensor]:
        """d_steps D steps and one G step. Returns device tensors; nothing here waits for the device."""
        t, s, loss = self.cfg.train, self.state, self.phases.loss
        c, dc = s.counters, s.on_device
        torch.manual_seed(step_seed(t.seed, self.accelerator.process_index, c.step, c.rollbacks))
        bad = torch.zeros((), device=self.accelerator.device)
        p, d_results = s.ada.strength, []
        for k in range(t.d_steps):
            power_iteration_(s.D)  # one spectral-norm power iteration per optimiser step
            d = self.phases.discriminator(self._next_real, s.d_scaler, p=p, r1=loss.r1_due(c.step * t.d_steps + k),
                                          anchors=s.lecam.anchors() if s.lecam is not None else None)
            s.observe(d)
            skipped = optimizer_step(s.d_opt, s.d_scaler)
            dc["skipped_d"] += skipped
            bad = torch.maximum(bad, skipped)
            d_results.append(d)
        power_iteration_(s.G)
        g = self.phases.generator(s.g_scaler, p=p)
        skipped = optimizer_step(s.g_opt, s.g_scaler, before_step=lambda: loss.add_orthogonal_gradient(s.G))
        dc["skipped_g"] += skipped
        dc["bad_streak"] = (dc["bad_streak"] + 1) * torch.maximum(bad, skipped)
        c.step += 1
        s.ema.update(s.G, c.step)
        losses = {"d_loss": torch.stack([d.loss for d in d_results]).mean(), "g_loss": g.loss,
                  **s.ada.end_iteration(c.step)}
        if loss.perceptual is not None:
            losses["d_recon"] = torch.stack([d.terms.get("recon", torch.zeros_like(d.loss)) for d in d_results]).mean()
        return losses

    def run(self) -> Counters:
        """Train to train.max_kimg or a stop request, then checkpoint; returns the counters."""
        self._start()
        keys = ["d_loss", "g_loss", "r_t", "augment_p"] + (["d_recon"] if self.phases.loss.perceptual else [])
        every = schedule(self.cfg.train, self.images_per_step)   # the run's length and intervals, in iterations
        report = Reporter(self.cfg, self.accelerator, self.run_dir, console=self.console,
                          start_step=self.counters.step, every=every, images_per_step=self.images_per_step,
                          loss_keys=keys, networks=(self.G, self.D))
        t_start, elapsed0 = time.perf_counter(), self.counters.elapsed
        stop_reason = None
        with Stopping(self.cfg.train.max_minutes, self.accelerator) as stopping, report:
            self.stopping = stopping
            while self.counters.step < every.total:
                losses = self.train_iteration()
                self.counters.elapsed = elapsed0 + time.perf_counter() - t_start
                at_log = report.add(losses, self.counters.step)
                if at_log:
                    try:
                        report.report(self.state.sync())
                    except TrainingDiverged as diverged:   # back to a checkpoint (train.on_diverge), or raises
                        self._say([rollback(self.state, diverged, self.cfg, self.run_dir, report.log)], prefix="")
                        report.rewound(self.counters.step)
                        continue
                self._periodic(report.log, every)
                stop_reason = stopping.reason(check_now=at_log)
                if stop_reason:
                    break
        self._finish(stop_reason or limit_reached(self.cfg.train))
        return self.counters

    def _start(self) -> None:
        cfg, acc, plan = self.cfg, self.accelerator, self.plan
        if self.is_main:
            atomic_write_text(self.run_dir / "config.json", cfg.to_json())
            start_trackers(acc, self.run_dir, flat_scalars(cfg.to_dict()))
            # The global RNG this touches (random flips) is reseeded at every iteration: the trajectory is unchanged.
            write_reals(acc, self.stream, cfg.sample.n, self.run_dir, self.counters.step)
            self.console.print(
                f"run {self.run_dir}: {cfg.model.arch} {cfg.model.resolution}px, {cfg.model.n_classes} class(es), "
                f"{len(self.stream) * acc.num_processes} images, batch {plan.batch}{plan.rounding(cfg)} = "
                f"{plan.micro_batch} x {plan.accumulation} accumulation x {acc.num_processes} process(es), "
                f"{trainable_summary(self.G, self.D, cfg.train)}, device {acc.device}, "
                f"precision {self.precision} ({self._precision.why})"
            )

    def _periodic(self, log: MetricsLog | None, every: Schedule) -> None:
        """Progress grids, evaluation and checkpoints, each every N iterations as the config asks."""
        c = self.counters
        if every.due("sample", c.step):
            self.write_samples()
        if every.due("eval", c.step):
            self.evaluate(log)
        if every.due("ckpt", c.step) and c.step < every.total:
            self.save_checkpoint()

    def evaluate(self, log: MetricsLog | None) -> None:
        """FID/KID of the EMA generator now (train.eval_every_kimg); the tracker keeps the best in best/."""
        line = self.quality.evaluate(self.sampling_generator(), self.counters.step, self.run_dir, self.class_names,
                                     log)
        self._say([line], prefix="")

    def _finish(self, why: str) -> None:
        path = self.save_checkpoint()
        samples = self.write_samples()
        # The trackers' end only: Accelerator.end_training would also destroy the process group, on the main
        # process alone (the only one with trackers), and leave the others waiting in their next collective.
        for tracker in self.accelerator.trackers:
            tracker.finish()
        self._say([f"{why}: checkpoint {path}, samples {samples}, generator {self.run_dir / GENERATOR_FILE}"],
                  prefix="")


def train(cfg: Config, *, resume: str | None = None, overwrite: bool = False, console: Console | None = None,
          notes: Sequence[str] = ()) -> Trainer:
    """Train a run described by `cfg` to completion (or a stop condition); returns the Trainer."""
    trainer = Trainer(cfg, resume=resume, overwrite=overwrite, console=console, notes=notes)
    trainer.run()
    return trainer
