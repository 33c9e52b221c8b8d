"""A new user's path with their own folder: the everyday commands in one folder, exactly as the README shows them
(the model shrunk to CPU size with flags), no silent built-in data, a run that belongs to its data, and --init
without a recipe."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from smallgan.cli.run_config import plan_training
from smallgan.data import check_data_path, prepare_command
from smallgan.errors import SmallganError

# anime64 as shipped, at CPU size: the same data path, run folder and sampling as a user gets.
SMALL = ["--batch", "4", "--micro-batch", "4", "--sample-every", "0", "--eval-every", "0", "--log-with", "none",
         "--set", "model.ch=8", "--set", "model.shared_dim=8", "--set", "train.d_steps=1", "--set", "sample.n=4",
         "--set", "train.sv_every=0"]


def image_folder(root: Path, n: int, seed: int) -> Path:
    """A user's folder of photos: n small RGB images of random blobs (JPEG and PNG)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    for i in range(n):
        pixels = (rng.random((48, 40, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / f"img{i:03d}.{'jpg' if i % 2 else 'png'}")
    return root


def smallgan(cwd: Path, *args: str, module: str = "smallgan") -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def one_line(r: subprocess.CompletedProcess) -> str:
    lines = [line for line in r.stderr.splitlines() if line.strip() and not line.startswith("note:")]
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_a_missing_dataset_names_the_path_and_the_prepare_command_that_makes_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SmallganError) as err:
        check_data_path("faces-prepared", 64)
    assert str(err.value) == (f"dataset faces-prepared does not exist (looked for {tmp_path / 'faces-prepared'}); "
                              "make it with `smallgan prepare ./faces`, or pass --data DIR")
    assert prepare_command("data/pets-prepared", 128) == "smallgan prepare ./data/pets --resolution 128"
    assert prepare_command("/abs/faces-prepared", 64) == "smallgan prepare /abs/faces"
    assert prepare_command("mine", 64) == "smallgan prepare ./my-images --out mine"
    with pytest.raises(SmallganError, match="^no dataset: pass --data DIR"):
        check_data_path("", 32)
    for named in ("builtin:shapes", "hf:user/set", "imagefolder:x"):   # resolved (and refused) later, by name
        check_data_path(named, 32)


def test_only_recipes_for_the_demo_and_the_tests_name_built_in_data():
    from smallgan.config import Config, load_config, recipe_names

    assert Config().data.path == ""
    builtin = {name for name in recipe_names() if load_config(name).data.path.startswith("builtin:")}
    assert builtin == {"tiny-cpu", "fastgan-tiny64", "finetune32", "finetune64"}
    for name in ("anime64", "anime128", "deep-anime128", "fastgan-anime256", "fewshot64", "finetune128"):
        assert load_config(name).data.path == "faces-prepared", name


@pytest.mark.slow
def test_the_everyday_commands_in_one_folder_and_a_run_that_belongs_to_its_data(tmp_path):
    # No prepared data: one line, exit 2, nothing written.
    r = smallgan(tmp_path, "--recipe", "anime64", module="smallgan.train")
    assert r.returncode == 2 and "smallgan prepare ./faces" in one_line(r) and "faces-prepared" in one_line(r)
    assert sorted(p.name for p in tmp_path.iterdir()) == []

    image_folder(tmp_path / "faces", 12, seed=0)
    r = smallgan(tmp_path, "prepare", "./faces")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "faces-prepared" / "smallgan.json").is_file()
    r = smallgan(tmp_path, "--recipe", "anime64", "--max-steps", "2", *SMALL, module="smallgan.train")
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / "runs" / "anime64"
    assert "builtin" not in (run / "config.json").read_text()
    assert '"path": "faces-prepared"' in (run / "config.json").read_text()
    r = smallgan(tmp_path, "sample", "--trunc", "0.5", "--grid")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (run / "samples" / "sample-t0.5-s0.png").is_file()

    # Another data set with the same recipe: refused in one line naming both and the --name; the run untouched.
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    image_folder(tmp_path / "pets", 10, seed=1)
    assert smallgan(tmp_path, "prepare", "./pets").returncode == 0
    r = smallgan(tmp_path, "--recipe", "anime64", "--data", "pets-prepared", "--max-steps", "4", *SMALL,
                 module="smallgan.train")
    line = one_line(r)
    assert r.returncode == 2 and "faces-prepared (12 images" in line and "pets-prepared (10 images" in line, line
    assert "--name anime64-pets" in line
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before

    # The same images at another path: the run continues.
    shutil.copytree(tmp_path / "faces-prepared", tmp_path / "moved-faces")
    r = smallgan(tmp_path, "--recipe", "anime64", "--data", "moved-faces", "--max-steps", "3", *SMALL,
                 module="smallgan.train")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "continuing" in r.stderr and (run / "checkpoints" / "step-0000003").is_dir()


