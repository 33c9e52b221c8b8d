"""Typed configuration: recipes, overrides, one-line errors, validation."""

import subprocess
import sys

import pytest

from smallgan.config import Config, ConfigError, config_from_dict, load_config, recipe_names
from smallgan.training.batch_plan import BatchPlan, plan_batches


def test_defaults_then_recipe_then_overrides():
    base = Config()
    cfg = load_config("tiny-cpu", ["model.ch=8", "train.diffaug=color,translation", "model.g_attention=[8, 16]"])
    assert cfg.recipe == "tiny-cpu"
    assert cfg.model.ch == 8                          # override beats recipe
    assert cfg.model.resolution == 32                 # from the recipe, not the default
    assert cfg.train.adam_eps == base.train.adam_eps  # untouched default
    assert cfg.train.diffaug == "color,translation"   # bare words are strings
    assert cfg.model.g_attention == [8, 16]


def test_every_builtin_recipe_loads_and_validates():
    names = recipe_names()
    assert {"tiny-cpu", "anime64", "anime128", "imagenet128", "deep-anime128"} <= set(names)
    for name in names:
        cfg = load_config(name)
        assert cfg.recipe == name


def test_recipe_file_path(tmp_path):
    p = tmp_path / "mine.toml"
    p.write_text('[model]\nresolution = 64\nch = 8\n[train]\nbatch = 16\nmicro_batch = 8\n')
    cfg = load_config(str(p))
    assert (cfg.model.resolution, cfg.model.ch, cfg.recipe) == (64, 8, "mine")


@pytest.mark.parametrize(
    "override, words",
    [
        ("model.chh=3", ["model.chh", "valid keys"]),
        ("modle.ch=3", ["modle", "sections"]),
        ("model.ch=wide", ["model.ch", "int"]),
        ("train.g_lr=fast", ["train.g_lr", "float"]),
        ("train.precision=fp8", ["train.precision"]),
        ("model.resolution=48", ["model.resolution=48", "32, 64"]),
        ("train.batch=0", ["train.batch", "> 0"]),     # any batch >= the processes is planned (plan_batches)
        ("data.flip=sometimes", ["data.flip", "dataset"]),
        ("nodot=1", ["section.key=value"]),
    ],
)
def test_bad_keys_and_values_name_the_key(override, words):
    with pytest.raises(ConfigError) as e:
        load_config("tiny-cpu", [override])
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg


def test_unknown_recipe_lists_builtins(tmp_path):
    with pytest.raises(ConfigError, match="tiny-cpu"):
        load_config("no-such-recipe")
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\nch = 'x'\n")
    with pytest.raises(ConfigError, match="model.ch"):
        load_config(str(bad))
    bad.write_text("[model\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(str(bad))


def test_round_trip_through_dict():
    cfg = load_config("anime64", ["model.ch=32"])
    again = config_from_dict(cfg.to_dict())
    assert again == cfg


def test_batch_plan_examples():
    cfg = load_config("imagenet128")                       # batch 2048, micro-batch 256
    assert plan_batches(cfg, 1) == BatchPlan(batch=2048, micro_batch=256, accumulation=8)
    assert plan_batches(cfg, 8) == BatchPlan(batch=2048, micro_batch=256, accumulation=1)
    assert plan_batches(cfg, 3) == BatchPlan(batch=2046, micro_batch=62, accumulation=11)   # 682 = 62 x 11
    assert plan_batches(load_config("anime64"), 8) == BatchPlan(batch=256, micro_batch=32, accumulation=1)
    assert plan_batches(load_config("tiny-cpu"), 2) == BatchPlan(batch=16, micro_batch=8, accumulation=1)
    assert plan_batches(load_config("tiny-cpu"), 1).describe(load_config("tiny-cpu"), 1) is None
    assert "micro-batch 62" in plan_batches(cfg, 3).describe(cfg, 3)
    with pytest.raises(ConfigError, match="smaller than the 3 processes"):
        plan_batches(load_config("tiny-cpu", ["train.batch=2"]), 3)


@pytest.mark.parametrize("processes", [1, 2, 3, 8])
@pytest.mark.parametrize("recipe", recipe_names())
def test_every_recipe_plans_its_batch_on_any_number_of_processes(recipe, processes):
    t = load_config(recipe).train
    if t.batch < processes:                                 # fastgan-tiny64 (batch 4) on 8: impossible, refused
        with pytest.raises(ConfigError, match="smaller than"):
            plan_batches(load_config(recipe), processes)
        return
    plan = plan_batches(load_config(recipe), processes)
    assert plan.micro_batch * plan.accumulation * processes == plan.batch
    assert 1 <= plan.micro_batch <= t.micro_batch
    assert t.batch - processes < plan.batch <= t.batch and (plan.batch == t.batch) == (t.batch % processes == 0)
    share = plan.batch // processes   # the largest micro-batch that fits: no larger one divides the share
    assert not any(share % m == 0 for m in range(plan.micro_batch + 1, min(t.micro_batch, share) + 1))


def test_cli_error_is_one_line():
    r = subprocess.run([sys.executable, "-m", "smallgan", "info", "--recipe", "tiny-cpu", "--set", "model.zz=1"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "model.zz" in lines[0], r.stderr
