"""`smallgan compare RUN_A RUN_B ...`: runs side by side, e.g. BigGAN against the FastGAN baseline.

For each run folder: its model, G and D parameters, steps, images seen, wall time, mean throughput and the best
FID / KID with the step that reached it (from the evaluations logged in metrics.jsonl, else best/best.json), as
a table on the terminal and in ``<out>.md``; and one PNG with every run's sample grid side by side, sampled like
``smallgan sample --grid`` from the same seed (the same z wherever two runs share z_dim), so differences come
from the models alone.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from smallgan.cli.app import app
from smallgan.errors import SmallganError

if TYPE_CHECKING:
    from torch import Tensor

    from smallgan.sampling.generator import TrainedGenerator

STANDARD_EXTRACTOR = "inception"   # prefix of the extractor name whose numbers are comparable to papers
GAP_PX = 12                        # space between grids


@dataclass
class RunSummary:
    name: str
    path: str
    model: str
    g_params: int | None = None
    d_params: int | None = None
    steps: int | None = None
    kimg: float | None = None
    seconds: float | None = None
    img_s: float | None = None
    extractor: str | None = None                  # which network the FID / KID below come from
    best: dict[str, list[float]] = field(default_factory=dict)   # metric -> [value, step]


def _model_label(cfg: Any) -> str:
    m = cfg.model
    # Ablations switched off (FastGAN's Table 3) are part of what is compared.
    off = [name for name, on in (("SLE", m.sle), ("decoder", m.decoder)) if not on]
    return f"{m.arch} {m.resolution}px" + "".join(f" no-{o}" for o in off)


def _read_config(run: Path) -> Any:
    from smallgan.config import read_config

    path = run / "config.json"
    if not path.is_file():
        raise SmallganError(f"{run} is not a run folder (no config.json); pass folders like runs/NAME")
    return read_config(path)


def _best_metrics(records: list[dict[str, Any]], run: Path) -> tuple[str | None, dict[str, list[float]]]:
    """(extractor, {metric: [best value, step]}) over the logged evaluations (lower is better for FID and KID)."""
    from smallgan.metrics.names import direction

    evals = [r for r in records if r.get("event") == "eval" and "step" in r]
    if evals:
        names = sorted({str(r.get("extractor", "")) for r in evals})
        extractor = next((n for n in names if n.startswith(STANDARD_EXTRACTOR)), names[0])
        evals = [r for r in evals if str(r.get("extractor", "")) == extractor]
        best = {}
        for metric in ("fid", "kid"):
            scored = [r for r in evals if isinstance(r.get(metric), (int, float)) and math.isfinite(r[metric])]
            if scored:
                top = max(scored, key=lambda r: direction(metric) * r[metric])
                best[metric] = [float(top[metric]), int(top["step"])]
        return extractor, best
    best_file = run / "best" / "best.json"
    if best_file.is_file():
        try:
            info = json.loads(best_file.read_text())
            return None, {m: [float(info[m]), int(info["step"])] for m in ("fid", "kid") if m in info}
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise SmallganError(f"{best_file} is damaged; delete it or re-run the evaluation") from None
    return None, {}


def summarise_run(run: Path, G: TrainedGenerator | None, n_classes: int) -> RunSummary:
    """What a run folder reports; ``G`` is its loaded generator (None when it has none yet)."""
    import torch

    from smallgan.registry import build_discriminator, count_params
    from smallgan.training.stats import read_metrics

    cfg = _read_config(run)
    summary = RunSummary(name=run.name, path=str(run), model=_model_label(cfg))
    if G is not None:
        summary.g_params = count_params(G.module)
    with torch.device("meta"):  # parameter count only: nothing is allocated
        D = build_discriminator(cfg.model, n_classes=n_classes)
    summary.d_params = count_params(D)
    metrics_file = run / "metrics.jsonl"
    records = read_metrics(metrics_file) if metrics_file.is_file() else []
    train_records = [r for r in records if "event" not in r and "step" in r]
    if train_records:
        last = max(train_records, key=lambda r: r["step"])
        summary.steps, summary.kimg, summary.seconds = int(last["step"]), last.get("kimg"), last.get("seconds")
        rates = [r["img_s"] for r in train_records if isinstance(r.get("img_s"), (int, float))]
        summary.img_s = sum(rates) / len(rates) if rates else None
    summary.extractor, summary.best = _best_metrics(records, run)
    return summary


def sample_grid(G: TrainedGenerator, n: int, seed: int, tile: int, trunc: float = 0.0) -> Tensor:
    """A (3, H, W) uint8 grid of n images, each resized to tile x tile: z from `seed` (truncated at `trunc`
    when > 0) and the classes in turn, as ``G.sample(n, trunc, seed=seed)``."""
    import torch
    import torch.nn.functional as F

    from smallgan.sampling import make_grid

    torch.manual_seed(seed)   # per-pixel noise (FastGAN's noise injection)
    x = G.sample(n, trunc, seed=seed, batch_size=16).float()
    x = F.interpolate(x, size=(tile, tile), mode="area" if x.shape[-1] > tile else "nearest")
    return make_grid(x.round().clamp(0, 255).to(torch.uint8), padding=2, pad_value=255)


COLUMNS = ("run", "model", "G params", "D params", "steps", "kimg", "wall s", "img/s", "best FID (step)",
           "best KID (step)")


def _cells(s: RunSummary) -> list[str]:
    def num(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    def params(v: int | None) -> str:
        return "-" if v is None else f"{v / 1e6:.2f}M" if v >= 1e6 else f"{v / 1e3:.1f}k"

    def best(metric: str) -> str:
        if metric not in s.best:
            return "-"
        value, step = s.best[metric]
        return f"{value:.4g} ({int(step)})"

    return [s.name, s.model, params(s.g_params), params(s.d_params), num(s.steps, "d"), num(s.kimg, ".3g"),
            num(s.seconds, ".0f"), num(s.img_s, ".1f"), best("fid"), best("kid")]


def markdown_table(summaries: list[RunSummary]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cells(s)) + " |" for s in summaries]
    extractors = sorted({s.extractor for s in summaries if s.extractor})
    if extractors:
        lines += ["", f"FID / KID computed with: {', '.join(extractors)}."]
    return "\n".join(lines) + "\n"


def _unique_names(runs: list[Path]) -> list[str]:
    names = [r.name for r in runs]
    return [str(r) if names.count(r.name) > 1 else r.name for r in runs]


@app.command()
def compare(
    runs: list[Path] = typer.Argument(..., help="Two or more run folders (runs/NAME)."),
    out: Path = typer.Option(Path("compare.png"), "--out", "-o", help="The side-by-side PNG; the table goes "
                             "beside it as .md."),
    n: int = typer.Option(16, "--n", help="Images per run in the grid."),
    seed: int = typer.Option(0, "--seed", help="Seed of the latents (the same for every run)."),
    trunc: float = typer.Option(0.0, "--trunc", help="Truncation threshold for z, e.g. 0.5 (0 = none)."),
    tile: int = typer.Option(0, "--tile", help="Pixels per image in the PNG; 0 = the largest run resolution, "
                             "at most 256."),
    best: bool = typer.Option(False, "--best", help="Sample each run's best generator (best/) where it has one."),
    device: str = typer.Option("cpu", "--device", help="Where to run the generators (cpu, cuda, ...)."),
    as_json: bool = typer.Option(False, "--json", help="Print the table as JSON instead."),
) -> None:
    """Compare runs: model, parameters, steps, images seen, time, img/s, best FID/KID; samples side by side."""
    from rich.console import Console
    from rich.table import Table

    from smallgan.io import atomic_write, atomic_write_text
    from smallgan.sampling import side_by_side
    from smallgan.sampling.export import GENERATOR_FILE, load_generator

    if len(runs) < 2:
        raise SmallganError("compare needs at least two run folders, e.g. smallgan compare runs/a runs/b")
    if n < 1:
        raise SmallganError(f"--n must be at least 1, got {n}")
    summaries, generators, sizes, labels = [], [], [], []
    for run in runs:
        if not run.is_dir():
            raise SmallganError(f"{run} is not a folder; pass run folders like runs/NAME")
        from_best = best and (run / "best" / GENERATOR_FILE).is_file()
        try:
            G = load_generator(run / "best" if from_best else run, device=device)
            sizes.append(G.resolution)
        except SmallganError:
            if (run / GENERATOR_FILE).exists():
                raise
            G = None   # a run that has not saved a generator yet: table only
        generators.append(G)
        summaries.append(summarise_run(run, G, n_classes=G.n_classes if G is not None else 1))
        labels.append("best" if from_best else f"step {summaries[-1].steps}")
    for s, name in zip(summaries, _unique_names(runs)):
        s.name = name
    if not sizes:
        raise SmallganError("none of these runs has a generator.safetensors yet; train them for a few steps")

    px = tile or min(max(sizes), 256)
    grids, titles = [], []
    for s, G, label in zip(summaries, generators, labels):
        if G is not None:
            grids.append(sample_grid(G, n, seed, px, trunc))
            titles.append(f"{s.name}: {s.model}, {label}")
    picture = side_by_side(grids, titles, gap=GAP_PX)
    table_path = out.with_suffix(".md")
    atomic_write(out, lambda p: picture.save(p, format="PNG"))
    atomic_write_text(table_path, markdown_table(summaries))

    if as_json:
        print(json.dumps([asdict(s) for s in summaries], indent=2))
        return
    table = Table(title="smallgan compare")
    for c in COLUMNS:
        table.add_column(c, justify="left" if c in ("run", "model") else "right")
    for s in summaries:
        table.add_row(*_cells(s))
    console = Console()
    console.print(table)
    extractors = sorted({s.extractor for s in summaries if s.extractor})
    if extractors:
        console.print(f"FID / KID computed with: {', '.join(extractors)}", highlight=False)
    console.print(f"samples: {out}  table: {table_path}", highlight=False)
