"""`smallgan sample` and the sampling API, on a tiny untrained generator exported like a finished run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from smallgan.cli import app
from smallgan.config import load_config
from smallgan.errors import SmallganError
from smallgan.layers.spectral_norm import SpectralNorm
from smallgan.registry import build_generator
from smallgan.sampling import (
    class_interpolation, export_generator, interpolation_frames, latent_interpolation, latest_run, load_generator,
    make_grid, save_gif, spread,
)
from tiny import TINY_MODEL

CLASSES = ["circle", "square", "triangle"]
TINY = TINY_MODEL


def _export(path: Path, overrides: list[str], n_classes: int = 3) -> Path:
    cfg = load_config("tiny-cpu", overrides)
    torch.manual_seed(0)
    G = build_generator(cfg.model, n_classes=n_classes)
    G.train()
    with torch.no_grad():  # a few train-mode passes give the BatchNorms non-default running statistics
        for _ in range(3):
            G(torch.randn(8, cfg.model.z_dim), torch.randint(n_classes, (8,)))
    export_generator(path, G.eval(), cfg, CLASSES if n_classes > 1 else [], step=1)
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run")
    _export(run / "generator.safetensors", TINY)
    return run


@pytest.fixture()
def G(run_dir):
    return load_generator(run_dir, device="cpu")


def _cli(*args: str) -> str:
    result = CliRunner().invoke(app, ["sample", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


# ---------------------------------------------------------------------------------------------------------
# Reproducibility and truncation


def test_same_seed_gives_identical_files_and_another_seed_does_not(run_dir, tmp_path):
    for name, seed in (("a.png", "0"), ("b.png", "0"), ("c.png", "1")):
        _cli("--run", str(run_dir), "--grid", "--n", "12", "--trunc", "0.5", "--seed", seed,
             "--out", str(tmp_path / name))
    a, b, c = ((tmp_path / f).read_bytes() for f in ("a.png", "b.png", "c.png"))
    assert a == b and a != c
    # Folders: same seed -> same bytes per file, whatever the batch size.
    _cli("--run", str(run_dir), "--n", "7", "--seed", "3", "--batch-size", "2", "--out", str(tmp_path / "f1"))
    _cli("--run", str(run_dir), "--n", "7", "--seed", "3", "--batch-size", "64", "--out", str(tmp_path / "f2"))
    files = sorted(p.name for p in (tmp_path / "f1").iterdir())
    assert files == [f"{i:05d}.png" for i in range(7)]
    assert all((tmp_path / "f1" / f).read_bytes() == (tmp_path / "f2" / f).read_bytes() for f in files)
    assert Image.open(tmp_path / "f1" / files[0]).size == (32, 32)


def test_per_image_seeds_regenerate_identical_files_at_any_batch_size(run_dir, tmp_path):
    for out, seeds, batch in (("a", "0-5,100", "7"), ("b", "5,100,3", "1")):
        _cli("--run", str(run_dir), "--seeds", seeds, "--trunc", "0.7", "--batch-size", batch,
             "--out", str(tmp_path / out))
    a, b = tmp_path / "a", tmp_path / "b"
    assert sorted(p.name for p in a.iterdir()) == [f"seed{i:04d}.png" for i in (0, 1, 2, 3, 4, 5, 100)]
    for name in ("seed0003.png", "seed0005.png", "seed0100.png"):   # alone, in another order, batch 1 vs 7
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "seed0000.png").read_bytes() != (a / "seed0001.png").read_bytes()
    # A class applies to every seed (same z, another image); the seed's file is refused twice without --overwrite.
    for name in ("square", "triangle"):
        _cli("--run", str(run_dir), "--seeds", "3", "--trunc", "0.7", "--class", name, "--out", str(tmp_path / name))
    assert (tmp_path / "square" / "seed0003.png").read_bytes() != (tmp_path / "triangle" / "seed0003.png").read_bytes()
    with pytest.raises(SmallganError, match="--overwrite"):
        _cli("--run", str(run_dir), "--seeds", "3", "--out", str(tmp_path / "square"))
    with pytest.raises(SmallganError, match="--seeds"):
        _cli("--run", str(run_dir), "--seeds", "7-2")


def test_folder_refuses_to_mix_with_earlier_samples_unless_overwrite(run_dir, tmp_path):
    out = tmp_path / "fid"
    _cli("--run", str(run_dir), "--n", "5", "--out", str(out))
    with pytest.raises(SmallganError, match="--overwrite"):
        _cli("--run", str(run_dir), "--n", "3", "--out", str(out))
    _cli("--run", str(run_dir), "--n", "3", "--out", str(out), "--overwrite")
    assert sorted(p.name for p in out.iterdir()) == ["00000.png", "00001.png", "00002.png"]


def test_truncation_changes_output_and_smaller_threshold_reduces_variance(G):
    images = {t: G.sample(48, trunc=t, classes="square", seed=0).float() for t in (2.0, 0.5, 0.04)}
    assert not torch.equal(images[2.0], images[0.5])
    variance = {t: x.var(dim=0).mean().item() for t, x in images.items()}   # across samples, per pixel
    assert variance[2.0] > variance[0.5] > variance[0.04]


def test_latents_share_the_base_draw_across_thresholds(G):
    base, loose, tight = (G.latents(16, t, seed=5) for t in (0.0, 2.0, 0.5))
    assert tight.abs().max() <= 0.5 and loose.abs().max() <= 2.0 < base.abs().max()
    kept = base.abs() <= 0.5   # entries of the base draw already inside the threshold are not redrawn
    assert kept.any() and torch.equal(base[kept], tight[kept]) and torch.equal(base[kept], loose[kept])


def test_sample_api_is_batch_size_invariant_and_returns_pil(G):
    x = G.sample(5, trunc=1.0, seed=2, batch_size=64)
    assert x.dtype == torch.uint8 and x.shape == (5, 3, 32, 32)
    assert torch.equal(x, G.sample(5, trunc=1.0, seed=2, batch_size=2))
    pil = G.sample(5, trunc=1.0, seed=2, as_pil=True)
    assert len(pil) == 5 and pil[0].size == (32, 32)
    assert torch.equal(torch.from_numpy(np.array(pil[4])).permute(2, 0, 1), x[4])


# Convolution paths: oneDNN on or off and the thread count choose other kernels, as another CPU would.
PATHS = [(1, True), (2, True), (1, False), (2, False)]


@pytest.mark.parametrize("threads,onednn", PATHS)
def test_bytes_do_not_depend_on_batch_size_or_neighbours_whatever_the_kernels(G, threads, onednn):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.backends.mkldnn.flags(enabled=onednn):
            whole = G.sample(19, trunc=0.0, seed=4, batch_size=64)
            assert torch.equal(whole, G.sample(19, trunc=0.0, seed=4, batch_size=1))
            assert torch.equal(whole, G.sample(19, trunc=0.0, seed=4, batch_size=5))
            assert torch.equal(whole[:3], G.sample(3, trunc=0.0, seed=4))       # fewer neighbours, the same images
            z, y = G.seed_inputs([7, 3, 11])
            alone = G.generate(*G.seed_inputs([11]))
            assert torch.equal(G.generate(z, y, batch_size=1)[2], alone[0])    # another place among its neighbours
    finally:
        torch.set_num_threads(before)


def test_another_convolution_path_agrees_within_one_level(G):
    """What docs/reproducibility.md promises across machines: other kernels round the last float bits
    otherwise, so a few pixels move by one level of 255, never more."""
    before = torch.get_num_threads()
    reference = G.sample(32, trunc=0.0, seed=9)
    torch.set_num_threads(1)
    try:
        with torch.backends.mkldnn.flags(enabled=False):
            other = G.sample(32, trunc=0.0, seed=9)
    finally:
        torch.set_num_threads(before)
    diff = (other.int() - reference.int()).abs()
    assert diff.max().item() <= 1 and diff.bool().float().mean().item() < 1e-3


# ---------------------------------------------------------------------------------------------------------
# Classes


def test_class_selection_by_name_or_index_and_clear_errors(G, run_dir, tmp_path):
    assert G.labels(4, "Triangle").tolist() == [2, 2, 2, 2]
    assert G.labels(4, ["square", 0]).tolist() == [1, 0, 1, 0]
    assert G.labels(6, None, nrow=2).tolist() == [0, 0, 1, 1, 2, 2]   # default: classes spread over rows
    assert spread([2, 0, 1], 3).tolist() == [2, 0, 1]                 # n labels come back as given
    same_z = dict(trunc=0.5, seed=0)
    assert not torch.equal(G.sample(4, classes="circle", **same_z), G.sample(4, classes="square", **same_z))
    with pytest.raises(SmallganError, match="unknown class 'hexagon'.*circle, square, triangle"):
        G.sample(4, classes="hexagon")
    with pytest.raises(SmallganError, match="index 3 is out of range.*0..2"):
        G.labels(4, 3)
    with pytest.raises(SmallganError, match="unknown class 'hexagon'.*circle, square, triangle"):
        _cli("--run", str(run_dir), "--grid", "--class", "square,hexagon", "--out", str(tmp_path / "x.png"))
    uncond = load_generator(_export(tmp_path / "u.safetensors", TINY, n_classes=1), device="cpu")
    assert uncond.labels(3).tolist() == [0, 0, 0]
    with pytest.raises(SmallganError, match="unconditional"):
        uncond.sample(2, classes=0)


# ---------------------------------------------------------------------------------------------------------
# Grids, sweeps, interpolation


def test_grid_dimensions(run_dir, tmp_path):
    _cli("--run", str(run_dir), "--grid", "--n", "10", "--nrow", "4", "--out", str(tmp_path / "g.png"))
    # 4 per row, 3 rows of 32 px with 2 px padding around every cell
    assert Image.open(tmp_path / "g.png").size == (4 * 32 + 5 * 2, 3 * 32 + 4 * 2)
    assert make_grid(torch.zeros(9, 3, 8, 8, dtype=torch.uint8), padding=0).shape == (3, 24, 24)
    _cli("--run", str(run_dir), "--trunc-sweep", "2,1,0.5,0.04", "--n", "4", "--standing-stats", "2",
         "--out", str(tmp_path / "s.png"))
    sweep = Image.open(tmp_path / "s.png")
    one = 2 * 32 + 3 * 2
    assert sweep.width >= 4 * one + 5 * 8 and sweep.height > one


def test_interpolation_end_points_are_plain_samples(G, tmp_path):
    rows, steps = 3, 5
    sheet = latent_interpolation(G, rows, steps, trunc=1.0, seed=4, classes="square")
    ends = G.latents(2 * rows, 1.0, seed=4)
    y = G.labels(rows, "square")
    assert torch.equal(sheet[0::steps], G.generate(ends[:rows], y))
    assert torch.equal(sheet[steps - 1::steps], G.generate(ends[rows:], y))
    across = class_interpolation(G, rows, steps, "circle", "triangle", trunc=1.0, seed=4)
    z = G.latents(rows, 1.0, seed=4)
    assert torch.equal(across[0::steps], G.generate(z, G.labels(rows, "circle")))
    assert torch.equal(across[steps - 1::steps], G.generate(z, G.labels(rows, "triangle")))
    frames = interpolation_frames(across, rows, steps)
    gif = Image.open(save_gif(frames, tmp_path / "a.gif"))
    assert gif.n_frames == 2 * steps - 2


def test_interp_cli_writes_sheet_and_gif(run_dir, tmp_path):
    out = tmp_path / "interp.png"
    _cli("--run", str(run_dir), "--interp", "4", "--n", "8", "--class", "circle", "--to-class", "2", "--out", str(out))
    assert Image.open(out).size == (4 * 32 + 5 * 2, 2 * 32 + 3 * 2) and out.with_suffix(".gif").is_file()
    with pytest.raises(SmallganError, match="--to-class needs --interp"):
        _cli("--run", str(run_dir), "--grid", "--class", "circle", "--to-class", "square")


# ---------------------------------------------------------------------------------------------------------
# Standing statistics


def test_standing_stats_reestimate_batchnorm_but_leave_spectral_norm_alone(G):
    module = G.module
    sn = {k: v.clone() for k, v in module.state_dict().items() if k.endswith((".u", ".v"))}
    bn = {k: v.clone() for k, v in module.state_dict().items() if k.endswith(("running_mean", "running_var"))}
    params = [p.clone() for p in module.parameters()]
    momenta = [m.momentum for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert sn and bn and any(isinstance(m, SpectralNorm) for m in module.modules())
    before = G.sample(4, trunc=0.5, seed=0)
    G.standing_stats(3, trunc=0.5, batch_size=8, seed=1)
    state = module.state_dict()
    assert all(torch.equal(state[k], v) for k, v in sn.items())
    assert all(torch.equal(p, q) for p, q in zip(module.parameters(), params))
    assert any(not torch.equal(state[k], v) for k, v in bn.items())
    assert not module.training and not any(m.training for m in module.modules())
    assert [m.momentum for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)] == momenta
    assert not torch.equal(before, G.sample(4, trunc=0.5, seed=0))
    # The same seed re-estimates the same statistics.
    again = load_generator(G.path, device="cpu").standing_stats(3, trunc=0.5, batch_size=8, seed=1)
    assert all(torch.equal(again.module.state_dict()[k], state[k]) for k in bn)


def test_standing_stats_are_the_plain_average_over_the_passes(G):
    bn = G.module.to_rgb.bn
    seen: list[torch.Tensor] = []
    handle = bn.register_forward_pre_hook(lambda _m, inp: seen.append(inp[0].detach().clone()))
    try:
        G.standing_stats(2, trunc=1.0, batch_size=6, seed=0)
    finally:
        handle.remove()
    assert len(seen) == 2
    means = torch.stack([x.mean(dim=(0, 2, 3)) for x in seen])
    variances = torch.stack([x.var(dim=(0, 2, 3), unbiased=True) for x in seen])
    torch.testing.assert_close(bn.running_mean, means.mean(0))   # equal weights, nothing left of the old stats
    torch.testing.assert_close(bn.running_var, variances.mean(0))


# ---------------------------------------------------------------------------------------------------------
# Loading: latest run, damaged and mismatched files, the package API


def test_latest_run_is_the_most_recently_written(tmp_path):
    with pytest.raises(SmallganError, match="pass --run DIR"):
        latest_run(tmp_path / "runs")
    old = _export(tmp_path / "runs" / "old" / "generator.safetensors", TINY)
    new = _export(tmp_path / "runs" / "new" / "generator.safetensors", TINY)
    (tmp_path / "runs" / "empty").mkdir()
    os.utime(old, (2_000_000_000, 2_000_000_000))
    os.utime(new, (1_000_000_000, 1_000_000_000))
    assert latest_run(tmp_path / "runs") == old.parent
    out = _cli("--runs-dir", str(tmp_path / "runs"), "--grid", "--n", "4")
    assert (old.parent / "samples" / "sample-t0-s0.png").is_file() and "sample-t0-s0.png" in out


def _one_line_cli_error(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "smallgan", "sample", *args], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    return proc.stderr


def test_damaged_and_mismatched_checkpoints_give_one_line_errors(run_dir, tmp_path):
    good = (run_dir / "generator.safetensors").read_bytes()
    for name, data in (("cut.safetensors", good[: len(good) // 2]), ("head.safetensors", good[:5]),
                       ("junk.safetensors", b"not a checkpoint at all")):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(SmallganError, match="damaged|not a safetensors"):
            load_generator(tmp_path / name, device="cpu")
    # Weights of a wider generator under the metadata of the narrow one.
    wide = _export(tmp_path / "wide.safetensors", ["model.ch=8", "model.z_dim=32", "model.shared_dim=8"])
    with safe_open(str(run_dir / "generator.safetensors"), "pt") as f:
        meta = f.metadata()
    save_file(load_file(str(wide)), str(tmp_path / "mismatch.safetensors"), metadata=meta)
    with pytest.raises(SmallganError, match="does not match"):
        load_generator(tmp_path / "mismatch.safetensors", device="cpu")
    err = _one_line_cli_error("--ckpt", str(tmp_path / "cut.safetensors"), "--grid", "--out", str(tmp_path / "x.png"))
    assert "cut.safetensors" in err and not (tmp_path / "x.png").exists()


def test_import_smallgan_stays_cheap_and_exports_the_api():
    code = "import sys, smallgan; assert 'torch' not in sys.modules, 'torch imported'; print(smallgan.__version__)"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=60)
    import smallgan
    from smallgan import save_grid as api_save_grid
    from smallgan.sampling import save_grid

    assert smallgan.load_generator is load_generator and api_save_grid is save_grid
    with pytest.raises(AttributeError):
        smallgan.no_such_thing  # noqa: B018
