"""`smallgan eval`: FID / KID / IS / precision-recall of a run's EMA generator, or between two image sets."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import typer

from smallgan.cli.app import app
from smallgan.cli.common import one_run
from smallgan.errors import SmallganError


@app.command("eval")
def eval_command(
    run_arg: Optional[str] = typer.Argument(None, metavar="RUN", help="Run folder or hf:USER/NAME: evaluates "
                                            "its EMA generator."),
    run: Optional[str] = typer.Option(None, "--run", help="The same as RUN."),
    ckpt: Optional[Path] = typer.Option(None, "--ckpt", help="A generator.safetensors or a checkpoint folder."),
    real: Optional[str] = typer.Option(
        None, "--real", help="Prepared dataset or image folder (default with --run: the run's dataset)."
    ),
    fake: Optional[Path] = typer.Option(None, "--fake", help="Folder of generated images (instead of --run)."),
    n: int = typer.Option(10000, "--n", help="Images to generate (--run/--ckpt; --fake uses every file)."),
    trunc: float = typer.Option(0.0, "--trunc", help="Truncation threshold for z (--run/--ckpt); 0 = none."),
    metrics: str = typer.Option("fid,kid", "--metrics", help="Comma-separated: fid,kid,is,pr,memorization."),
    grid: Optional[Path] = typer.Option(
        None, "--grid", help="memorization: the PNG of suspect fakes beside their 3 nearest training images "
        "(default: <run>/memorization/eval-step-N.png; with --fake: memorization.png)."),
    batch_size: int = typer.Option(64, "--batch-size", help="Images per batch and process."),
    seed: int = typer.Option(0, "--seed", help="Seed for latents and KID / precision-recall subsets."),
    inception_weights: Optional[Path] = typer.Option(
        None, "--inception-weights",
        help="Path to weights-inception-2015-12-05-6726825d.pth when it is not in the torch.hub cache.",
    ),
    cpu: bool = typer.Option(False, "--cpu", help="Run on the CPU even when a GPU is present."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompute the real-set statistics."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="JSONL file to append the result to (default with --run/--ckpt: <run>/metrics.jsonl)."
    ),
    extractor_name: str = typer.Option(
        "inception", "--extractor", help="inception | pixels (32-px pixels, no download; memorization offline) | "
        "tiny (a random net for tests: numbers meaningless)."
    ),
) -> None:
    """Quality metrics with the standard TF-ported Inception-v3 (torch-fidelity), comparable to published tables.

    `--metrics memorization` finds each sample's nearest training images (docs/fewshot-regularisers.md); without
    the Inception weights it falls back to pixel distances (`--extractor pixels`) with a note.
    Multi-GPU: `accelerate launch -m smallgan eval RUN` splits generation and features across processes.
    """
    from smallgan.metrics.names import parse_metrics

    wanted = parse_metrics(metrics)
    run = one_run(run_arg, run)
    from smallgan.hub import is_hub, resolve_run

    hub = is_hub(run)
    if hub:   # its snapshot in the read-only hub cache: results are printed, the copy check's grid goes to ./
        run, grid = resolve_run(run), grid or Path("memorization.png")
    source = run or ckpt
    if (source is None) == (fake is None) or (run is not None and ckpt is not None):
        raise SmallganError("pass either RUN (or --run, --ckpt FILE), or --real DIR --fake DIR")
    if fake is not None and real is None:
        raise SmallganError("--fake needs --real (a prepared dataset or an image folder to compare with)")
    if n < 2:
        raise SmallganError(f"--n must be at least 2, got {n}")

    from accelerate import Accelerator
    from rich.console import Console

    from smallgan.cli.common import PhaseProgress, run_folder_of

    acc = Accelerator(cpu=cpu)
    console = Console(stderr=True, quiet=not acc.is_main_process)  # progress and notes; the table goes to stdout
    from smallgan.metrics.features import build_extractor

    try:
        extractor = build_extractor(extractor_name, inception_weights, acc.device)
    except SmallganError as e:
        if wanted != ("memorization",) or extractor_name != "inception":
            raise
        console.print(f"note: {e}; the memorisation check uses pixel distances instead (--extractor pixels)")
        extractor = build_extractor("pixels", device=acc.device)
    with PhaseProgress(console) as progress:
        if fake is not None:
            results = _evaluate_folders(real, fake, extractor, wanted, batch_size=batch_size, accelerator=acc,
                                        cache=not no_cache, progress=progress("images"), seed=seed,
                                        grid=grid or Path("memorization.png"))
            record: dict[str, Any] = {"real": str(real), "fake": str(fake)}
        else:
            results, record = _evaluate_checkpoint(source, real, extractor, wanted, n=n, trunc=trunc, seed=seed,
                                                   batch_size=batch_size, accelerator=acc, cache=not no_cache,
                                                   progress=progress, console=console, grid=grid)
            if out is None and not hub:
                out = run_folder_of(source) / "metrics.jsonl"
    record = {"event": "eval", "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **record,
              "extractor": extractor.name, **results}
    if acc.is_main_process:
        _print_table(Console(), record, results)
        if "memorized" in results:
            from smallgan.metrics.memorization import summary

            console.print(f"{summary(results)}; grid {results['memorization_grid']}", highlight=False)
        if out is not None:
            from smallgan.training.stats import MetricsLog

            log = MetricsLog(out)
            log.write(record)
            log.close()
            console.print(f"appended to {out}", highlight=False)


def _evaluate_checkpoint(source: Path, real: str | None, extractor: Any, metrics: tuple[str, ...], *, n: int,
                         trunc: float, seed: int, batch_size: int, accelerator: Any, cache: bool,
                         progress: Any, console: Any, grid: Path | None) -> tuple[dict[str, float], dict[str, Any]]:
    from smallgan.metrics.run import RunEvaluator
    from smallgan.sampling.export import load_generator

    G = load_generator(source, device=accelerator.device)
    resolution = G.resolution
    if real is not None:
        dataset = real
    else:  # the run's own dataset, prepared exactly as training prepared it (builtin:NAME, image folder...)
        from smallgan.data import resolve_dataset

        with accelerator.main_process_first():
            dataset = resolve_dataset(G.config.data.path, resolution, console=console)
    evaluator = RunEvaluator(dataset, extractor, resolution=resolution, batch_size=batch_size,
                             accelerator=accelerator, cache=cache)
    if any(m != "memorization" for m in metrics):   # the memorisation check reads the images, not these
        evaluator.real_statistics(progress("real images"))
    if grid is None:
        from smallgan.cli.common import run_folder_of

        grid = run_folder_of(source) / "memorization" / f"eval-step-{G.step or 0:07d}.png"
    results = evaluator.evaluate(G, n=n, metrics=metrics, trunc=trunc, seed=seed, metric_seed=seed,
                                 progress=progress("generated images"), grid=grid)
    record = {"ckpt": str(source), "step": G.step, "dataset": str(dataset),
              "resolution": resolution, "trunc": trunc, "seed": seed}
    return results, record


def _evaluate_folders(real: str, fake: Path, extractor: Any, metrics: tuple[str, ...], *, grid: Path,
                      **options: Any) -> dict[str, Any]:
    """Metrics between an image folder and a real set; the memorisation check against the real set's images."""
    from smallgan.metrics.evaluate import _image_size, evaluate_folders, folder_sample_fn, list_images

    standard = tuple(m for m in metrics if m != "memorization")
    results: dict[str, Any] = evaluate_folders(real, fake, extractor, standard, **options) if standard else {}
    if "memorization" in metrics:
        from smallgan.metrics.memorization import memorization_check
        from smallgan.metrics.run import load_real_images

        files = list_images(fake)
        if not files:
            raise SmallganError(f"{fake} holds no images")
        resolution = _image_size(files[0])
        memo = memorization_check(folder_sample_fn(files, resolution), len(files), load_real_images(real, resolution),
                                  extractor, batch_size=options["batch_size"], accelerator=options["accelerator"],
                                  grid=grid, progress=options["progress"])
        results = {**memo, **results}
    return results


def _print_table(console: Any, record: dict[str, Any], results: dict[str, float]) -> None:
    from rich.table import Table

    table = Table(title=f"smallgan eval ({record['extractor']})", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [("FID", "fid", None), ("KID", "kid", "kid_std"), ("IS", "is", "is_std"),
            ("precision", "precision", None), ("recall", "recall", None),
            ("memorised share (new images: ~5%)", "memorized", None),
            ("NN distance fake / real (medians)", "nn_ratio", None)]
    for label, key, std in rows:
        if key in results:
            digits = 6 if key == "kid" else 4  # KID values are around 1e-3
            value = f"{results[key]:.{digits}f}" + (f" ± {results[std]:.{digits}f}" if std else "")
            table.add_row(label, value)
    table.add_row("generated images", str(results["n_fake"]))
    table.add_row("real images", str(results["n_real"]))
    console.print(table)
