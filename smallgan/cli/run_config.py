"""Which config `smallgan train` runs, and whether it continues a run: rerunning the same command (or one with
fewer options) continues the run folder's latest checkpoint with the run's saved config as the base. The
decisions are :mod:`smallgan.runs`'; this module turns the command line into them and prints the notes."""

from __future__ import annotations

import os
from dataclasses import dataclass

from smallgan import runs
from smallgan.cli.common import config_from_options, override_items
from smallgan.config import Config, load_config, take_notes
from smallgan.errors import SmallganError

DEFAULT_RECIPE = "tiny-cpu"   # without --recipe a new run trains the demo's recipe, with a note saying so


@dataclass
class TrainPlan:
    cfg: Config
    resume: str | None      # the checkpoint folder to continue, or None (a new run)
    notes: list[str]


def plan_training(recipe: str | None, sets: list[str] | None, options: dict[str, object], resume: str,
                  overwrite: bool) -> TrainPlan:
    """`resume`: auto (continue the latest checkpoint of the run folder when there is one), latest (the same),
    or a run folder / checkpoint folder. A continued run starts from its checkpoint's config; --set and the
    typed options apply on top: those that change the model are refused by name, the others are noted."""
    explicit = resume not in ("auto", "latest")
    if explicit and overwrite:
        raise SmallganError(f"--overwrite starts a run over and --resume {resume} continues one; pass one of them")
    checkpoint = runs.checkpoint_to_resume(resume) if explicit else None
    notes: list[str] = []
    fresh: Config | None = None
    init = options.get("train.init") or _set_value(sets, "train.init")
    if checkpoint is None:
        if recipe is None and init:   # the model is the source's: asking for it again would be busywork
            from smallgan.training.transfer import config_for_init

            fresh = config_for_init(str(init), override_items(sets, options))
        else:
            fresh = config_from_options(recipe or DEFAULT_RECIPE, sets, options)
        checkpoint = None if overwrite else runs.latest_checkpoint(runs.run_dir_for(fresh))
    if checkpoint is None:
        if recipe is None and init:
            notes.append(f"no --recipe given: the model of {init} (the class count from the data), the other "
                         "settings smallgan's defaults (smallgan/config.py)")
        elif recipe is None:
            notes.append(f"no --recipe given: training {DEFAULT_RECIPE}, the 32 px recipe of the demo and the "
                         "tests; `smallgan recipes` lists the others")
        return TrainPlan(fresh, None, [*take_notes(fresh), *notes])

    items = override_items(sets, {**options, "train.name": None})
    wanted = None if recipe is None else (recipe, load_config(recipe, [i for i in items if i.startswith("model.")]))
    cfg, note = runs.continued_config(checkpoint, items, wanted)
    return TrainPlan(cfg, str(checkpoint), [*take_notes(cfg), note])


def _set_value(sets: list[str] | None, key: str) -> str | None:
    """The value a --set item gives `key` (the last one), else None."""
    values = [item.partition("=")[2].strip().strip('"') for item in sets or [] if item.partition("=")[0].strip() == key]
    return values[-1] if values else None


def print_notes(plan: TrainPlan) -> None:
    """The plan's notes on stderr, once per launch: the command runs in every process of a launch, before any
    of them knows the others (torchrun and accelerate launch set RANK)."""
    import sys

    if os.environ.get("RANK", "0") == "0":
        for note in plan.notes:
            print(f"note: {note}", file=sys.stderr)
