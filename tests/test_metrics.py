"""Quality metrics: the maths against direct numpy/scipy computations, the behaviour FID/KID must show on
degraded images, caching, offline weights, best-checkpoint tracking, the CLI and multi-process gathering.

Everything runs on the CPU with TinyExtractor (a small random conv net behind the same interface as the
Inception extractor); nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from smallgan.errors import SmallganError
from smallgan.metrics import (
    BestTracker,
    FeatureStats,
    TinyExtractor,
    compute_metrics,
    evaluate_generator,
    extract,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    precision_recall,
    real_statistics,
    statistics_of_images,
    tensor_sample_fn,
)
from smallgan.metrics import evaluate as evaluate_mod
from smallgan.metrics import features as features_mod
from smallgan import weights as weights_mod
from smallgan.offline import OFFLINE_VARS
from smallgan.metrics.kid import mmd2_unbiased
from image_sets import add_noise, index_sample_fn, smooth_images, write_folder
from torchrun_retry import run_torchrun


def blur(images: torch.Tensor, times: int) -> torch.Tensor:
    x = images.float()
    kernel = torch.tensor([1.0, 2.0, 1.0]) / 4
    k2 = (kernel[:, None] * kernel[None, :]).expand(3, 1, 3, 3)
    for _ in range(times):
        x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k2, groups=3)
    return x.round().clamp(0, 255).to(torch.uint8)


def scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook computation (as in the original TF code and pytorch-fid): np.cov and scipy sqrtm."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.fixture(scope="module")
def extractor() -> TinyExtractor:
    return TinyExtractor(seed=0, dim=32)


# ---------------------------------------------------------------------------------------------
# Streaming statistics and the formulas


def test_streaming_stats_match_numpy_for_uneven_batches_and_a_large_offset():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(157, 12)) * rng.uniform(0.1, 5, size=12) + 1e4  # large mean: naive sums would cancel
    stats = FeatureStats(max_kept=50)
    for lo, hi in [(0, 1), (1, 40), (40, 41), (41, 130), (130, 157)]:
        stats.update(torch.from_numpy(x[lo:hi]))
    assert stats.n == 157
    np.testing.assert_allclose(stats.mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.cov, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(stats.features, x[:50].astype(np.float32))


def test_stats_save_load_round_trip_is_atomic(tmp_path):
    stats = FeatureStats(max_kept=10, meta={"extractor": "x", "resolution": 32})
    stats.update(torch.randn(25, 6))
    path = tmp_path / "sub" / "s.npz"
    stats.save(path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["s.npz"]  # no temp file left behind
    back = FeatureStats.load(path)
    assert back.n == 25 and back.meta["extractor"] == "x" and back.meta["resolution"] == 32
    np.testing.assert_array_equal(back.mean, stats.mean)
    np.testing.assert_array_equal(back.cov, stats.cov)
    np.testing.assert_array_equal(back.features, stats.features)


def test_frechet_distance_matches_scipy_sqrtm_on_random_covariances():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(40, 8)), rng.normal(size=(30, 8)) * 1.5 + 0.3
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ours = frechet_distance(a.mean(0), s1, b.mean(0), s2)
    assert ours == pytest.approx(scipy_fid(a, b), rel=1e-8)


def test_fid_through_the_extractor_matches_scipy_on_the_same_features(extractor):
    real, fake = smooth_images(120, seed=1), blur(smooth_images(100, seed=2), 2)
    real_stats = statistics_of_images(real, extractor, batch_size=32)
    out = extract(tensor_sample_fn(fake, seed=None), len(fake), extractor, batch_size=32)
    ours = compute_metrics(real_stats, out.stats, None, ["fid"])["fid"]
    with torch.no_grad():
        fr, ff = extractor(real)["pool"].double().numpy(), extractor(fake)["pool"].double().numpy()
    ref = scipy_fid(fr, ff)
    assert ref > 1e-3  # clearly non-zero, so the relative comparison means something
    assert ours == pytest.approx(ref, rel=1e-3)


def test_fid_of_a_set_with_itself_is_zero(extractor):
    images = smooth_images(150, seed=3)
    real = statistics_of_images(images, extractor)
    res = evaluate_generator(tensor_sample_fn(images, seed=5), len(images), real, extractor, metrics=("fid",))
    blurred = statistics_of_images(blur(images, 1), extractor)
    assert abs(res["fid"]) < 1e-6 * compute_metrics(real, blurred, None, ["fid"])["fid"]
    assert res["n_fake"] == res["n_real"] == 150


@pytest.mark.parametrize("degrade", ["blur", "noise"])
def test_fid_and_kid_grow_as_images_are_degraded(extractor, degrade):
    real = statistics_of_images(smooth_images(200, seed=4), extractor)
    base = smooth_images(200, seed=5)  # same distribution, other images: level 0 is the baseline
    levels = [0, 1, 3, 6] if degrade == "blur" else [0, 8, 24, 64]
    fids, kids = [], []
    for level in levels:
        fake = blur(base, level) if degrade == "blur" else add_noise(base, level)
        res = evaluate_generator(tensor_sample_fn(fake), len(fake), real, extractor, metrics=("fid", "kid"),
                                 kid_subsets=20, kid_subset_size=100)
        fids.append(res["fid"])
        kids.append(res["kid"])
    assert all(a < b for a, b in zip(fids, fids[1:])), fids
    assert all(a < b for a, b in zip(kids, kids[1:])), kids


def test_mmd2_unbiased_matches_the_double_sum_definition():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(9, 4)), rng.normal(size=(9, 4)) + 0.5
    k = lambda a, b: (a @ b / 4 + 1) ** 3  # noqa: E731
    m = len(x)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    assert mmd2_unbiased(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(xx + yy - 2 * xy, rel=1e-10)


def test_kid_is_unbiased_for_two_samples_of_one_distribution():
    rng = np.random.default_rng(3)
    values, biased = [], []
    for _ in range(200):
        x, y = rng.normal(size=(20, 8)), rng.normal(size=(20, 8))
        values.append(kernel_inception_distance(x, y, subsets=1, subset_size=20)[0])
        kxx, kyy = (x @ x.T / 8 + 1) ** 3, (y @ y.T / 8 + 1) ** 3
        biased.append(kxx.mean() + kyy.mean() - 2 * ((x @ y.T / 8 + 1) ** 3).mean())  # V-statistic
    values, biased = np.array(values), np.array(biased)
    stderr = values.std() / np.sqrt(len(values))
    assert abs(values.mean()) < 3 * stderr             # expectation 0: unbiased
    assert biased.mean() > 10 * biased.std() / np.sqrt(len(biased))  # the biased estimate is clearly > 0


def test_kid_reports_a_std_over_subsets_and_matches_torch_fidelity():
    tf_kid = pytest.importorskip("torch_fidelity.metric_kid")
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(60, 16)), rng.normal(size=(60, 16)) + 0.2
    mean, std = kernel_inception_distance(x, y, subsets=30, subset_size=30)
    assert mean > 0 and std > 0
    # With one subset holding every image the estimate is deterministic: compare with torch-fidelity's.
    full, _ = kernel_inception_distance(x, y, subsets=1, subset_size=60)
    ref = tf_kid.kid_features_to_metric(torch.from_numpy(x), torch.from_numpy(y), kid_subsets=1,
                                        kid_subset_size=60, verbose=False)
    assert full == pytest.approx(ref[tf_kid.KEY_METRIC_KID_MEAN], rel=1e-6)


def test_inception_score_extremes_and_reference():
    k = 10
    assert inception_score(torch.zeros(50, k), splits=5)[0] == pytest.approx(1.0)
    confident = torch.full((100, k), -30.0)
    confident[torch.arange(100), torch.arange(100) % k] = 30.0  # sure of each sample, classes balanced
    assert inception_score(confident, splits=10)[0] == pytest.approx(k, rel=1e-6)
    logits = np.random.default_rng(5).normal(size=(40, k)) * 3
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    ref = [np.exp((c * (np.log(c) - np.log(c.mean(0)))).sum(1).mean()) for c in np.split(p, 4)]
    mean, std = inception_score(logits, splits=4)
    assert mean == pytest.approx(np.mean(ref), rel=1e-10) and std == pytest.approx(np.std(ref), rel=1e-8)


def _pr_reference(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    def radii(x):
        d = np.linalg.norm(x[:, None] - x[None], axis=2)
        return np.sort(d, axis=1)[:, k]

    def inside(p, c, r):
        return float((np.linalg.norm(p[:, None] - c[None], axis=2) <= r[None]).any(1).mean())

    return inside(fake, real, radii(real)), inside(real, fake, radii(fake))


def test_precision_recall_against_brute_force_and_on_mode_dropping():
    rng = np.random.default_rng(6)
    real, fake = rng.normal(size=(80, 5)), rng.normal(size=(80, 5)) * 1.3 + 0.4
    p, r = precision_recall(real, fake, k=3)
    assert (p, r) == pytest.approx(_pr_reference(real, fake, 3), abs=1e-9)
    assert precision_recall(real, real) == (1.0, 1.0)
    assert precision_recall(real, real + 100.0) == (0.0, 0.0)
    centres = rng.normal(size=(4, 5)) * 50
    clusters = centres[np.arange(400) % 4] + rng.normal(size=(400, 5))
    dropped = centres[np.arange(400) % 2] + rng.normal(size=(400, 5))  # only 2 of the 4 modes
    p, r = precision_recall(clusters, dropped)
    assert p > 0.9 and 0.4 < r < 0.6


def test_is_and_pr_through_evaluate_generator(extractor):
    images = smooth_images(60, seed=7)
    real = statistics_of_images(images, extractor)
    res = evaluate_generator(index_sample_fn(1), 60, real, extractor, metrics=("is", "pr"), is_splits=3)
    assert set(res) == {"is", "is_std", "precision", "recall", "n_fake", "n_real"}
    assert res["is"] >= 1.0 and 0.0 <= res["precision"] <= 1.0 and 0.0 <= res["recall"] <= 1.0
    with pytest.raises(SmallganError, match="unknown metric"):
        evaluate_generator(index_sample_fn(1), 4, real, extractor, metrics=("fid", "lpips"))


# ---------------------------------------------------------------------------------------------
# Real-set statistics cache


def test_real_statistics_are_cached_by_extractor_resolution_and_content(tmp_path, monkeypatch, extractor):
    dataset = tmp_path / "ds"
    dataset.mkdir()
    (dataset / "data-00000.arrow").write_bytes(b"x")
    loads = []

    def fake_load(path, resolution):
        loads.append(path)
        return smooth_images(40, seed=8, size=48)

    monkeypatch.setattr(evaluate_mod, "_load_images", fake_load)
    first = real_statistics(dataset, extractor, resolution=32)
    assert len(loads) == 1 and first.n == 40
    (cached,) = (dataset / "fid_stats").iterdir()
    assert cached.name.startswith(f"{extractor.name}-32px-") and cached.suffix == ".npz"
    again = real_statistics(dataset, extractor, resolution=32)
    assert len(loads) == 1  # served from the cache
    np.testing.assert_array_equal(again.cov, first.cov)
    real_statistics(dataset, extractor, resolution=24)              # another resolution: another file
    real_statistics(dataset, TinyExtractor(seed=1), resolution=32)   # another extractor: another file
    assert len(loads) == 3 and len(list((dataset / "fid_stats").iterdir())) == 3
    (dataset / "data-00001.arrow").write_bytes(b"more")              # the dataset changed: recomputed
    real_statistics(dataset, extractor, resolution=32)
    assert len(loads) == 4 and not cached.exists()                   # ... and the stale file removed
    real_statistics(dataset, extractor, resolution=32, cache=False)
    assert len(loads) == 5


def test_real_statistics_of_a_prepared_dataset(tmp_path, extractor):
    from data_tools import prepare

    from smallgan.data import load_prepared

    write_folder(tmp_path / "imgs", smooth_images(12, seed=9, size=40))
    out = tmp_path / "prepared"
    prepare.prepare(str(tmp_path / "imgs"), out, prepare.PrepareOptions(resolution=32))
    stats = real_statistics(out, extractor, resolution=32)
    direct = statistics_of_images(load_prepared(out).images, extractor)
    np.testing.assert_allclose(stats.mean, direct.mean, rtol=1e-6)
    assert stats.n == 12 and len(list((out / "fid_stats").glob("*.npz"))) == 1


# ---------------------------------------------------------------------------------------------
# Inception weights: offline errors, no hang, safe loading, the real code path with random weights


def _no_network(*args, **kwargs):
    raise AssertionError("a download was attempted")


def test_offline_without_weights_gives_a_one_line_error_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("SMALLGAN_OFFLINE", "1")
    monkeypatch.setattr(weights_mod.urllib.request, "urlopen", _no_network)
    t0 = time.perf_counter()
    with pytest.raises(SmallganError) as err:
        features_mod.inception_v3()
    assert time.perf_counter() - t0 < 5
    msg = str(err.value)
    assert "\n" not in msg
    assert features_mod.INCEPTION_FILE in msg and features_mod.INCEPTION_URL in msg
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in msg and "--inception-weights" in msg


def test_hf_hub_offline_also_prevents_downloads(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("SMALLGAN_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(weights_mod.urllib.request, "urlopen", _no_network)
    with pytest.raises(SmallganError, match="offline"):
        features_mod.resolve_weights()


def test_a_blocked_network_fails_with_the_same_message_and_a_timeout(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for var in OFFLINE_VARS:
        monkeypatch.delenv(var, raising=False)
    seen = {}

    def blocked(url, timeout=None):
        seen["timeout"] = timeout
        raise urllib.error.URLError("connection timed out")

    monkeypatch.setattr(weights_mod.urllib.request, "urlopen", blocked)
    with pytest.raises(SmallganError, match="download failed: connection timed out") as err:
        features_mod.resolve_weights()
    assert features_mod.INCEPTION_FILE in str(err.value)
    assert seen["timeout"] is not None and seen["timeout"] <= 30
    assert not list(tmp_path.rglob("*.part"))


def test_explicit_weights_file_must_exist_and_hold_only_tensors(tmp_path):
    with pytest.raises(SmallganError, match="does not exist"):
        features_mod.resolve_weights(tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"fc.weight": torch.zeros(1), "extra": BestTracker()}, bad)  # a pickled object, not tensors
    with pytest.raises(SmallganError, match="not a plain weights file"):
        features_mod.load_weights(bad)
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(1)}, wrong)
    with pytest.raises(SmallganError, match="does not hold Inception-v3 weights"):
        features_mod.load_weights(wrong)


def test_inception_wrapper_runs_torch_fidelity_with_a_local_weights_file(tmp_path, monkeypatch):
    tf_inc = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")
    # Build torch-fidelity's network with random weights (its constructor insists on loading a file).
    monkeypatch.setattr(tf_inc.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None)
    monkeypatch.setattr(tf_inc, "load_state_dict_from_url", lambda *a, **k: {})
    torch.manual_seed(0)
    state = tf_inc.FeatureExtractorInceptionV3("x", ["2048"]).state_dict()
    monkeypatch.undo()
    path = tmp_path / "inception.pth"
    torch.save(state, path)
    monkeypatch.setenv("SMALLGAN_OFFLINE", "1")
    ext = features_mod.inception_v3(path)
    images = smooth_images(2, seed=10, size=40)
    out = ext(images)
    assert out["pool"].shape == (2, 2048) and out["logits"].shape == (2, 1008)
    assert torch.isfinite(out["pool"]).all() and ext.name == "inception-v3-tf"
    torch.testing.assert_close(ext.net.fc.weight, state["fc.weight"])  # the file's weights, not a download
    state.pop("fc.bias")
    torch.save(state, path)
    with pytest.raises(SmallganError, match="is not weights-inception"):
        features_mod.inception_v3(path)


# ---------------------------------------------------------------------------------------------
# Best checkpoint


def test_best_tracker_keeps_the_better_value_and_survives_a_resume():
    t = BestTracker()
    assert [t.update("fid", v, step=s) for s, v in enumerate([30.0, 25.0, 27.0, float("nan"), 24.5])] == [
        True, True, False, False, True]
    assert t.best["fid"] == 24.5 and t.step["fid"] == 4
    assert [t.update("is", v) for v in [2.0, 1.5, 3.0]] == [True, False, True]
    resumed = BestTracker()
    resumed.load_state_dict(json.loads(json.dumps(t.state_dict())))
    assert resumed.update("fid", 24.6) is False and resumed.update("fid", 20.0) is True
    with pytest.raises(SmallganError, match="cannot rank"):
        t.update("loss", 1.0)


# ---------------------------------------------------------------------------------------------
# CLI and multiple processes


def test_cli_eval_between_two_folders_appends_one_json_line(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import smallgan.cli.eval  # noqa: F401  (registers the command)
    from smallgan.cli.app import app

    write_folder(tmp_path / "real", smooth_images(30, seed=11))
    write_folder(tmp_path / "fake", blur(smooth_images(30, seed=12), 2))
    out = tmp_path / "m.jsonl"
    args = ["eval", "--real", str(tmp_path / "real"), "--fake", str(tmp_path / "fake"), "--extractor", "tiny",
            "--metrics", "fid,kid,is,pr", "--cpu", "--out", str(out)]
    runner = CliRunner()
    for _ in range(2):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    assert "FID" in result.output and "KID" in result.output
    lines = out.read_text().splitlines()
    assert len(lines) == 2
    rec = json.loads(lines[-1])
    assert rec["extractor"] == "tiny-s0-d32" and rec["n_fake"] == 30 and rec["n_real"] == 30
    assert rec["fid"] > 0 and {"kid", "kid_std", "is", "precision", "recall"} <= set(rec)
    assert not (tmp_path / "real" / "fid_stats").exists()  # a plain image folder is never written into

    monkeypatch.setenv("SMALLGAN_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    result = runner.invoke(app, ["eval", "--real", str(tmp_path / "real"), "--fake", str(tmp_path / "fake"), "--cpu"])
    assert isinstance(result.exception, SmallganError) and "weights-inception" in str(result.exception)


def test_cli_eval_of_a_run_appends_to_its_metrics_jsonl(tmp_path):
    from typer.testing import CliRunner

    from data_tools import prepare

    import smallgan.cli.eval  # noqa: F401
    from smallgan.sampling.export import export_generator
    from smallgan.cli.app import app
    from smallgan.config import load_config
    from smallgan.registry import build_generator

    write_folder(tmp_path / "imgs", smooth_images(16, seed=14))
    prepare.prepare(str(tmp_path / "imgs"), tmp_path / "data", prepare.PrepareOptions(resolution=32))
    cfg = load_config("tiny-cpu", [f"data.path={tmp_path / 'data'}"])
    run = tmp_path / "run"
    export_generator(run / "generator.safetensors", build_generator(cfg.model, n_classes=1).eval(), cfg, [], 7)
    result = CliRunner().invoke(app, ["eval", "--run", str(run), "--n", "20", "--extractor", "tiny", "--cpu"])
    assert result.exit_code == 0, result.output
    (line,) = (run / "metrics.jsonl").read_text().splitlines()
    rec = json.loads(line)
    assert rec["event"] == "eval" and rec["step"] == 7 and rec["n_fake"] == 20 and rec["n_real"] == 16
    assert rec["fid"] > 0 and rec["kid_std"] >= 0 and rec["resolution"] == 32
    assert len(list((tmp_path / "data" / "fid_stats").glob("tiny-*-32px-*.npz"))) == 1  # cached beside the data


MULTI = """
import json, sys, torch
from accelerate import Accelerator
sys.path.insert(0, {tests!r})
from image_sets import index_sample_fn, smooth_images
from smallgan.metrics import TinyExtractor, evaluate_generator, statistics_of_images
acc = Accelerator(cpu=True)
ext = TinyExtractor(0)
real = statistics_of_images(smooth_images(50, seed=13), ext, batch_size=8, accelerator=acc)
res = evaluate_generator(index_sample_fn(2), 37, real, ext, metrics=("fid", "kid", "is"), batch_size=8,
                         accelerator=acc, kid_subsets=10, is_splits=3)
json.dump({{"world": acc.num_processes, **res}}, open({out!r} + str(acc.process_index), "w"))
torch.distributed.destroy_process_group()   # gloo's threads left running at exit can abort the process
"""


@pytest.mark.slow
def test_two_processes_give_the_single_process_numbers(tmp_path):
    script = tmp_path / "multi.py"
    out = str(tmp_path / "res")
    script.write_text(MULTI.format(tests=str(Path(__file__).parent), out=out))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with socket.socket() as s:  # a free port, so parallel test runs do not collide
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = run_torchrun([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                         "--master_port", str(port), str(script)], env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (json.loads(Path(out + str(i)).read_text()) for i in range(2))
    assert r0["world"] == 2 and r0 == r1  # every process ends with the same numbers
    ext = TinyExtractor(0)
    real = statistics_of_images(smooth_images(50, seed=13), ext, batch_size=8)
    single = evaluate_generator(index_sample_fn(2), 37, real, ext, metrics=("fid", "kid", "is"), batch_size=8,
                                kid_subsets=10, is_splits=3)
    assert r0["n_fake"] == 37 and r0["n_real"] == 50
    for key in ("fid", "kid", "is"):
        assert r0[key] == pytest.approx(single[key], rel=1e-5, abs=1e-9), key
