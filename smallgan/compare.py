"""Runs side by side (`smallgan compare RUN_A RUN_B ...`), e.g. BigGAN against the FastGAN baseline.

For each run folder: its model, G and D parameters, steps, images seen, wall time, mean throughput and the best
FID / KID with the step that reached it (from the evaluations logged in metrics.jsonl, else best/best.json), as
a table on the terminal and in ``<out>.md``; and one PNG with every run's sample grid side by side, sampled like
``smallgan sample --grid`` from the same seed (the same z wherever two runs share z_dim), so differences come
from the models alone.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


def cells(s: RunSummary) -> list[str]:
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
    lines += ["| " + " | ".join(cells(s)) + " |" for s in summaries]
    extractors = sorted({s.extractor for s in summaries if s.extractor})
    if extractors:
        lines += ["", f"FID / KID computed with: {', '.join(extractors)}."]
    return "\n".join(lines) + "\n"


def unique_names(runs: list[Path]) -> list[str]:
    names = [r.name for r in runs]
    return [str(r) if names.count(r.name) > 1 else r.name for r in runs]


@dataclass
class CompareRequest:
    runs: list[Path]                 # two or more run folders
    out: Path                        # the side-by-side PNG; the table goes beside it as .md
    n: int = 16                      # images per run in the grid
    seed: int = 0                    # seed of the latents, the same for every run
    trunc: float = 0.0               # truncation threshold for z (0 = none)
    tile: int = 0                    # pixels per image; 0 = the largest run resolution, at most 256
    best: bool = False               # sample each run's best/ generator where it has one
    device: str = "cpu"


@dataclass
class Comparison:
    summaries: list[RunSummary]
    picture: Path
    table: Path


def _load(run: Path, best: bool, device: str) -> tuple[TrainedGenerator | None, bool]:
    """A run's generator (its best/ one when asked and present); None for a run that has not saved one yet."""
    from smallgan.sampling.export import GENERATOR_FILE, load_generator

    if not run.is_dir():
        raise SmallganError(f"{run} is not a folder; pass run folders like runs/NAME")
    from_best = best and (run / "best" / GENERATOR_FILE).is_file()
    try:
        return load_generator(run / "best" if from_best else run, device=device), from_best
    except SmallganError:
        if (run / GENERATOR_FILE).exists():
            raise
        return None, from_best


def compare_runs(req: CompareRequest) -> Comparison:
    """Summarise every run, sample each one's grid from the same seed, write the PNG and the Markdown table."""
    from smallgan.io import atomic_write, atomic_write_text
    from smallgan.sampling import side_by_side

    if len(req.runs) < 2:
        raise SmallganError("compare needs at least two run folders, e.g. smallgan compare runs/a runs/b")
    if req.n < 1:
        raise SmallganError(f"--n must be at least 1, got {req.n}")
    loaded = [_load(run, req.best, req.device) for run in req.runs]
    summaries = [summarise_run(run, G, n_classes=G.n_classes if G is not None else 1)
                 for run, (G, _) in zip(req.runs, loaded)]
    for s, name in zip(summaries, unique_names(req.runs)):
        s.name = name
    sizes = [G.resolution for G, _ in loaded if G is not None]
    if not sizes:
        raise SmallganError("none of these runs has a generator.safetensors yet; train them for a few steps")
    px = req.tile or min(max(sizes), 256)
    shown = [(s, G, from_best) for s, (G, from_best) in zip(summaries, loaded) if G is not None]
    grids = [sample_grid(G, req.n, req.seed, px, req.trunc) for _, G, _ in shown]
    titles = [f"{s.name}: {s.model}, {'best' if from_best else f'step {s.steps}'}" for s, _, from_best in shown]
    picture = side_by_side(grids, titles, gap=GAP_PX)
    table = req.out.with_suffix(".md")
    atomic_write(req.out, lambda p: picture.save(p, format="PNG"))
    atomic_write_text(table, markdown_table(summaries))
    return Comparison(summaries, req.out, table)
