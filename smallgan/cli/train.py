"""`smallgan train` / `python -m smallgan.train` / `accelerate launch -m smallgan.train`, and `smallgan demo`."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.console import Console

from smallgan.cli.app import app, run_app
from smallgan.cli.common import PRECISION_HELP, check_precision, config_from_options, normalize_resume_argv
from smallgan.cli.run_config import DEFAULT_RECIPE, plan_training, print_notes
from smallgan.config import LOG_WITH, Config
from smallgan.errors import SmallganError
from smallgan.exit_codes import ExitCode


# `smallgan train --help` groups its options in these panels (the flags people change most first).
RUN, LENGTH, PROGRESS, OTHER = "Data and run folder", "Length, batch and precision", \
    "Progress grids, checkpoints and evaluation", "Everything else"


Recipe = Annotated[Optional[str], typer.Option(
    "--recipe", "-r", rich_help_panel=RUN, help=f"Built-in recipe (`smallgan recipes` lists them) or a .toml path. "
    f"A new run without it trains {DEFAULT_RECIPE} (a note says so), or with --init the source's model; a continued "
    "run uses its saved config.")]
Data = Annotated[Optional[str], typer.Option("--data", "-d", rich_help_panel=RUN, help="Prepared dataset (the "
                                             "folder `smallgan prepare` wrote), image folder, hf:NAME or builtin:shapes.")]
Name = Annotated[Optional[str], typer.Option(
    "--name", rich_help_panel=RUN, help="Run folder name under --out-dir (default: the recipe's name).")]
OutDir = Annotated[Optional[str], typer.Option(
    "--out-dir", rich_help_panel=RUN, help="Where run folders go (train.out_dir; default runs).")]
Resume = Annotated[str, typer.Option(
    "--resume", rich_help_panel=RUN, help="auto: continue the run folder's latest checkpoint when it has one, else "
    "start; or a run folder (runs/NAME) or checkpoint folder (runs/NAME/checkpoints/step-*).")]
Overwrite = Annotated[bool, typer.Option(
    "--overwrite", rich_help_panel=RUN, help="Start over in an existing run folder (its checkpoints are removed).")]
Init = Annotated[Optional[str], typer.Option(
    "--init", rich_help_panel=RUN, help="Start a new run from another run's weights (a run or checkpoint folder, "
    "one written by `smallgan convert`, or hf:USER/NAME): fine-tuning, for new classes too.")]
MaxSteps = Annotated[Optional[int], typer.Option("--max-steps", rich_help_panel=LENGTH,
                                                 help="Stop after this many G steps.")]
MaxKimg = Annotated[Optional[float], typer.Option(
    "--max-kimg", rich_help_panel=LENGTH,
    help="Stop after this many thousand real images through D (with --max-steps: the first).")]
MaxMinutes = Annotated[Optional[float], typer.Option("--max-minutes", rich_help_panel=LENGTH,
                                                     help="Stop (with a checkpoint) after this.")]
Batch = Annotated[Optional[int], typer.Option(
    "--batch", rich_help_panel=LENGTH, help="Images per optimiser step, whatever the number of GPUs (train.batch).")]
MicroBatch = Annotated[Optional[int], typer.Option(
    "--micro-batch", rich_help_panel=LENGTH, help="The most images one GPU takes at once; accumulation makes up "
    "the batch. Lower it when memory runs out (train.micro_batch).")]
Seed = Annotated[Optional[int], typer.Option("--seed", rich_help_panel=LENGTH, help="Seed of the whole run.")]
Precision = Annotated[Optional[str], typer.Option("--precision", rich_help_panel=LENGTH,
                                                  help=PRECISION_HELP + " Default: the recipe's, else auto.")]
LogEvery = Annotated[Optional[int], typer.Option("--log-every", rich_help_panel=PROGRESS,
                                                 help="A log line every N steps.")]
SampleEvery = Annotated[Optional[int], typer.Option(
    "--sample-every", rich_help_panel=PROGRESS, help="A progress grid every N steps (0 = only at the end).")]
CkptEvery = Annotated[Optional[int], typer.Option("--ckpt-every", rich_help_panel=PROGRESS,
                                                  help="A checkpoint every N steps.")]
EvalEvery = Annotated[Optional[int], typer.Option(
    "--eval-every", rich_help_panel=PROGRESS,
    help="KID (eval.metrics) every N steps and the best generator in best/; 0 = off.")]
LogWith = Annotated[Optional[str], typer.Option(
    "--log-with", rich_help_panel=PROGRESS, help="Tracker for scalars and image grids: auto (TensorBoard when "
    "installed, the default) | none | tensorboard | wandb.")]
Sets = Annotated[Optional[list[str]], typer.Option(
    "--set", "-s", rich_help_panel=OTHER,
    help="Any other setting of smallgan/config.py, e.g. --set model.ch=32 (repeatable).")]
LpipsWeights = Annotated[Optional[str], typer.Option(
    "--lpips-weights", rich_help_panel=OTHER,
    help="Local vgg16-397923af.pth for FastGAN's LPIPS loss (offline machines).")]
DryRun = Annotated[bool, typer.Option("--dry-run", rich_help_panel=OTHER,
                                      help="Print the resolved config and exit.")]


def train_command(recipe: Recipe = None, data: Data = None, name: Name = None, out_dir: OutDir = None,
                  resume: Resume = "auto", overwrite: Overwrite = False, init: Init = None,
                  max_steps: MaxSteps = None, max_kimg: MaxKimg = None, max_minutes: MaxMinutes = None,
                  batch: Batch = None, micro_batch: MicroBatch = None, seed: Seed = None,
                  precision: Precision = None, log_every: LogEvery = None, sample_every: SampleEvery = None,
                  ckpt_every: CkptEvery = None, eval_every: EvalEvery = None, log_with: LogWith = None,
                  sets: Sets = None, lpips_weights: LpipsWeights = None, dry_run: DryRun = False) -> None:
    """Train BigGAN on a prepared dataset (any device; DDP when launched with accelerate/torchrun). Rerunning
    the same command continues the run. Every setting and its default: smallgan/config.py."""
    check_precision(precision)
    trackers = [v for v in LOG_WITH if v]   # "" only stands for none in configs saved before auto existed
    if log_with is not None and log_with not in trackers:
        raise SmallganError(f"--log-with {log_with}: use one of {' | '.join(trackers)}")
    plan = plan_training(recipe, sets, {
        "data.path": data, "train.name": name, "train.out_dir": out_dir, "train.init": init,
        "train.max_steps": max_steps, "train.max_kimg": max_kimg, "train.max_minutes": max_minutes,
        "train.batch": batch, "train.micro_batch": micro_batch, "train.seed": seed, "train.precision": precision,
        "train.log_every": log_every, "train.sample_every": sample_every, "train.ckpt_every": ckpt_every,
        "train.eval_every": eval_every, "train.lpips_weights": lpips_weights, "train.log_with": log_with,
    }, resume, overwrite)
    print_notes(plan)
    if dry_run:
        print(plan.cfg.to_json())
        return
    _train(plan.cfg, plan.resume, overwrite)


def _train(cfg: Config, resume: str | None, overwrite: bool) -> None:
    import torch.distributed as dist

    from smallgan.training.loop import train

    trainer = train(cfg, resume=resume, overwrite=overwrite)
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
