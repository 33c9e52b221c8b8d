"""Quality tracking during training (train.eval_every): FID/KID/... of the EMA generator and the best model.

BigGAN's "which_best": the generator with the best tracked metric is exported to ``best/`` when it improves,
so a run that later collapses still leaves its best model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from smallgan import checkpoint as ckpt
from smallgan.config import Config
from smallgan.metrics.best import BestTracker


class QualityTracker:
    def __init__(self, cfg: Config, data_path: Path | None, accelerator: Any, best_state: dict | None) -> None:
        self.cfg, self.data_path, self.accelerator = cfg, data_path, accelerator
        self.best = BestTracker()
        if best_state:
            self.best.load_state_dict(best_state)
        self.extractor = None
        self._real_stats = None
        if cfg.train.eval_every:
            from smallgan.metrics.features import build_extractor

            # Built now, so missing Inception weights stop the run before any training.
            self.extractor = build_extractor(cfg.eval.extractor, cfg.eval.inception_weights, accelerator.device)

    def evaluate(self, generator: nn.Module, n_classes: int, step: int, run_dir: Path,
                 class_names: list[str]) -> dict[str, float]:
        """Metrics of `generator` (the EMA copy); exports it to best/ on a new best. All processes call it."""
        from smallgan.metrics.evaluate import evaluate_generator, real_statistics
        from smallgan.metrics.generate import generator_sample_fn

        e, acc = self.cfg.eval, self.accelerator
        if self._real_stats is None:
            # Cached beside the dataset. Not under main_process_first: it gathers across processes.
            self._real_stats = real_statistics(self.data_path, self.extractor, resolution=self.cfg.model.resolution,
                                               batch_size=e.batch_size, accelerator=acc)
        # The same latents at every evaluation, so successive numbers differ only by the generator.
        sample_fn = generator_sample_fn(generator, n_classes, seed=self.cfg.train.seed, trunc=self.cfg.sample.trunc,
                                        device=acc.device)
        results = evaluate_generator(sample_fn, e.n, self._real_stats, self.extractor, metrics=tuple(e.metrics),
                                     batch_size=e.batch_size, accelerator=acc)
        if self.best.update(e.best, results[e.best], step) and acc.is_main_process:
            best_dir = Path(run_dir) / "best"
            ckpt.export_generator(best_dir / ckpt.GENERATOR_FILE, generator, self.cfg, class_names, step)
            ckpt.atomic_write_text(best_dir / "best.json", json.dumps(
                {"metric": e.best, "value": results[e.best], "step": step, **results}, indent=2))
        return results
