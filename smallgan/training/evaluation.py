"""Quality tracking during training (train.eval_every_kimg): FID/KID/... of the EMA generator and the best model.

The evaluation itself is :class:`~smallgan.metrics.run.RunEvaluator`, the same as ``smallgan eval --run``.
BigGAN's "which_best": the generator with the best tracked metric is exported to ``best/`` when it improves,
so a run that later collapses still leaves its best model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from smallgan.checkpoint import GENERATOR_FILE, export_generator
from smallgan.config import Config
from smallgan.io import write_json
from smallgan.metrics.best import BestTracker
from smallgan.sampling.generator import TrainedGenerator
from smallgan.training.stats import MetricsLog
from smallgan.training.tracking import log_scalars


class QualityTracker:
    def __init__(self, cfg: Config, data_path: Path | None, accelerator: Any, best: BestTracker) -> None:
        """`best`: the training state's (it is checkpointed with the rest)."""
        self.cfg, self.accelerator, self.best = cfg, accelerator, best
        self.extractor = None
        self.evaluator = None
        if cfg.train.eval_every_kimg:
            from smallgan.metrics.features import build_extractor
            from smallgan.metrics.run import RunEvaluator

            # Built now, so missing Inception weights stop the run before any training.
            self.extractor = build_extractor(cfg.eval.extractor, cfg.eval.inception_weights, accelerator.device)
            # Real statistics cached beside the dataset. Not under main_process_first: they gather across processes.
            self.evaluator = RunEvaluator(data_path, self.extractor, resolution=cfg.model.resolution,
                                          batch_size=cfg.eval.batch_size, accelerator=accelerator)

    def evaluate(self, generator: nn.Module, step: int, run_dir: Path, class_names: list[str],
                 log: MetricsLog | None) -> str:
        """Metrics of `generator` (the EMA copy, prepared for sampling), to `log` and the trackers; exports it to
        best/ on a new best. All processes call it; returns the line that shows the numbers."""
        e, cfg = self.cfg.eval, self.cfg
        # The same latents at every evaluation, so successive numbers differ only by the generator.
        results = self.evaluator.evaluate(TrainedGenerator(generator, cfg, class_names, step=step), n=e.n,
                                          metrics=tuple(e.metrics), trunc=cfg.sample.trunc, seed=cfg.train.seed,
                                          grid=Path(run_dir) / "memorization" / f"step-{step:07d}.png")
        if self.best.update(e.best, results[e.best], step) and self.accelerator.is_main_process:
            best_dir = Path(run_dir) / "best"
            export_generator(best_dir / GENERATOR_FILE, generator, cfg, class_names, step)
            write_json(best_dir / "best.json", {"metric": e.best, "value": results[e.best], "step": step, **results})
        if log is not None:
            log.write({"event": "eval", "step": step, "extractor": self.extractor.name, **results})
        log_scalars(self.accelerator, results, step)   # FID/KID beside the losses, at the same steps
        shown = ", ".join(f"{k} {results[k]:.4g}" for k in e.metrics if k in results)
        return f"step {step} eval ({results['n_fake']} images): {shown}"
