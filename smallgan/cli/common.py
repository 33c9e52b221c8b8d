"""Helpers shared by CLI commands: building a config from --recipe/--set and printing it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from smallgan.config import PRECISIONS, Config, load_config
from smallgan.errors import SmallganError

# One precision vocabulary for every command (train.precision's values).
PRECISION_HELP = ("auto (Accelerate's setting, else bf16 on GPUs with native bf16, fp16 on older GPUs, no on a CPU) "
                  "| no (fp32) | fp16 | bf16.")

# RUN's twins in the commands that read a trained generator (sample, eval).
RunOption = Annotated[Optional[str], typer.Option("--run", help="The same as RUN.")]
CkptOption = Annotated[Optional[Path], typer.Option("--ckpt", help="A generator.safetensors or a checkpoint folder.")]


def check_precision(value: str | None) -> None:
    if value is not None and value not in PRECISIONS:
        raise SmallganError(f"--precision {value}: use one of {' | '.join(PRECISIONS)} (fp32 is `no`)")


def config_from_options(recipe: str, sets: list[str] | None, extra: dict[str, object] | None = None) -> Config:
    """--recipe, then --set overrides, then typed CLI options (only those the user gave: None means unset)."""
    return load_config(recipe, override_items(sets, extra))


def override_items(sets: list[str] | None, extra: dict[str, object] | None = None) -> list[str]:
    """--set items, then typed options as ``key=value`` items (those set: None means unset)."""
    return [*(sets or []), *(f"{k}={_literal(v)}" for k, v in (extra or {}).items() if v is not None)]


def _literal(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(v)


def normalize_resume_argv(argv: list[str]) -> list[str]:
    """`--resume` with no value means the latest checkpoint of the run: give it the value "latest"."""
    out = []
    for i, a in enumerate(argv):
        out.append(a)
        if a == "--resume" and (i + 1 == len(argv) or argv[i + 1].startswith("-")):
            out.append("latest")
    return out


def one_run(argument: str | None, option: str | None) -> str | None:
    """RUN as the first argument (as `push` and `timelapse` take it) or as --run: one of them."""
    if argument is not None and option is not None and argument != option:
        raise SmallganError(f"RUN {argument} and --run {option} name two runs; pass one of them")
    return argument or option


def run_folder_of(source: Path) -> Path:
    """The run folder of --run DIR or --ckpt PATH: the nearest folder up holding metrics.jsonl or checkpoints/."""
    source = Path(source)
    start = source if source.is_dir() else source.parent
    for folder in (start, *start.parents):
        if (folder / "metrics.jsonl").is_file() or (folder / "checkpoints").is_dir():
            return folder
    return start


class PhaseProgress:
    """One rich progress bar per phase; ``phases(label)`` is the (done, total) callback the library takes."""

    def __init__(self, console: Any) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeRemainingColumn(), console=console, transient=True)

    def __enter__(self) -> PhaseProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def __call__(self, label: str) -> Any:
        task: list[Any] = []  # created on the first call: a cache hit never shows an empty bar

        def update(done: int, total: int) -> None:
            if not task:
                task.append(self.bar.add_task(label, total=total))
            self.bar.update(task[0], completed=done)

        return update
