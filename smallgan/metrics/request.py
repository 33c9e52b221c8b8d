"""What `smallgan eval` asks for, as a request: a trained generator (a run folder or generator file) against a
real set, or a folder of generated images against one; the result is one record for metrics.jsonl.

The CLI parses its flags into an :class:`EvalRequest`, makes the Accelerator and the console, and calls
:func:`evaluate_request`; the numbers come from :mod:`.run` and :mod:`.folders`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smallgan.errors import SmallganError
from smallgan.metrics.evaluate import ProgressFn
from smallgan.metrics.features import FeatureExtractor

Phases = Callable[[str], ProgressFn]   # label -> the (done, total) callback of that phase


@dataclass
class EvalRequest:
    metrics: tuple[str, ...]                 # validated names (names.parse_metrics)
    source: Path | str | None = None         # run folder or generator file: evaluates its EMA generator
    real: str | None = None                  # prepared dataset or image folder (default with source: the run's)
    fake: Path | None = None                 # folder of generated images (instead of source)
    n: int = 10000                           # images to generate (source); a fake folder gives all its files
    trunc: float = 0.0                       # truncation threshold for z (0 = none)
    seed: int = 0                            # latents, and KID / precision-recall subsets
    batch_size: int = 64                     # images per batch and process
    grid: Path | None = None                 # memorisation: the PNG of suspects (None: under run_folder)
    run_folder: Path | None = None           # the source's run folder (the default grid goes under it)
    extractor: str = "inception"             # inception | pixels | tiny
    inception_weights: Path | None = None    # a local Inception weights file
    cache: bool = True                       # reuse the real set's cached statistics

    def check(self) -> None:
        if (self.source is None) == (self.fake is None):
            raise SmallganError("pass either RUN (or --run, --ckpt FILE), or --real DIR --fake DIR")
        if self.fake is not None and self.real is None:
            raise SmallganError("--fake needs --real (a prepared dataset or an image folder to compare with)")
        if self.n < 2:
            raise SmallganError(f"--n must be at least 2, got {self.n}")


def eval_extractor(req: EvalRequest, device: Any, note: Callable[[str], None]) -> FeatureExtractor:
    """The requested extractor; for the memorisation check alone, pixel distances when Inception is missing."""
    from smallgan.metrics.features import build_extractor

    try:
        return build_extractor(req.extractor, req.inception_weights, device)
    except SmallganError as e:
        if req.metrics != ("memorization",) or req.extractor != "inception":
            raise
        note(f"note: {e}; the memorisation check uses pixel distances instead (--extractor pixels)")
        return build_extractor("pixels", device=device)


def evaluate_request(req: EvalRequest, extractor: FeatureExtractor, *, accelerator: Any, progress: Phases,
                     console: Any) -> dict[str, Any]:
    """The metrics asked for, as the record `smallgan eval` appends to metrics.jsonl (the same on every
    process; every process must call it)."""
    options = dict(batch_size=req.batch_size, accelerator=accelerator, cache=req.cache)
    if req.fake is not None:
        from smallgan.metrics.folders import evaluate_folders_with_memorization

        assert req.real is not None
        results = evaluate_folders_with_memorization(
            req.real, req.fake, extractor, req.metrics, progress=progress("images"), seed=req.seed,
            grid=req.grid or Path("memorization.png"), **options)
        where: dict[str, Any] = {"real": str(req.real), "fake": str(req.fake)}
    else:
        results, where = _evaluate_generator(req, extractor, progress, console, options)
    return {"event": "eval", "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **where, "extractor": extractor.name,
            **results}


def _evaluate_generator(req: EvalRequest, extractor: FeatureExtractor, progress: Phases, console: Any,
                        options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    from smallgan.metrics.run import RunEvaluator
    from smallgan.sampling.export import load_generator

    assert req.source is not None
    accelerator = options["accelerator"]
    G = load_generator(req.source, device=accelerator.device)
    resolution = G.resolution
    if req.real is not None:
        dataset = req.real
    else:  # the run's own dataset, prepared exactly as training prepared it (builtin:NAME, image folder...)
        from smallgan.data import resolve_dataset

        with accelerator.main_process_first():
            dataset = resolve_dataset(G.config.data.path, resolution, console=console)
    evaluator = RunEvaluator(dataset, extractor, resolution=resolution, **options)
    if any(m != "memorization" for m in req.metrics):   # the memorisation check reads the images, not these
        evaluator.real_statistics(progress("real images"))
    grid = req.grid or Path(req.run_folder or ".") / "memorization" / f"eval-step-{G.step or 0:07d}.png"
    results = evaluator.evaluate(G, n=req.n, metrics=req.metrics, trunc=req.trunc, seed=req.seed,
                                 metric_seed=req.seed, progress=progress("generated images"), grid=grid)
    where = {"ckpt": str(req.source), "step": G.step, "dataset": str(dataset), "resolution": resolution,
             "trunc": req.trunc, "seed": req.seed}
    return results, where
