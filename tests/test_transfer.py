"""Fine-tuning: `train --init` (a new run from another run's weights, new classes), FreezeD and g_norm.

The pretrained network is the BigGAN authors' layout at tiny width (built as in test_convert.py, with the
architecture of the finetune64 recipe), converted by `smallgan convert`: the path a user takes.
"""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from smallgan.checkpoint import load_checkpoint
from smallgan.cli import app
from smallgan.config import FINETUNE as FINETUNE_MODES, ConfigError, load_config
from smallgan.errors import SmallganError
from smallgan.training.loop import Trainer, train
from smallgan.training.transfer import NOISE
from their_biggan import convert, write_their_folder

# The finetune32 and finetune64 recipes' [model] in the authors' train.py terms, five classes. At 32 px without
# D attention: the authors' 32 px D would put it after each of its blocks (test_convert.py).
FINETUNE = {
    32: (dict(resolution=32, G_ch=8, D_ch=8, dim_z=64, shared_dim=32, hier=True, G_attn="16", D_attn="0",
              n_classes=5, SN_eps=1e-6, BN_eps=1e-5), ["model.d_attention=[]", "train.batch=8", "train.micro_batch=8"]),
    64: (dict(resolution=64, G_ch=8, D_ch=8, dim_z=20, shared_dim=16, hier=True, G_attn="32", D_attn="32",
              n_classes=5, SN_eps=1e-6, BN_eps=1e-5), ["train.batch=8", "train.micro_batch=8"]),
}
EMBEDDINGS = {"G": "shared.weight", "D": "head.embed.parametrizations.weight.original"}   # rows = classes


def converted(root, resolution):
    """A converted run folder (5 classes) in the layout of finetune<resolution>, and its checkpoint's weights."""
    write_their_folder(root / "theirs", FINETUNE[resolution][0])
    run = convert(root / "theirs", root / "imagenet-tiny")
    weights, _, _ = load_checkpoint(run / "checkpoints" / "step-0000000")
    return run, weights


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    return converted(tmp_path_factory.mktemp("pretrained"), 32)


def finetune(tmp_path, run, *sets, name="ft", resolution=32):
    return load_config(f"finetune{resolution}", [
        *FINETUNE[resolution][1], f"train.init={run}", "data.path=builtin:shapes", f"train.out_dir={tmp_path}",
        f"train.name={name}", "train.log_every=1", "train.sample_every=0", "train.sv_every=0", "sample.n=4", *sets])


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("resolution", [32, 64])
def test_new_classes_start_from_the_pretrained_mean_and_everything_else_is_loaded(tmp_path, resolution):
    run, weights = converted(tmp_path, resolution)
    trainer = Trainer(finetune(tmp_path, run, resolution=resolution))   # builtin:shapes: 3 classes, the pretrained 5
    assert trainer.cfg.model.n_classes == 3
    for net, module in (("G", trainer.G), ("D", trainer.D), ("G_ema", trainer.ema.shadow)):
        ours, theirs = module.state_dict(), weights[net]
        embedding = EMBEDDINGS["D" if net == "D" else "G"]
        same = [k for k in theirs if not k.startswith(("shared.", "head.embed."))]
        assert same and all(torch.equal(ours[k], theirs[k]) for k in same), net
        rows, old = ours[embedding], theirs[embedding]
        assert rows.shape == (3, old.shape[1])
        mean, spread = old.mean(0), old.std(0)
        assert torch.all((rows - mean).abs() <= 5 * NOISE * spread + 1e-6)     # near the mean ...
        assert not torch.equal(rows[0], rows[1])                             # ... and apart from each other
    # G and its EMA draw the same noise for the new rows (around their own pretrained means).
    unit = [(m.shared.weight.detach() - weights[n]["shared.weight"].mean(0)) / weights[n]["shared.weight"].std(0)
            for m, n in ((trainer.G, "G"), (trainer.ema.shadow, "G_ema"))]
    assert torch.allclose(unit[0], unit[1], atol=1e-5)


