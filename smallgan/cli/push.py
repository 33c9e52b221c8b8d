"""`smallgan push RUN --repo USER/NAME`: share a trained generator on the Hugging Face Hub (smallgan/hub.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from smallgan.cli.app import app


@app.command("push")
def push_command(
    run: Path = typer.Argument(..., metavar="RUN", help="Run folder to share (runs/NAME)."),
    repo: str = typer.Option(..., "--repo", help="Model repository USER/NAME on the Hub (created when missing)."),
    license: str = typer.Option("", "--license", help="Licence of the weights for the model card, e.g. cc-by-4.0, "
                                "mit (mind the licence of your training images)."),
    private: bool = typer.Option(False, "--private", help="Create the repository private."),
    generator_only: bool = typer.Option(False, "--generator-only", help="Leave out the checkpoint's G and D "
                                        "weights (then `--init hf:USER/NAME` cannot fine-tune from it)."),
    token: Optional[str] = typer.Option(None, "--token", help="Hub token (default: `huggingface-cli login`'s, "
                                        "or HF_TOKEN).", show_default=False),
    message: Optional[str] = typer.Option(None, "--message", "-m", help="Commit message."),
) -> None:
    """Upload a run's generator (safetensors and config), a model card and a sample grid to the Hugging Face Hub;
    `hf:USER/NAME` then works wherever a run does (sample, eval, --init, load_generator)."""
    from smallgan.sharing import push_run

    url = push_run(run, repo, license=license, private=private, token=token, with_checkpoint=not generator_only,
                   message=message)
    typer.echo(f"pushed {run} to {url}; sample it with: smallgan sample hf:{repo} --trunc 0.5 --grid")