def test_init_without_a_recipe_takes_the_model_from_its_source(tmp_path):
    source = tmp_path / "pretrained"
    source_cfg = plan_training("finetune64", [f"train.out_dir={tmp_path}"], {"train.name": "pretrained"}, "auto",
                               False).cfg
    (source / "checkpoints" / "step-0000010").mkdir(parents=True)
    (source / "checkpoints" / "step-0000010" / "state.pt").write_bytes(b"")
    (source / "checkpoints" / "step-0000010" / "config.json").write_text(source_cfg.to_json())
    plan = plan_training(None, [f"train.out_dir={tmp_path}"], {"train.init": str(source),
                                                                "data.path": "builtin:digits"}, "auto", False)
    assert plan.cfg.model.resolution == 64 and plan.cfg.model.ch == 8 and plan.cfg.model.z_dim == 20
    assert plan.cfg.model.n_classes == 0 and plan.cfg.train.init == str(source)
    assert plan.cfg.train.name == "pretrained-finetune" and "the model of" in plan.notes[0]
    with_set = plan_training(None, [f"train.init={source}", "model.ch=16", f"train.out_dir={tmp_path}"], {}, "auto",
                             False)
    assert with_set.cfg.model.ch == 16    # an explicit difference stays, and load_pretrained refuses it by name


def test_everyday_flags_map_onto_the_config_and_are_grouped_in_help(tmp_path):
    import json

    from typer.testing import CliRunner

    from smallgan.cli import app

    result = CliRunner().invoke(app, [
        "train", "--recipe", "tiny-cpu", "--dry-run", "--out-dir", str(tmp_path), "--seed", "3", "--batch", "8",
        "--micro-batch", "4", "--log-every", "2", "--sample-every", "7", "--ckpt-every", "9", "--eval-every", "0",
        "--set", "train.seed=5"])      # the flag wins over a --set of the same key
    assert result.exit_code == 0, result.output
    train = json.loads(result.output[result.output.index("{"):])["train"]
    assert (train["out_dir"], train["seed"], train["batch"], train["micro_batch"], train["log_every_kimg"],
            train["sample_every_kimg"], train["ckpt_every_kimg"], train["eval_every_kimg"]) == \
        (str(tmp_path), 3, 8, 4, 0.016, 0.056, 0.072, 0)   # the flags' steps in kimg: 8 images a step
    help_text = CliRunner().invoke(app, ["train", "--help"], terminal_width=200).output
    panels = ["Data and run folder", "Length, batch and precision", "Progress grids, checkpoints and evaluation",
              "Everything else"]
    positions = [help_text.index(panel) for panel in panels]
    assert positions == sorted(positions)
    assert help_text.index("--micro-batch") < help_text.index("--sample-every") < help_text.index("--set")
    for command in ("sample", "eval"):   # the run first, as push and timelapse take it; --run stays
        with pytest.raises(SmallganError, match="name two runs"):
            result = CliRunner().invoke(app, [command, "runs/a", "--run", "runs/b"])
            raise result.exception