@pytest.mark.slow
def test_init_trains_two_steps_with_a_different_class_count(tmp_path, pretrained):
    run, _ = pretrained
    trainer = train(finetune(tmp_path, run, "train.max_steps=2"))
    assert trainer.counters.step == 2
    records = [json.loads(line) for line in (trainer.run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r for r in records if "d_loss" in r]
    assert [r["step"] for r in losses] == [1, 2] and all(abs(r["d_loss"]) < 1e3 for r in losses)
    saved = json.loads((trainer.run_dir / "config.json").read_text())
    assert saved["model"]["n_classes"] == 3 and saved["train"]["init"] == str(run)


def test_init_classes_pick_pretrained_rows_and_an_unconditional_run_drops_the_projection(tmp_path, pretrained):
    run, weights = pretrained
    trainer = Trainer(finetune(tmp_path, run, "train.init_classes=[4, 0, 2]"))
    assert torch.equal(trainer.G.shared.weight.detach(), weights["G"][EMBEDDINGS["G"]][[4, 0, 2]])
    assert torch.equal(trainer.D.state_dict()[EMBEDDINGS["D"]], weights["D"][EMBEDDINGS["D"]][[4, 0, 2]])

    single = Trainer(finetune(tmp_path, run, "model.n_classes=1", name="uncond"))
    assert single.D.head.embed is None
    assert torch.allclose(single.G.shared.weight.detach()[0], weights["G"][EMBEDDINGS["G"]].mean(0))

    with pytest.raises(SmallganError, match="train.init_classes has 2 entries for the 3 classes"):
        Trainer(finetune(tmp_path, run, "train.init_classes=[1, 2]", name="wrong"))
    with pytest.raises(SmallganError, match="class 7 is not among the 5 classes"):
        Trainer(finetune(tmp_path, run, "train.init_classes=[1, 2, 7]", name="wrong2"))


def test_freeze_d_and_g_norm_leave_frozen_weights_bit_identical(tmp_path, pretrained):
    run, _ = pretrained
    trainer = Trainer(finetune(tmp_path, run, "train.freeze_d=2", "train.finetune=g_norm", "train.max_steps=3"))
    G0, D0 = snapshot(trainer.G), snapshot(trainer.D)
    trainer.run()
    G1, D1 = snapshot(trainer.G), snapshot(trainer.D)
    trainable_g = ("shared.", ".gain.", ".bias.", "to_rgb.bn.")
    frozen_g = [k for k in G0 if "original" in k and not any(s in k for s in trainable_g)]
    assert frozen_g and all(torch.equal(G0[k], G1[k]) for k in frozen_g)
    # Spectral-norm vectors of frozen layers stay too: a frozen layer computes exactly what it did.
    assert all(torch.equal(G0[k], G1[k]) for k in G0 if k.endswith((".0.u", ".0.v"))
               and not any(s in k for s in trainable_g))
    assert not torch.equal(G0["shared.weight"], G1["shared.weight"])
    assert any(not torch.equal(G0[k], G1[k]) for k in G0 if ".gain." in k and "original" in k)
    first_two = [name for name, _ in list(trainer.D.blocks.items())[:2]]
    frozen_d = [k for k in D0 if k.split(".")[0] in ("blocks", "attention") and k.split(".")[1] in first_two]
    assert frozen_d and all(torch.equal(D0[k], D1[k]) for k in frozen_d)
    later = [k for k in D0 if k.startswith("blocks.") and k.split(".")[1] not in first_two and "original" in k]
    assert any(not torch.equal(D0[k], D1[k]) for k in later)
    # The optimisers hold only what trains.
    assert sum(p.numel() for g in trainer.state.g_opt.param_groups for p in g["params"]) < \
        sum(p.numel() for p in trainer.G.parameters()) / 2


@pytest.mark.parametrize("mode", FINETUNE_MODES)
def test_the_run_line_counts_what_each_finetune_mode_trains(tmp_path, pretrained, mode):
    run, _ = pretrained
    out = io.StringIO()
    trainer = Trainer(finetune(tmp_path, run, f"train.finetune={mode}", "train.max_steps=1", "sample.n=4"),
                      console=Console(file=out, width=1000))
    trainer.run()
    G, D = trainer.G, trainer.D
    # g_norm, as its documentation says: the shared embedding, the conditional BatchNorms' gain and bias
    # projections and the output BatchNorm's scale and shift.
    documented = ("shared.", ".gain.", ".bias.", "to_rgb.bn.") if mode == "g_norm" else ("",)
    g_trains = sum(p.numel() for n, p in G.named_parameters() if any(s in n for s in documented))
    d_trains = sum(p.numel() for p in D.parameters() if p.requires_grad)
    assert g_trains == sum(p.numel() for p in G.parameters() if p.requires_grad)
    line = out.getvalue().replace("\n", "")
    assert (f"training G {g_trains:,} of {sum(p.numel() for p in G.parameters()):,} parameters "
            f"(train.finetune={mode}), D {d_trains:,} of {sum(p.numel() for p in D.parameters()):,}") in line


@pytest.mark.slow
def test_a_fine_tuning_run_resumes_exactly(tmp_path, pretrained):
    run, _ = pretrained
    sets = ("train.freeze_d=2", "train.finetune=g_norm")
    straight = train(finetune(tmp_path, run, *sets, "train.max_steps=4", name="straight"))
    train(finetune(tmp_path, run, *sets, "train.max_steps=2", name="resumed"))
    second = train(finetune(tmp_path, run, *sets, "train.max_steps=4", name="resumed"), resume="latest")
    for a, b in ((straight.G, second.G), (straight.D, second.D), (straight.ema.shadow, second.ema.shadow)):
        sa, sb = a.state_dict(), b.state_dict()
        assert [k for k in sa if not torch.equal(sa[k], sb[k])] == []


def test_another_architecture_or_no_checkpoint_is_refused_in_one_line(tmp_path, pretrained):
    run, _ = pretrained
    with pytest.raises(SmallganError) as err:
        Trainer(finetune(tmp_path, run, "model.d_ch=16", "model.g_attention=[]"))
    message = str(err.value)
    assert "model.d_ch=8 (this run: 16), model.g_attention=[16] (this run: [])" in message
    assert "--set model.d_ch=8 --set model.g_attention=[16]" in message
    assert "\n" not in message
    empty = tmp_path / "empty"
    empty.mkdir()
    for path, expected in ((empty, "has no checkpoint"), (tmp_path / "absent", "does not exist")):
        with pytest.raises(SmallganError, match=expected):
            Trainer(finetune(tmp_path, path, name="x"))


def test_finetune_settings_are_validated():
    with pytest.raises(ConfigError, match="train.finetune must be one of all, g_norm"):
        load_config("finetune32", ["train.finetune=bn"])
    with pytest.raises(ConfigError, match="train.freeze_d is for BigGAN discriminators"):
        load_config("fastgan-tiny64", ["train.freeze_d=1"])
    with pytest.raises(ConfigError, match="train.freeze_d"):
        load_config("finetune32", ["train.freeze_d=-1"])


def test_finetune128_has_the_authors_imagenet_128_architecture():
    from smallgan.convert.biggan_pytorch_arch import model_from_authors_config

    # Their ImageNet 128 launch script's settings (BigGAN-PyTorch, scripts/launch_BigGAN_bs256x8.sh).
    theirs, _ = model_from_authors_config({
        "resolution": 128, "G_ch": 96, "D_ch": 96, "dim_z": 120, "shared_dim": 128, "hier": True,
        "G_attn": "64", "D_attn": "64", "n_classes": 1000, "SN_eps": 1e-6, "BN_eps": 1e-5, "G_shared": True})
    recipe = load_config("finetune128").model
    differ = {k: (v, getattr(recipe, k)) for k, v in theirs.items()
              if k not in ("n_classes", "shared_init") and getattr(recipe, k) != v}
    assert differ == {}


def smallgan(*args):
    return subprocess.run([sys.executable, "-m", "smallgan", *args], capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_a_converted_folder_is_an_ordinary_run_and_the_cli_fine_tunes_from_it(tmp_path, pretrained):
    run, _ = pretrained
    sets = [x for item in FINETUNE[32][1] for x in ("--set", item)]
    r = smallgan("train", "--recipe", "finetune32", "--init", str(run), "--data", "builtin:shapes", "--max-steps", "2",
                 "--name", "ft", "--set", f"train.out_dir={tmp_path}", "--set", "sample.n=4", *sets)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "initialised from" in r.stderr + r.stdout
    assert (tmp_path / "ft" / "checkpoints" / "step-0000002").is_dir()
    cli = CliRunner()
    real = Path(os.environ["SMALLGAN_CACHE"]) / "builtin" / "shapes-32"    # prepared by the run above
    result = cli.invoke(app, ["eval", "--run", str(run), "--real", str(real), "--extractor", "tiny", "--n", "8",
                              "--metrics", "kid", "--cpu", "--out", str(tmp_path / "eval.jsonl")])
    assert result.exit_code == 0, result.output[-2000:]
    assert json.loads((tmp_path / "eval.jsonl").read_text().splitlines()[-1])["kid"] is not None
    result = cli.invoke(app, ["compare", str(run), str(tmp_path / "ft"), "--n", "2", "--out", str(tmp_path / "c.png")])
    assert result.exit_code == 0 and (tmp_path / "c.png").is_file(), result.output[-2000:]
    # `sample` and `info` on a converted folder: tests/test_convert.py.


@pytest.mark.slow
def test_init_of_a_converted_run_with_another_class_count_starts_without_further_flags(tmp_path, pretrained):
    run, _ = pretrained       # 5 ImageNet-style classes; the shapes have 3
    r = smallgan("train", "--init", str(run), "--data", "builtin:shapes", "--max-steps", "1", "--out-dir",
                 str(tmp_path), "--log-with", "none", "--sample-every", "0")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "the model of" in r.stderr and "3 class(es) from the mean of 5 pretrained" in r.stderr + r.stdout
    assert (tmp_path / f"{run.name}-finetune" / "checkpoints" / "step-0000001").is_dir()
    r = smallgan("train", "--init", str(run), "--data", "builtin:shapes", "--max-steps", "1", "--out-dir",
                 str(tmp_path), "--name", "wider", "--set", "model.ch=16")
    assert r.returncode == 2 and "model.ch=8 (this run: 16)" in r.stderr and not (tmp_path / "wider").exists()
