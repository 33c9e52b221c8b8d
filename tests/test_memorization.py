"""The memorisation check: a generator that copies training images is flagged, one of new images is not."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from smallgan.metrics.evaluate import tensor_sample_fn
from smallgan.metrics.features import PixelExtractor, build_extractor
from smallgan.metrics.memorization import memorization_check
from smallgan.training.loop import train
from smallgan.training.stats import read_metrics
from image_sets import add_noise, smooth_images, write_folder

TRAIN, HELD_OUT = smooth_images(120, seed=21), smooth_images(60, seed=22)   # same distribution, other images


def copier(images: torch.Tensor):
    """A "generator" whose image i is training image i (wrapping), with faint noise: a copy in all but bytes."""
    def sample(batch: int, start: int) -> torch.Tensor:
        return add_noise(images[torch.arange(start, start + batch) % len(images)], sigma=1.0, seed=start)

    return sample


def test_a_copying_generator_is_flagged_and_held_out_reals_are_not(tmp_path):
    extractor = PixelExtractor()
    copies = memorization_check(copier(TRAIN), 60, TRAIN, extractor, batch_size=16, grid=tmp_path / "copies.png")
    fresh = memorization_check(tensor_sample_fn(HELD_OUT, seed=None), 60, TRAIN, extractor, batch_size=16)
    assert copies["memorization_flagged"] and copies["memorized"] == 1.0 and copies["nn_ratio"] < 0.2
    assert not fresh["memorization_flagged"] and fresh["memorized"] < 0.15 and 0.6 < fresh["nn_ratio"] < 1.6
    assert fresh["nn_real_median"] == copies["nn_real_median"] > 0          # the same calibration for both
    # The grid: 8 suspects, each beside its 3 nearest training images; a copy's nearest one is its original.
    grid = torch.from_numpy(np.array(Image.open(copies["memorization_grid"]))).permute(2, 0, 1)
    assert grid.shape[1:] == (8 * 34 + 2, 4 * 34 + 2)
    fake, nearest = grid[:, 2:34, 2:34].float(), grid[:, 2:34, 36:68].float()
    assert (fake - nearest).abs().mean() < 2 and (nearest - grid[:, 2:34, 70:102].float()).abs().mean() > 10


def test_duplicates_inside_the_training_set_do_not_hide_copies():
    doubled = torch.cat([TRAIN, TRAIN[:30]])              # 30 training images twice: leave-one-out distance 0
    res = memorization_check(copier(TRAIN), 40, doubled, PixelExtractor(), batch_size=16)
    assert res["memorization_threshold"] > 0 and res["memorization_flagged"]


def test_eval_cli_falls_back_to_pixels_offline_and_flags_a_folder_of_copies(tmp_path):
    from typer.testing import CliRunner

    import smallgan.cli.eval  # noqa: F401  (registers the command)
    from smallgan.cli.app import app

    write_folder(tmp_path / "real", TRAIN[:40])
    write_folder(tmp_path / "fake", TRAIN[:20])
    out = tmp_path / "m.jsonl"
    result = CliRunner().invoke(app, ["eval", "--real", str(tmp_path / "real"), "--fake", str(tmp_path / "fake"),
                                      "--metrics", "memorization", "--cpu", "--out", str(out),
                                      "--grid", str(tmp_path / "g.png")])
    assert result.exit_code == 0, result.output
    assert "pixel distances instead" in result.output and "FLAGGED" in result.output
    rec = json.loads(out.read_text())
    assert rec["memorized"] == 1.0 and rec["memorization_features"] == "pixels-32" and (tmp_path / "g.png").is_file()
    assert build_extractor("pixels").feature_dim == 3 * 32 * 32


@pytest.mark.slow
def test_memorization_during_training_is_logged_with_its_grid(tmp_path, tiny_cfg):
    trainer = train(tiny_cfg("train.max_steps=2", "train.eval_every=2", "eval.extractor=tiny", "eval.n=16",
                         "eval.metrics=kid,memorization"))
    (rec,) = [r for r in read_metrics(trainer.run_dir / "metrics.jsonl") if r.get("event") == "eval"]
    assert {"kid", "memorized", "nn_ratio", "memorization_flagged"} <= set(rec) and rec["n_fake"] == 16
    assert (trainer.run_dir / "memorization" / "step-0000002.png").is_file()


def test_eval_cli_of_a_run_writes_the_grid_beside_it(tmp_path):
    from typer.testing import CliRunner

    from data_tools import prepare

    import smallgan.cli.eval  # noqa: F401
    from smallgan.cli.app import app
    from smallgan.config import load_config
    from smallgan.registry import build_generator
    from smallgan.sampling.export import export_generator

    write_folder(tmp_path / "imgs", TRAIN[:16])
    prepare.prepare(str(tmp_path / "imgs"), tmp_path / "data", prepare.PrepareOptions(resolution=32))
    cfg = load_config("tiny-cpu", [f"data.path={tmp_path / 'data'}"])
    run = tmp_path / "run"
    export_generator(run / "generator.safetensors", build_generator(cfg.model, n_classes=1).eval(), cfg, [], 7)
    result = CliRunner().invoke(app, ["eval", "--run", str(run), "--n", "12", "--metrics", "memorization",
                                      "--extractor", "pixels", "--cpu"])
    assert result.exit_code == 0, result.output
    rec = json.loads((run / "metrics.jsonl").read_text())
    assert rec["n_real"] == 16 and rec["n_fake"] == 12 and not rec["memorization_flagged"]   # an untrained G copies nothing
    assert (run / "memorization" / "eval-step-0000007.png").is_file()


def test_on_real_photographs_copied_crops_are_flagged_and_new_crops_are_not(tmp_path):
    """builtin:photos (crops of eight photographs): a new crop of a training photograph shares its colours and
    texture with the training crops, yet only a copy of a training crop falls under the threshold."""
    pytest.importorskip("skimage")
    from smallgan.data import load_prepared, resolve_dataset

    photos = load_prepared(resolve_dataset("builtin:photos", 32, cache_dir=tmp_path)).images
    train, held_out = photos[:150], photos[150:]          # photographs cycle: both halves hold all eight
    copies = memorization_check(copier(train), 50, train, PixelExtractor(), batch_size=25)
    fresh = memorization_check(tensor_sample_fn(held_out, seed=None), 50, train, PixelExtractor(), batch_size=25)
    assert copies["memorization_flagged"] and copies["memorized"] == 1.0
    assert not fresh["memorization_flagged"] and fresh["memorized"] < 0.15 and fresh["nn_ratio"] > 0.6
