"""One unit for lengths and intervals: train.max_kimg and train.*_every_kimg (thousands of real images through D),
the same spellings in steps as a convenience, config.json files saved when they were in steps, and the
iterations the loop runs by (smallgan/training/schedule.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from smallgan import runs
from smallgan.cli import app
from smallgan.config import ConfigError, load_config, read_config, recipe_names, with_overrides
from smallgan.training.loop import train
from smallgan.training.schedule import schedule
from smallgan.training.stats import read_metrics

FIXTURES = Path(__file__).parent / "fixtures"
# Written by smallgan before kimg (commit f878d02): load_config("tiny-cpu", OLD_RUN).to_json(), out_dir "OUT".
OLD_CONFIG = FIXTURES / "config-in-steps.json"
OLD_RUN = ["model.ch=4", "model.z_dim=32", "model.shared_dim=8", "train.batch=4", "train.micro_batch=4",
           "train.d_steps=1", "train.log_every=1", "train.sample_every=2", "train.ckpt_every=2", "train.sv_every=0",
           "sample.n=4", "train.max_steps=2", "train.name=old", "train.log_with=none", "model.n_classes=3"]

# Iterations (length, log, sample, ckpt, eval, sv) of every recipe as it said them in steps before kimg.
RECIPES = {
    "tiny-cpu": (2000, 10, 500, 500, 0, 50), "fastgan-tiny64": (200, 10, 100, 100, 0, 0),
    "finetune32": (1000, 10, 250, 250, 0, 50), "finetune64": (1000, 10, 250, 250, 0, 50),
    "anime64": (50000, 50, 1000, 2000, 5000, 100), "anime128": (100000, 50, 1000, 2000, 5000, 100),
    "deep-anime128": (100000, 50, 1000, 2000, 5000, 100), "fastgan-anime256": (50000, 100, 1000, 5000, 5000, 100),
    "fewshot64": (20000, 50, 250, 500, 1000, 100), "finetune128": (10000, 50, 500, 1000, 1000, 100),
    "imagenet128": (150000, 100, 2000, 2000, 2000, 100),
}


def _iterations(t) -> tuple[int, ...]:
    s = schedule(t, t.batch * t.d_steps)
    return s.total, s.log, s.sample, s.ckpt, s.eval, s.sv


def test_every_recipe_in_kimg_keeps_its_schedule_in_steps():
    assert set(RECIPES) == set(recipe_names())
    for name, expected in RECIPES.items():
        assert _iterations(load_config(name).train) == expected, name


def test_steps_convert_at_the_final_batch_and_the_later_spelling_wins():
    t = load_config("tiny-cpu", ["train.max_steps=30", "train.sample_every=5", "train.batch=8",
                                 "train.micro_batch=8"]).train   # the batch after the steps: 8 images a step
    assert (t.max_kimg, t.sample_every_kimg) == (0.24, 0.04) and _iterations(t)[:3] == (30, 20, 5)
    assert load_config("tiny-cpu", ["train.sample_every=5", "train.sample_every_kimg=1"]).train.sample_every_kimg == 1
    assert load_config("tiny-cpu", ["train.sample_every_kimg=1", "train.sample_every=5"]).train.sample_every_kimg \
        == 0.08
    # A recipe's kimg keep their images at another batch: tiny-cpu's 32 kimg are 1,000 steps of 32.
    assert _iterations(load_config("tiny-cpu", ["train.batch=32", "train.micro_batch=32"]).train)[:4] == \
        (1000, 5, 250, 250)
    with pytest.raises(ConfigError, match="train.sample_every must be >= 0"):
        load_config("tiny-cpu", ["train.sample_every=-1"])
    with pytest.raises(ConfigError, match=r"train.max_kimg \(the run's length\) must be > 0"):
        load_config("tiny-cpu", ["train.max_steps=0"])


def test_max_steps_and_max_kimg_from_one_place_stop_at_whichever_comes_first_a_later_place_replaces_them():
    for items in (["train.max_steps=50", "train.max_kimg=0.016"], ["train.max_kimg=0.016", "train.max_steps=50"],
                  ["train.max_steps=1", "train.max_kimg=5"]):
        assert load_config("tiny-cpu", items).train.max_kimg == 0.016, items
    cfg = load_config("tiny-cpu", ["train.max_steps=0", "train.max_kimg=0.016"])   # 0 steps: no limit in steps
    assert cfg.train.max_kimg == 0.016
    longer = with_overrides(cfg, ["train.max_steps=100000"])         # `--resume RUN --max-steps 100000`
    assert longer.train.max_kimg == 1600 and with_overrides(longer, ["train.max_kimg=2"]).train.max_kimg == 2


def test_a_config_saved_in_steps_reads_as_the_same_run_in_kimg():
    old = read_config(OLD_CONFIG)
    # tiny-cpu's rates and mode seeking changed after the fixture was written (#24); the rest is the same run.
    then = ["train.g_lr=2e-4", "train.d_lr=2e-4", "train.mode_seeking=0"]
    now = load_config("tiny-cpu", [*OLD_RUN, *then, "train.out_dir=OUT"])
    assert old == now and _iterations(old.train) == (2, 1, 2, 2, 0, 0)
    assert "max_steps" in json.loads(OLD_CONFIG.read_text())["train"]   # the fixture is the old format


@pytest.mark.slow
def test_a_run_whose_config_json_is_in_steps_continues(tmp_path):
    trainer = train(load_config("tiny-cpu", [*OLD_RUN, f"train.out_dir={tmp_path}"]))
    run, last = trainer.run_dir, runs.latest_checkpoint(trainer.run_dir)
    for path in (run / "config.json", last / "config.json"):   # as the smallgan before kimg wrote them
        shutil.copyfile(OLD_CONFIG, path)
    result = CliRunner().invoke(app, ["train", "--resume", str(run), "--max-steps", "4"])
    assert result.exit_code == 0, result.output
    assert "resumed from" in result.output and "train.max_kimg 0.008 -> 0.016" in result.output
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl") if "d_loss" in r] == [1, 2, 3, 4]
    assert runs.latest_checkpoint(run).name == "step-0000004" and read_config(run / "config.json").train.max_kimg \
        == 0.016
