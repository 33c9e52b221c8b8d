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
    # 682.7 each: rounded to 684 = 228 x 3 (not 62 x 11, nor 1 x 409 on 5 processes: BatchNorm on one image)
    assert plan_batches(cfg, 3) == BatchPlan(batch=2052, micro_batch=228, accumulation=3)
    assert plan_batches(cfg, 5) == BatchPlan(batch=2050, micro_batch=205, accumulation=2)
    assert plan_batches(load_config("anime64"), 8) == BatchPlan(batch=256, micro_batch=32, accumulation=1)
    assert plan_batches(load_config("anime64"), 3) == BatchPlan(batch=258, micro_batch=43, accumulation=2)
    assert plan_batches(load_config("tiny-cpu"), 2) == BatchPlan(batch=16, micro_batch=8, accumulation=1)
    assert plan_batches(load_config("tiny-cpu"), 1).describe(load_config("tiny-cpu"), 1) is None
    assert "micro-batch 228" in plan_batches(cfg, 3).describe(cfg, 3)
    assert "rounded" in plan_batches(cfg, 3).describe(cfg, 3) and "+4" in plan_batches(cfg, 3).rounding(cfg)
    with pytest.raises(ConfigError, match="fewer than the 8 a micro-batch needs"):
        plan_batches(load_config("tiny-cpu"), 3)       # 5.3 images each


@pytest.mark.parametrize("processes", range(1, 17))
@pytest.mark.parametrize("recipe", recipe_names())
def test_every_recipe_plans_whole_micro_batches_on_1_to_16_processes(recipe, processes):
    cfg = load_config(recipe)
    t, floor = cfg.train, min(cfg.train.micro_batch, 8)
    if t.batch < floor * processes:              # e.g. tiny-cpu's 16 over 3: refused, with what to change
        with pytest.raises(ConfigError, match=f"train.batch to at least {floor * processes}"):
            plan_batches(cfg, processes)
        return
    plan = plan_batches(cfg, processes)
    assert plan.micro_batch * plan.accumulation * processes == plan.batch
    assert floor <= plan.micro_batch <= t.micro_batch        # never below min(micro_batch, 8)
    # Within 2% of train.batch; where no whole plan comes that close (finetune128's 64 over 6: 60 or 66), the
    # closest there is.
    closest = min(abs(m * a * processes - t.batch) for m in range(floor, t.micro_batch + 1)
                  for a in range(1, t.batch // (floor * processes) + 2))
    assert abs(plan.batch - t.batch) <= max(0.02 * t.batch, closest)


def test_cli_error_is_one_line():
    r = subprocess.run([sys.executable, "-m", "smallgan", "info", "--recipe", "tiny-cpu", "--set", "model.zz=1"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "model.zz" in lines[0], r.stderr
