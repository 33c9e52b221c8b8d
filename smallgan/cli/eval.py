"""`smallgan eval`: FID / KID / IS / precision-recall of a run's EMA generator, or between two image sets."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from smallgan.cli.app import app
from smallgan.cli.common import CkptOption, RunOption, one_run
from smallgan.errors import SmallganError

if TYPE_CHECKING:
    from smallgan.metrics.request import EvalRequest


# The options, one alias each, so that the command's signature reads as a table.
RunArg = Annotated[Optional[str], typer.Argument(
    metavar="RUN", help="Run folder or hf:USER/NAME: evaluates its EMA generator.")]
Real = Annotated[Optional[str], typer.Option(
    "--real", help="Prepared dataset or image folder (default with --run: the run's dataset).")]
Fake = Annotated[Optional[Path], typer.Option("--fake", help="Folder of generated images (instead of --run).")]
N = Annotated[int, typer.Option("--n", help="Images to generate (--run/--ckpt; --fake uses every file).")]
Trunc = Annotated[float, typer.Option("--trunc", help="Truncation threshold for z (--run/--ckpt); 0 = none.")]
Metrics = Annotated[str, typer.Option("--metrics", help="Comma-separated: fid,kid,is,pr,memorization.")]
Grid = Annotated[Optional[Path], typer.Option(
    "--grid", help="memorization: the PNG of suspect fakes beside their 3 nearest training images "
    "(default: <run>/memorization/eval-step-N.png; with --fake: memorization.png).")]
BatchSize = Annotated[int, typer.Option("--batch-size", help="Images per batch and process.")]
Seed = Annotated[int, typer.Option("--seed", help="Seed for latents and KID / precision-recall subsets.")]
InceptionWeights = Annotated[Optional[Path], typer.Option(
    "--inception-weights",
    help="Path to weights-inception-2015-12-05-6726825d.pth when it is not in the torch.hub cache.")]
Cpu = Annotated[bool, typer.Option("--cpu", help="Run on the CPU even when a GPU is present.")]
NoCache = Annotated[bool, typer.Option("--no-cache", help="Recompute the real-set statistics.")]
Out = Annotated[Optional[Path], typer.Option(
    "--out", help="JSONL file to append the result to (default with --run/--ckpt: <run>/metrics.jsonl).")]
Extractor = Annotated[str, typer.Option(
    "--extractor", help="inception | pixels (32-px pixels, no download; memorization offline) | "
    "tiny (a random net for tests: numbers meaningless).")]


@app.command("eval")
def eval_command(run_arg: RunArg = None, run: RunOption = None, ckpt: CkptOption = None, real: Real = None,
                 fake: Fake = None, n: N = 10000, trunc: Trunc = 0.0, metrics: Metrics = "fid,kid",
                 grid: Grid = None, batch_size: BatchSize = 64, seed: Seed = 0,
                 inception_weights: InceptionWeights = None, cpu: Cpu = False, no_cache: NoCache = False,
                 out: Out = None, extractor_name: Extractor = "inception") -> None:
    """Quality metrics with the standard TF-ported Inception-v3 (torch-fidelity), comparable to published tables.

    `--metrics memorization` finds each sample's nearest training images (docs/fewshot-regularisers.md); without
    the Inception weights it falls back to pixel distances (`--extractor pixels`) with a note.
    Multi-GPU: `accelerate launch -m smallgan eval RUN` splits generation and features across processes.
    """
    from smallgan.hub import is_hub, resolve_run
    from smallgan.metrics.names import parse_metrics
    from smallgan.metrics.request import EvalRequest

    req = EvalRequest(parse_metrics(metrics), real=real, fake=fake, n=n, trunc=trunc, seed=seed, grid=grid,
                      batch_size=batch_size, extractor=extractor_name, inception_weights=inception_weights,
                      cache=not no_cache)
    run = one_run(run_arg, run)
    if run is not None and ckpt is not None:
        raise SmallganError("pass either RUN (or --run, --ckpt FILE), or --real DIR --fake DIR")
    hub = is_hub(run)
    if hub:   # its snapshot in the read-only hub cache: results are printed, the copy check's grid goes to ./
        run, req.grid = resolve_run(run), grid or Path("memorization.png")
    req.source = run or ckpt
    req.check()
    if req.source is not None:
        from smallgan.cli.common import run_folder_of

        req.run_folder = run_folder_of(Path(req.source))
        out = out or (None if hub else req.run_folder / "metrics.jsonl")
    _evaluate(req, cpu, out)


def _evaluate(req: EvalRequest, cpu: bool, out: Path | None) -> None:
    """Run the request on this process's device; the main process prints the table and appends the record."""
    from accelerate import Accelerator
    from rich.console import Console

    from smallgan.cli.common import PhaseProgress
    from smallgan.metrics.request import eval_extractor, evaluate_request

    acc = Accelerator(cpu=cpu)
    console = Console(stderr=True, quiet=not acc.is_main_process)  # progress and notes; the table goes to stdout
    extractor = eval_extractor(req, acc.device, console.print)
    with PhaseProgress(console) as progress:
        record = evaluate_request(req, extractor, accelerator=acc, progress=progress, console=console)
    if not acc.is_main_process:
        return
    _print_table(Console(), record, record)
    if "memorized" in record:
        from smallgan.metrics.memorization import summary

        console.print(f"{summary(record)}; grid {record['memorization_grid']}", highlight=False)
    if out is not None:
        from smallgan.training.stats import MetricsLog

        log = MetricsLog(out)
        log.write(record)
        log.close()
        console.print(f"appended to {out}", highlight=False)


def _print_table(console: Any, record: dict[str, Any], results: dict[str, Any]) -> None:
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
