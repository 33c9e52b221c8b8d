"""The model card ``smallgan push`` writes beside a generator: what it makes (a sample grid), how to use it, how it
was trained (recipe, steps, images seen), on what (a summary of the data, never the images), how good it is (every
evaluation with its step) and under which licence."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from smallgan.sampling.generator import TrainedGenerator

GRID_FILE = "sample.png"
GRID_SEED, GRID_IMAGES, GRID_TRUNC = 0, 16, 0.5


def sample_grid_png(G: TrainedGenerator) -> bytes:
    """16 samples at truncation 0.5 (seed 0) as a PNG grid: the card's picture."""
    from smallgan.sampling.images import grid_columns, make_grid, to_pil

    images = G.sample(GRID_IMAGES, trunc=GRID_TRUNC, seed=GRID_SEED)
    grid = make_grid(images, nrow=grid_columns(GRID_IMAGES))
    buffer = io.BytesIO()
    to_pil(grid[None])[0].save(buffer, format="PNG")
    return buffer.getvalue()


def _evaluations(run: Path) -> list[dict[str, Any]]:
    """The run's evaluations (training's eval_every and `smallgan eval`), oldest first."""
    from smallgan.training.stats import read_metrics

    log = run / "metrics.jsonl"
    return [r for r in read_metrics(log) if r.get("event") == "eval"] if log.is_file() else []


def _data_summary(G: TrainedGenerator, run: Path) -> str:
    """Images, classes and resolution of the training data, from the dataset's smallgan.json when it is here."""
    from data_tools.prepare import read_meta

    cfg = G.config
    meta = read_meta(Path(cfg.data.path)) if cfg.data.path and not cfg.data.path.startswith("builtin:") else None
    classes = ", ".join(G.class_names) if G.class_names else "unconditional (one class)"
    if meta is None:
        return f"`{cfg.data.path}` at {cfg.model.resolution} px; classes: {classes}"
    counts = meta.get("counts", {})
    return (f"`{cfg.data.path}`: {meta.get('num_images')} images at {meta.get('resolution')} px prepared by "
            f"`smallgan prepare` ({counts.get('found', '?')} files found, {counts.get('skipped', 0)} skipped, "
            f"{counts.get('duplicates', 0)} duplicates); horizontal flips {'on' if meta.get('flip') else 'off'}; "
            f"classes: {classes}")


def model_card(run: Path, G: TrainedGenerator, repo: str, *, license: str, files: list[str]) -> str:
    """The README.md of a pushed run (YAML metadata for the Hub, then Markdown)."""
    cfg, t = G.config, G.config.train
    evaluations = _evaluations(run)
    rows = [f"| {r.get('step', '?')} | " + " | ".join(f"{r[k]:.4g}" if isinstance(r.get(k), (int, float)) else "-"
                                                   for k in ("kid", "fid", "is")) + " |" for r in evaluations]
    best = json.loads((run / "best" / "best.json").read_text()) if (run / "best" / "best.json").is_file() else None
    task = "unconditional-image-generation" if G.n_classes <= 1 else "image-generation"   # the Hub's task names
    header = ["---", f"license: {license or 'other'}", "library_name: smallgan", f"pipeline_tag: {task}",
              "tags:", "- gan", f"- {cfg.model.arch}", "- smallgan", "---", ""]
    lines = [
        f"# {repo.split('/')[-1]}", "",
        f"A {cfg.model.arch} generator ({cfg.model.resolution} px) trained with smallgan"
        + (f", recipe `{cfg.recipe}`" if cfg.recipe else "") + ".", "",
        f"![{GRID_IMAGES} samples, truncation {GRID_TRUNC}, seed {GRID_SEED}]({GRID_FILE})", "",
        "## Use it", "", "```bash", "pip install smallgan",
        f"smallgan sample hf:{repo} --trunc 0.5 --grid", f"smallgan train --init hf:{repo} --data ./my-images-prepared"
        "   # fine-tune it", "```", "", "```python", "from smallgan import load_generator",
        f'G = load_generator("hf:{repo}")', "images = G.sample(16, trunc=0.5, seed=0)   # uint8 (16, 3, H, W)", "```",
        "", "## Training", "",
        f"- steps: {G.step if G.step is not None else 'unknown'} (batch {t.batch}, {t.d_steps} D step(s) per G step; "
        f"{(G.step or 0) * t.batch * t.d_steps / 1000:g} kimg of real images through D)",
        f"- data: {_data_summary(G, run)}",
        f"- precision {t.precision}, DiffAugment `{t.diffaug or 'off'}`, adaptive augmentation "
        f"{'target ' + str(t.ada_target) if t.ada_target else 'off'}, seed {t.seed}", "",
        "## Evaluation", "",
    ]
    if rows:
        lines += ["| step | KID | FID | IS |", "|---|---|---|---|", *rows, ""]
        if best:
            lines += [f"Best {best['metric'].upper()} {best['value']:.4g} at step {best['step']}: `best/`.", ""]
    else:
        lines += ["Not evaluated (train with `--eval-every N`, or run `smallgan eval RUN`).", ""]
    lines += ["## Files", "", *(f"- `{f}`" for f in files if f != "README.md"), "",
              f"Licence: {license or 'not given (ask the author)'}. The full training configuration is in "
              "`config.json`.", ""]
    return "\n".join(header + lines)
