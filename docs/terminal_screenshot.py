"""Make docs/watching-a-run.svg, the picture of docs/watching.md: a real short `tiny-cpu` run on the
built-in shapes, its terminal output recorded by rich (the console the training loop prints to) and saved as
SVG. Run from the repository root: `python docs/terminal_screenshot.py` (about a minute on a laptop CPU)."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from rich.console import Console
from rich.text import Text

from smallgan.config import load_config
from smallgan.training.loop import train

OUT = Path(__file__).parent / "watching-a-run.svg"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def final_screen(recorded: str) -> str:
    """What the terminal shows at the end. The recording holds every redraw of the live progress bar, each
    on its own line; a terminal draws each over the last, so only the last frame stays, below the log lines."""
    lines = [line for line in re.sub(r"\x1b\[\?25[lh]", "", recorded).splitlines()]
    bars = [i for i, line in enumerate(lines) if "━" in _ANSI.sub("", line)]
    return "\n".join(line for i, line in enumerate(lines) if i not in bars[:-1])


def main() -> None:
    console = Console(record=True, width=112, force_terminal=True, soft_wrap=True)
    with tempfile.TemporaryDirectory() as tmp:
        sets = ["train.log_every=10", "train.sample_every=30", "train.ckpt_every=30"]
        cfg = load_config("tiny-cpu", ["data.path=builtin:shapes", f"train.out_dir={tmp}", "train.name=shapes",
                                       "train.max_steps=60", *sets])
        console.print("$ smallgan train --recipe tiny-cpu --data builtin:shapes --name shapes --max-steps 60 "
                      + " ".join(f"--set {s}" for s in sets), highlight=False)
        train(cfg, console=console)
        # What the run folder holds for watching it, as `ls` would list it.
        run = Path(tmp) / "shapes"
        console.print(f"$ ls runs/{run.name} runs/{run.name}/samples", highlight=False)
        console.print("  ".join(sorted(p.name for p in run.iterdir())), highlight=False)
        console.print("  ".join(sorted(p.name for p in (run / "samples").iterdir())), highlight=False)
        recorded = console.export_text(styles=True).replace(tmp, "runs")
    clean = Console(record=True, width=118, force_terminal=True)
    clean.print(Text.from_ansi(final_screen(recorded)), highlight=False)
    clean.save_svg(str(OUT), title="smallgan train: one log line per interval above the progress bar")
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
