"""Typed configuration: recipes, overrides, one-line errors, validation."""

import subprocess
import sys

import pytest

from smallgan.config import Config, ConfigError, accumulation_steps, config_from_dict, load_config, recipe_names


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
        ("train.batch=30", ["train.batch=30", "micro_batch"]),
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


def test_accumulation_steps():
    cfg = load_config("imagenet128")
    assert accumulation_steps(cfg, 1) == 8
    assert accumulation_steps(cfg, 8) == 1
    with pytest.raises(ConfigError, match="not divisible"):
        accumulation_steps(cfg, 3)


def test_cli_error_is_one_line():
    r = subprocess.run([sys.executable, "-m", "smallgan", "info", "--recipe", "tiny-cpu", "--set", "model.zz=1"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "model.zz" in lines[0], r.stderr
