"""Which config `smallgan train` runs, and whether it continues a run: rerunning the same command (or one with
fewer options) continues the run folder's latest checkpoint with the run's saved config as the base."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from smallgan.cli.common import config_from_options, override_items
from smallgan.config import SECTIONS, Config, load_config, read_config, with_overrides
from smallgan.errors import SmallganError

DEFAULT_RECIPE = "tiny-cpu"   # without --recipe a new run trains the demo's recipe, with a note saying so


@dataclass
class TrainPlan:
    cfg: Config
    resume: str | None      # the checkpoint folder to continue, or None (a new run)
    notes: list[str]


def _differences(old: Config, new: Config) -> list[tuple[str, object, object]]:
    """(section.key, old, new) for every setting that differs."""
    out = []
    for section in SECTIONS:
        a, b = getattr(old, section).__dict__, getattr(new, section).__dict__
        out += [(f"{section}.{k}", a[k], b.get(k)) for k in a if not k.startswith("_") and a[k] != b.get(k)]
    return out


def plan_training(recipe: str | None, sets: list[str] | None, options: dict[str, object], resume: str,
                  overwrite: bool) -> TrainPlan:
    """`resume`: auto (continue the latest checkpoint of the run folder when there is one), latest (the same),
    or a run folder / checkpoint folder. A continued run starts from its checkpoint's config; --set and the
    typed options apply on top: those that change the model are refused by name, the others are noted."""
    from smallgan.checkpoint import latest_checkpoint
    from smallgan.training.loop import run_dir_for
    from smallgan.training.state import checkpoint_to_resume

    explicit = resume not in ("auto", "latest")
    if explicit and overwrite:
        raise SmallganError(f"--overwrite starts a run over and --resume {resume} continues one; pass one of them")
    checkpoint = checkpoint_to_resume(resume) if explicit else None
    notes: list[str] = []
    fresh: Config | None = None
    init = options.get("train.init") or _set_value(sets, "train.init")
    if checkpoint is None:
        if recipe is None and init:   # the model is the source's: asking for it again would be busywork
            from smallgan.training.transfer import config_for_init

            fresh = config_for_init(str(init), override_items(sets, options))
        else:
            fresh = config_from_options(recipe or DEFAULT_RECIPE, sets, options)
        checkpoint = None if overwrite else latest_checkpoint(run_dir_for(fresh))
    if checkpoint is None:
        if recipe is None and init:
            notes.append(f"no --recipe given: the model of {init} (the class count from the data), the other "
                         "settings smallgan's defaults (smallgan/config.py)")
        elif recipe is None:
            notes.append(f"no --recipe given: training {DEFAULT_RECIPE}, the 32 px recipe of the demo and the "
                         "tests; `smallgan recipes` lists the others")
        return TrainPlan(fresh, None, notes)

    run = checkpoint.parent.parent
    saved = read_config(checkpoint / "config.json")
    items = override_items(sets, {**options, "train.name": None})
    where = override_items(None, {"train.out_dir": str(run.parent), "train.name": run.name})  # moved folders too
    cfg = with_overrides(saved, items + where)
    if recipe is not None:   # the recipe the run was started with, or one building the same model
        wanted = load_config(recipe, [i for i in items if i.startswith("model.")])
        if wanted.model.n_classes == 0:
            wanted.model.n_classes = saved.model.n_classes   # 0 = from the dataset: what the run resolved
        _refuse_model_change(run, saved, wanted, f"--recipe {recipe}")
    _refuse_model_change(run, saved, cfg, "the --set options")
    changed = [f"{k} {a} -> {b}" for k, a, b in _differences(saved, cfg) if k not in ("train.out_dir", "train.name")]
    notes.append(f"continuing {run} from {checkpoint.name} with its saved config"
                 + (f"; changed: {', '.join(changed)}" if changed else ""))
    return TrainPlan(cfg, str(checkpoint), notes)


def _set_value(sets: list[str] | None, key: str) -> str | None:
    """The value a --set item gives `key` (the last one), else None."""
    values = [item.partition("=")[2].strip().strip('"') for item in sets or [] if item.partition("=")[0].strip() == key]
    return values[-1] if values else None


def _refuse_model_change(run: Path, saved: Config, cfg: Config, source: str) -> None:
    changed = [(k, a, b) for k, a, b in _differences(saved, cfg) if k.startswith("model.")]
    if changed:
        shown = ", ".join(f"{k}={b} (the run has {a})" for k, a, b in changed)
        raise SmallganError(f"{source} change the model of {run}: {shown}; a model cannot change on resume; "
                            f"start a new run with --name NEW, or replace this one with --overwrite")


def print_notes(plan: TrainPlan) -> None:
    """The plan's notes on stderr, once per launch (rank 0)."""
    import sys

    if os.environ.get("RANK", "0") == "0":
        for note in plan.notes:
            print(f"note: {note}", file=sys.stderr)
