"""Against class collapse (issue 24, docs/variety.md): MSGAN's mode-seeking term and the pairs G trains on."""

import pytest
import torch

from smallgan.config import ConfigError, load_config
from smallgan.losses import mode_seeking
from smallgan.training.loop import Trainer


def test_mode_seeking_punishes_a_pair_drawn_alike_and_pushes_it_apart():
    torch.manual_seed(0)
    z = torch.randn(8, 16)
    same = torch.rand(1, 3, 8, 8).repeat(8, 1, 1, 1).requires_grad_(True)
    varied = torch.rand(8, 3, 8, 8) * 2 - 1
    assert mode_seeking(same, z).item() > 1e4                 # 1 / eps: every pair collapsed
    assert mode_seeking(varied, z).item() < 10.0
    # Only the pair distances count: per pair, d_I / d_z as written out.
    d_i = (varied[:4] - varied[4:]).abs().flatten(1).mean(1)
    d_z = (z[:4] - z[4:]).abs().mean(1)
    assert mode_seeking(varied, z).item() == pytest.approx((1 / (d_i / d_z + 1e-5)).mean().item(), rel=1e-6)
    # Its gradient moves the two images of a pair apart (descent increases their distance).
    nearly = (torch.rand(1, 3, 8, 8).repeat(8, 1, 1, 1) + 0.01 * torch.randn(8, 3, 8, 8)).requires_grad_(True)
    mode_seeking(nearly, z).backward()
    moved = nearly - 0.01 * nearly.grad / nearly.grad.abs().max()
    assert (moved[:4] - moved[4:]).abs().mean() > (nearly[:4] - nearly[4:]).abs().mean()
    assert mode_seeking(varied[:1], z[:1]).item() == 0.0      # no pair: nothing to compare


def test_mode_seeking_trains_g_on_pairs_of_one_class(tmp_path, tiny_cfg):
    trainer = Trainer(tiny_cfg("train.mode_seeking=1.0", "train.max_steps=2"))
    seen = []
    hook = trainer.G.register_forward_pre_hook(lambda _m, args: seen.append((torch.is_grad_enabled(), args[1].clone())))
    trainer.train_iteration()
    hook.remove()
    g_phase = [y for grad, y in seen if grad]   # D's phase runs G without gradients
    assert g_phase and all(torch.equal(y[: len(y) // 2], y[len(y) // 2:]) for y in g_phase)
    assert trainer.phases.loss.mode_seeking == 1.0


def test_mode_seeking_is_off_by_default_and_refuses_negative_weights():
    assert load_config("tiny-cpu").train.mode_seeking >= 0.0
    assert load_config(None).train.mode_seeking == 0.0
    with pytest.raises(ConfigError, match="train.mode_seeking"):
        load_config(None, ["train.mode_seeking=-1"])


def _benchmark_variety():
    from benchmarks import variety

    return variety


def _blobs(n: int, label: int, g: torch.Generator, jitter: float = 1.0) -> torch.Tensor:
    """A class: a bright square at a class-specific place, moved and resized per image by `jitter`."""
    images = torch.zeros(n, 3, 16, 16, dtype=torch.uint8)
    for i in range(n):
        x, y = (int(v) for v in (torch.randint(0, 6, (2,), generator=g).float() * jitter).round())
        size = 3 + int(torch.randint(0, 4, (1,), generator=g).item() * jitter)
        images[i, :, 2 + 4 * label + y: 2 + 4 * label + y + size, 2 + x: 2 + x + size] = 255
    return images


def test_benchmark_flags_a_collapsed_class_and_calibrates_real_against_real_near_one():
    variety = _benchmark_variety()
    g = torch.Generator().manual_seed(0)
    feats = lambda x: torch.nn.functional.avg_pool2d(x.float(), 2).flatten(1).numpy()  # noqa: E731 - a stand-in judge
    split = [(torch.cat([_blobs(n, 0, g), _blobs(n, 1, g)]), torch.tensor([0] * n + [1] * n)) for n in (120, 40)]
    (x_train, y_train), (x_test, y_test) = split
    ref = variety.build_variety((x_train, y_train, feats(x_train)), (x_test, y_test, feats(x_test)), 2, per_class=60)
    cal = ref.calibration
    assert ref.size == [40, 40] and cal["pca_components"] >= 2
    assert all(0.8 < s < 1.25 for s in cal["per_class_spread"]) and cal["recall_min"] > 0.4
    varied, collapsed = _blobs(60, 0, g), _blobs(1, 1, g).repeat(60, 1, 1, 1)
    figures = [variety.class_figures(ref, 0, feats(varied), varied), variety.class_figures(ref, 1, feats(collapsed), collapsed)]
    row = variety.summary([f[0] for f in figures], [f[1] for f in figures], cal)
    assert row["low_spread"] == [1] and row["low_recall"] == [1] and row["low_variety"] == [1]
    assert row["per_class_spread"][1] == 0.0 and row["per_class_spread"][0] > 0.8
    lines = variety.format_classes(row).splitlines()
    assert lines[0].split()[0] == "recall" and lines[1].rstrip().endswith("0.00*")


def test_colour_digits_check_set_varies_colour_within_a_class(tmp_path):
    """benchmarks/colour_digits.py: class folders of 32 px RGB glyphs, two of one class unlike in colour."""
    import numpy as np
    from PIL import Image

    from benchmarks.colour_digits import main

    main([str(tmp_path), "--n", "40"])
    files = sorted(tmp_path.glob("*/*.png"))
    assert len(files) == 40 and all(f.parent.name.isdigit() for f in files)
    biggest = max({f.parent for f in files}, key=lambda d: len(list(d.glob("*.png"))))
    a, b = (np.asarray(Image.open(f), np.float32).reshape(-1, 3) for f in sorted(biggest.glob("*.png"))[:2])
    assert Image.open(files[0]).size == (32, 32) and Image.open(files[0]).mode == "RGB"
    assert np.abs(a.max(0) - b.max(0)).max() > 10   # the strokes' colours differ
