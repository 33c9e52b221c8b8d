"""`smallgan compare` on two tiny runs trained by the real loop: BigGAN and the FastGAN baseline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from smallgan.cli import app
from smallgan.config import load_config
from smallgan.errors import SmallganError
from smallgan.registry import build_discriminator
from smallgan.sampling.export import load_generator
from smallgan.training.loop import train
from smallgan.training.stats import read_metrics

# Every test here uses two runs trained by the real loop (the module fixture): end to end, so slow.
pytestmark = pytest.mark.slow

STEPS = 2
EVAL = ["train.eval_every=2", "eval.extractor=tiny", "eval.n=8", "eval.batch_size=64", "eval.metrics=kid,fid",
        "train.log_every=1", "train.sample_every=0", "train.sv_every=0"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    # Module-scoped (trained once for all tests here), so conftest's per-test cache isolation is not active yet.
    with pytest.MonkeyPatch.context() as mp:
        cache = tmp_path_factory.getbasetemp() / "caches"
        mp.setenv("SMALLGAN_CACHE", str(cache / "smallgan"))
        mp.setenv("TORCH_HOME", str(cache / "torch"))
        return _train_two(tmp_path_factory.mktemp("runs"))


def _train_two(out):
    biggan = load_config("tiny-cpu", ["model.ch=4", "model.z_dim=32", "model.shared_dim=8", "train.batch=4",
                                      "train.micro_batch=4", "sample.n=4", f"train.max_steps={STEPS}",
                                      f"train.out_dir={out}", "train.name=biggan", *EVAL])
    fastgan = load_config("fastgan-tiny64", ["model.ch=4", "model.d_ch=4", "train.batch=2", "train.micro_batch=2",
                                             "sample.n=4", f"train.max_steps={STEPS}", f"train.out_dir={out}",
                                             "train.name=fastgan", *EVAL])
    return train(biggan).run_dir, train(fastgan).run_dir


def test_fastgan_trains_in_the_shared_loop_and_logs_its_reconstruction_loss(runs):
    records = [r for r in read_metrics(runs[1] / "metrics.jsonl") if "event" not in r]
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    assert all(np.isfinite([r["d_loss"], r["g_loss"], r["d_recon"]]).all() and r["d_recon"] > 0 for r in records)
    assert all("d_recon" not in r for r in read_metrics(runs[0] / "metrics.jsonl"))   # BigGAN has no decoders
    loaded = load_generator(runs[1], device="cpu")
    G, cfg = loaded.module, loaded.config
    assert cfg.model.arch == "fastgan" and G(torch.randn(1, G.z_dim)).shape == (1, 3, 64, 64)


def test_compare_writes_the_table_and_the_side_by_side_image(runs, tmp_path):
    out = tmp_path / "cmp.png"
    cli = CliRunner()
    result = cli.invoke(app, ["compare", str(runs[0]), str(runs[1]), "--out", str(out), "--n", "4", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == ["biggan", "fastgan"]
    assert [r["model"] for r in rows] == ["biggan 32px", "fastgan 64px"]
    for row, run in zip(rows, runs):
        records = read_metrics(run / "metrics.jsonl")
        train_records = [r for r in records if "event" not in r]
        evals = [r for r in records if r.get("event") == "eval"]
        loaded = load_generator(run, device="cpu")
        G, cfg, classes = loaded.module, loaded.config, loaded.class_names
        with torch.device("meta"):
            D = build_discriminator(cfg.model, n_classes=len(classes) or 1)   # BigGAN: the 3 shape classes
        assert row["g_params"] == sum(p.numel() for p in G.parameters())
        assert row["d_params"] == sum(p.numel() for p in D.parameters())
        assert (row["steps"], row["kimg"], row["seconds"]) == (STEPS, train_records[-1]["kimg"],
                                                               train_records[-1]["seconds"])
        assert row["img_s"] == pytest.approx(np.mean([r["img_s"] for r in train_records]))
        best_fid = min(evals, key=lambda r: r["fid"])
        assert row["best"]["fid"] == [best_fid["fid"], best_fid["step"]] and row["extractor"] == evals[0]["extractor"]
    table = out.with_suffix(".md").read_text()
    assert "| biggan | biggan 32px |" in table and "| fastgan | fastgan 64px |" in table

    # The PNG holds both 2x2 grids side by side, each image at the larger resolution (64 px).
    picture = np.asarray(Image.open(out))
    assert picture.shape[1] > 2 * (2 * 64) and picture.shape[0] > 2 * 64
    # Fixed seeds: a second call draws the same images.
    again = tmp_path / "again.png"
    result = cli.invoke(app, ["compare", str(runs[0]), str(runs[1]), "--out", str(again), "--n", "4"],
                        env={"COLUMNS": "200"})   # a table wide enough to keep each cell on one line
    assert result.exit_code == 0 and "fastgan 64px" in result.stdout
    assert np.array_equal(np.asarray(Image.open(again)), picture)


def test_compare_refuses_what_is_not_a_run(runs, tmp_path):
    result = CliRunner().invoke(app, ["compare", str(runs[0]), str(tmp_path), "--out", str(tmp_path / "x.png")])
    assert isinstance(result.exception, SmallganError) and "config.json" in str(result.exception)
    result = CliRunner().invoke(app, ["compare", str(runs[0]), "--out", str(tmp_path / "x.png")])
    assert isinstance(result.exception, SmallganError) and "two" in str(result.exception)
