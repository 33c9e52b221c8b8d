"""`smallgan train` / `python -m smallgan.train` / `accelerate launch -m smallgan.train`, and `smallgan demo`."""

from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console

from smallgan.cli.app import SetOption, app, run_app
from smallgan.cli.common import PRECISION_HELP, check_precision, config_from_options, normalize_resume_argv
from smallgan.cli.run_config import DEFAULT_RECIPE, plan_training, print_notes
from smallgan.config import LOG_WITH
from smallgan.errors import SmallganError
from smallgan.exit_codes import ExitCode


def train_command(
    recipe: Optional[str] = typer.Option(
        None, "--recipe", "-r", help=f"Built-in recipe (`smallgan recipes` lists them) or a .toml path. A new run "
        f"without it trains {DEFAULT_RECIPE} (a note says so); a continued run uses its saved config."),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Prepared dataset, image folder or builtin:shapes."),
    name: Optional[str] = typer.Option(None, "--name", help="Run folder name under train.out_dir."),
    resume: str = typer.Option(
        "auto", "--resume", help="auto: continue the run folder's latest checkpoint when it has one, else start; "
        "or a run folder (runs/NAME) or checkpoint folder (runs/NAME/checkpoints/step-*) to continue."),
    init: Optional[str] = typer.Option(
        None, "--init", help="Start a new run from another run's weights (a run or checkpoint folder, e.g. one "
        "written by `smallgan convert`): fine-tuning, for new classes too. Same as --set train.init=PATH."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after this many G steps."),
    max_kimg: Optional[float] = typer.Option(
        None, "--max-kimg", help="Stop after this many thousand real images through D (with --max-steps: the first)."
    ),
    max_minutes: Optional[float] = typer.Option(None, "--max-minutes", help="Stop (with a checkpoint) after this."),
    precision: Optional[str] = typer.Option(
        None, "--precision", help=PRECISION_HELP + " Default: the recipe's, else auto."),
    lpips_weights: Optional[str] = typer.Option(
        None, "--lpips-weights", help="Local vgg16-397923af.pth for FastGAN's LPIPS loss (offline machines)."
    ),
    log_with: Optional[str] = typer.Option(
        None, "--log-with", help="Tracker for scalars and image grids: auto (TensorBoard when installed, the "
        "default) | none | tensorboard | wandb."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start over in an existing run folder (its "
                                   "checkpoints are removed)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved config and exit."),
    sets: Optional[list[str]] = SetOption,
) -> None:
    """Train BigGAN on a prepared dataset (any device; DDP when launched with accelerate/torchrun). Rerunning
    the same command continues the run. Every setting and its default: smallgan/config.py."""
    check_precision(precision)
    trackers = [v for v in LOG_WITH if v]   # "" only stands for none in configs saved before auto existed
    if log_with is not None and log_with not in trackers:
        raise SmallganError(f"--log-with {log_with}: use one of {' | '.join(trackers)}")
    plan = plan_training(recipe, sets, {
        "data.path": data, "train.name": name, "train.init": init, "train.max_steps": max_steps,
        "train.max_kimg": max_kimg, "train.max_minutes": max_minutes, "train.precision": precision,
        "train.lpips_weights": lpips_weights, "train.log_with": log_with,
    }, resume, overwrite)
    print_notes(plan)
    if dry_run:
        print(plan.cfg.to_json())
        return
    import torch.distributed as dist

    from smallgan.training.loop import train

    trainer = train(plan.cfg, resume=plan.resume, overwrite=overwrite)
    if dist.is_available() and dist.is_initialized():
        # A launched run ends its process group itself: gloo/NCCL threads still running at interpreter exit can
        # abort the process ("terminate called without an active exception") after a successful run.
        dist.destroy_process_group()
    signal_name = trainer.stopping.signal if trainer.stopping else None
    if signal_name:   # saved, but not finished: a scheduler must be able to tell (smallgan/exit_codes.py)
        raise typer.Exit(ExitCode.TERMINATED if signal_name == "SIGTERM" else ExitCode.INTERRUPTED)


app.command("train")(train_command)


@app.command()
def demo(
    minutes: float = typer.Option(5.0, "--minutes", help="Training time budget."),
    steps: int = typer.Option(2800, "--steps", help="Maximum G steps (whichever comes first)."),
    out_dir: str = typer.Option("runs", "--out-dir", help="Where the demo run folder goes."),
) -> None:
    """Prepare the built-in handwritten digits, train the tiny-cpu recipe for a few minutes, write a sample grid."""
    from smallgan.training.loop import train

    console = Console(stderr=True, soft_wrap=True)
    cfg = config_from_options("tiny-cpu", None, {
        # The digits, not the shapes: a small D learns the shapes' classes too slowly for a demo (docs/variety.md).
        "data.path": "builtin:digits", "train.name": "demo", "train.out_dir": out_dir,
        "train.max_minutes": minutes, "train.max_steps": steps,
    })
    trainer = train(cfg, overwrite=True, console=console)
    run = trainer.run_dir
    console.print(f"\n[bold green]demo finished[/] after {trainer.counters.step} steps. Look at:")
    console.print(f"  samples    {run / 'samples' / 'latest.png'} (real images: {run / 'reals.png'})")
    console.print(f"  generator  {run / 'generator.safetensors'}")
    console.print(f"  metrics    {run / 'metrics.jsonl'}")
    console.print(f"  continue   smallgan train --resume {run} --max-steps {trainer.counters.step * 2}")


def main() -> None:
    """Entry point of `python -m smallgan.train` (also under `accelerate launch -m smallgan.train`)."""
    import sys

    single = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    single.command()(train_command)
    sys.argv = [sys.argv[0], *normalize_resume_argv(sys.argv[1:])]
    run_app(single)
