"""Every recipe in recipes/ loads, validates and builds its networks (on the meta device: shapes only, nothing
allocated, so even ImageNet-128 builds at once)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from smallgan.config import load_config, read_config, recipe_names
from smallgan.registry import build_discriminator, build_generator, count_params

RECIPES = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "recipes").glob("*.toml"))


def test_every_recipe_file_ships_in_the_package():
    assert RECIPES and recipe_names() == RECIPES


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_validates_and_builds_on_the_meta_device(name: str, tmp_path) -> None:
    cfg = load_config(name)   # load_config validates: a recipe the config refuses fails here
    assert cfg.recipe == name
    n_classes = cfg.model.n_classes or 10   # 0: as many as the dataset has
    with torch.device("meta"):
        G = build_generator(cfg.model, n_classes=n_classes)
        D = build_discriminator(cfg.model, n_classes=n_classes)
    assert all(p.is_meta for p in [*G.parameters(), *D.parameters()])
    assert count_params(G) > 0 and count_params(D) > 0
    assert G.resolution == cfg.model.resolution
    saved = tmp_path / "config.json"   # what a run folder keeps reads back as the same config
    saved.write_text(cfg.to_json())
    assert read_config(saved).to_json() == cfg.to_json()
