"""The corrections behind sample quality: an EMA generator with its own spectral-norm vectors and BatchNorm
statistics, R1 over real images only, float32 D logits under autocast, separate seeds for data order and
steps, and the quality benchmark itself."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.nn.utils import parametrize

from smallgan import checkpoint as ckpt
from smallgan import runs
from smallgan.config import load_config
from smallgan.ema import EMA, prepare_for_sampling
from smallgan.layers.spectral_norm import SpectralNorm, power_iteration_
from smallgan.losses import r1_penalty
from smallgan.registry import build_discriminator, build_generator
from smallgan.sampling.export import load_generator
from smallgan.training.batches import RealStream, epoch_seed, step_seed
from smallgan.training.loop import train
from tiny import TINY_BASE

ROOT = Path(__file__).parent.parent
TINY = [*TINY_BASE, "train.batch=8", "train.sv_every=0"]


def spectral_norms_of_normalised_weights(module: torch.nn.Module) -> dict[str, float]:
    """The exact top singular value (SVD) of every weight as the module uses it (W / sigma)."""
    out = {}
    for path, mod in module.named_modules():
        if parametrize.is_parametrized(mod):
            for name, plist in mod.parametrizations.items():
                if any(isinstance(p, SpectralNorm) for p in plist):
                    w = getattr(mod, name).detach().flatten(1).double()
                    out[f"{path}.{name}"] = torch.linalg.matrix_norm(w, ord=2).item()
    return out


@pytest.mark.slow
def test_prepared_ema_generator_has_unit_spectral_norms_unlike_the_raw_average():
    torch.manual_seed(0)
    cfg = load_config("tiny-cpu", ["model.n_classes=3"]).model
    G = build_generator(cfg).eval()
    ema = EMA(G, decay=0.5, start=0)
    with torch.no_grad():   # G moves far from the average; its own vectors follow it, as in training
        for p in G.parameters():
            p.add_(torch.randn_like(p) * p.abs().mean().clamp(min=1e-2))
    power_iteration_(G)
    ema.update(G, step=1)
    raw = spectral_norms_of_normalised_weights(ema.shadow)
    assert max(raw.values()) > 1 + 1e-3          # the average normalised with G's vectors: not unit norm
    prepared = spectral_norms_of_normalised_weights(prepare_for_sampling(ema.shadow, batch_size=16))
    assert set(prepared) == set(raw) and len(prepared) > 10
    assert all(v <= 1 + 1e-3 for v in prepared.values()), {k: v for k, v in prepared.items() if v > 1 + 1e-3}


@pytest.mark.slow
def test_exported_generator_has_unit_spectral_norms_and_its_own_batchnorm_statistics(tmp_path):
    cfg = load_config("tiny-cpu", [*TINY, f"train.out_dir={tmp_path}", "train.name=run", "train.max_steps=4",
                                   "train.ema_start=0", "train.ema_decay=0.5", "train.g_lr=0.02"])
    trainer = train(cfg)
    G = load_generator(trainer.run_dir, device="cpu").module
    norms = spectral_norms_of_normalised_weights(G)
    assert len(norms) > 10 and all(v <= 1 + 1e-3 for v in norms.values()), norms
    # Its running statistics are the statistics of its own activations: re-measured on a large batch, the
    # first BatchNorm's input mean matches running_mean (G's statistics, from other weights, would not).
    bn = G.blocks["b8"].bn1.norm
    seen = {}
    handle = bn.register_forward_pre_hook(lambda _m, args: seen.setdefault("x", args[0]))
    with torch.no_grad():
        G(torch.randn(2048, G.z_dim), torch.randint(G.n_classes, (2048,)))
    handle.remove()
    measured = seen["x"].mean((0, 2, 3))
    spread = seen["x"].std((0, 2, 3))
    assert torch.all((measured - bn.running_mean).abs() <= 0.15 * spread + 1e-3)
    # The checkpoint's G_ema is the same prepared generator, so it samples like generator.safetensors.
    weights, _, _ = ckpt.load_checkpoint(runs.latest_checkpoint(trainer.run_dir))
    state = G.state_dict()
    assert all(torch.equal(weights["G_ema"][k], state[k]) for k in state)


def test_r1_counts_only_the_real_images_of_a_concatenated_batch():
    x = torch.randn(6, 3, requires_grad=True)      # 2 real rows, then 4 fakes, as D's one forward sees them
    w = torch.tensor([1.0, -2.0, 2.0])
    logits = x @ w                                   # grad of each real logit wrt its row is w: ||w||^2 = 9
    assert r1_penalty(logits[:2], x).item() == pytest.approx(9.0)


def test_discriminator_logits_are_computed_in_float32_under_autocast():
    torch.manual_seed(0)
    cfg = load_config("tiny-cpu", ["model.n_classes=3"]).model
    D = build_discriminator(cfg).eval()
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        h = D.features(x)
        logits = D(x, y)
    with torch.no_grad():
        h32 = h.float()
        expected = D.head.linear(h32)[:, 0] + (D.head.embed(y) * h32).sum(1)
    assert logits.dtype == torch.float32
    assert torch.equal(logits, expected)             # no bf16 rounding before the cast


def test_data_order_and_step_randomness_never_share_a_seed():
    assert not {step_seed(0, r, k) for r in range(2) for k in range(200)} & \
        {epoch_seed(0, r, k) for r in range(2) for k in range(200)}
    images = torch.zeros(10, 3, 4, 4, dtype=torch.uint8)
    stream = RealStream(images, torch.arange(10), seed=0, flip=False)
    for epoch in range(3):   # the order of epoch e is not the permutation the seed of step e would draw
        order = stream._indices(epoch * 10, 10)
        from_step = torch.randperm(10, generator=torch.Generator().manual_seed(step_seed(0, 0, epoch)))
        assert order.tolist() == torch.randperm(10, generator=torch.Generator().manual_seed(epoch_seed(0, 0, epoch))).tolist()
        assert order.tolist() != from_step.tolist()


def test_flips_are_off_unless_a_recipe_or_the_dataset_asks_for_them():
    assert load_config(None).data.flip == "dataset"
    assert load_config("tiny-cpu").data.flip == "dataset"
    assert load_config("anime64").data.flip == "true"


@pytest.mark.slow
def test_quality_benchmark_reports_accuracy_distance_and_calibration(tmp_path):
    out = tmp_path / "q.json"
    r = subprocess.run(
        [sys.executable, "-m", "benchmarks.quality", "--data", "builtin:shapes", "--minutes", "0",
         "--steps", "4", "--points", "2", "--per-class", "8", "--judge-steps", "30", "--json", str(out),
         "--grid", str(tmp_path / "grid.png"), *sum((["--set", s] for s in TINY), [])],
        capture_output=True, text=True, timeout=600, cwd=ROOT)   # a module of the benchmarks package
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["command"].startswith("python -m benchmarks.quality --data builtin:shapes") and result["commit"]
    cal = result["calibration"]
    assert cal["classes"] == 3 and cal["held_out"] == 150 and 0 <= cal["judge_test_acc"] <= 1
    assert cal["noise_fd"] > cal["real_fd"] >= 0
    assert [p["step"] for p in result["curve"]] == [2, 4]
    assert all(0 <= p["class_acc"] <= 1 and len(p["per_class_acc"]) == 3 and p["fd"] >= 0 for p in result["curve"])
    assert result["final"]["step"] == 4 and (tmp_path / "grid.png").is_file()
    assert "class_acc" in r.stdout and "noise" in r.stdout
    # Variety per class beside its real-vs-real calibration (benchmarks/variety.py): per-class lists, flags.
    var = cal["variety"]
    assert len(var["per_class_recall"]) == 3 and 0.5 < var["spread_mean"] < 1.5 and var["recall_min"] > 0.3
    for row in (*result["curve"], result["final"]):
        assert len(row["per_class_spread"]) == 3 and 0 <= row["recall_min"] <= row["recall_mean"] <= 1
        assert set(row["low_variety"]) <= {0, 1, 2}
    assert "spread" in r.stdout and "recall" in r.stdout


def test_shared_embedding_init_gives_the_class_the_weight_of_z():
    from smallgan.config import ConfigError

    for init, low, high in (("normal", 4.0, 8.0), ("ortho", 0.0, 1.0 + 1e-5)):
        cfg = load_config("tiny-cpu", ["model.n_classes=3", f"model.shared_init={init}"]).model
        norms = build_generator(cfg).shared.weight.norm(dim=1)        # shared_dim 32: sqrt(32) = 5.7
        assert torch.all((norms > low) & (norms < high)), (init, norms)
    with pytest.raises(ConfigError, match="shared_init"):
        load_config("tiny-cpu", ["model.shared_init=uniform"])


def test_sampling_copy_of_a_sync_batchnorm_generator_uses_plain_batchnorm():
    cfg = load_config("tiny-cpu", ["model.n_classes=3"]).model
    G = torch.nn.SyncBatchNorm.convert_sync_batchnorm(build_generator(cfg))
    prepared = prepare_for_sampling(G, batch_size=8, stats_images=16)   # made on one process: nothing to sync with
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in prepared.modules())
    assert set(prepared.state_dict()) == set(G.state_dict())
