"""The command line as a user runs it: subprocesses of `python -m smallgan`, checked by their output and files."""

import json
import subprocess
import sys

import pytest


def smallgan(*args: str, cwd=None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "smallgan", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout)


def test_help_lists_the_commands():
    r = smallgan("--help")
    assert r.returncode == 0
    for command in ("prepare", "train", "demo", "sample", "eval", "info", "bench", "compare"):
        assert command in r.stdout


@pytest.mark.slow
def test_info_reports_the_papers_parameter_counts():
    r = smallgan("info", "--recipe", "imagenet128", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert abs(info["G_params"] / 70.4e6 - 1) < 0.005 and abs(info["D_params"] / 88.0e6 - 1) < 0.005
    r = smallgan("info", "--recipe", "imagenet128", "--set", "model.ch=64", "--json")
    assert json.loads(r.stdout)["G_params"] < info["G_params"]           # overrides reach the model
    r = smallgan("info", "--recipe", "tiny-cpu")
    assert r.returncode == 0 and "Generator" in r.stdout and "Discriminator" in r.stdout


def test_train_dry_run_prints_the_resolved_config(tmp_path):
    r = smallgan("train", "--recipe", "anime64", "--data", str(tmp_path), "--max-steps", "7", "--dry-run",
                 "--set", "model.ch=32")
    cfg = json.loads(r.stdout)
    assert (cfg["model"]["ch"], cfg["train"]["max_kimg"], cfg["data"]["path"]) == (32, 3.584, str(tmp_path))  # 7 x 512


@pytest.mark.slow
def test_demo_writes_a_checkpoint_and_a_sample_grid(tmp_path):
    r = smallgan("demo", "--minutes", "10", "--steps", "6", "--out-dir", str(tmp_path / "runs"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    run = tmp_path / "runs" / "demo"
    assert (run / "checkpoints" / "step-0000006").is_dir()
    assert (run / "samples" / "step-0000006.png").is_file() and (run / "generator.safetensors").is_file()
    assert "demo finished" in r.stderr
    r = smallgan("sample", "--run", str(run), "--grid", "--n", "4", "--out", str(tmp_path / "grid.png"))
    assert r.returncode == 0 and (tmp_path / "grid.png").is_file(), r.stderr[-2000:]


@pytest.mark.slow
def test_benchmark_smoke(tmp_path):
    """The training benchmark at a tiny size: it runs and prints figures (not a timed test)."""
    r = smallgan("bench", "--arch", "biggan", "--resolution", "32", "--ch", "4", "--batch", "4", "--iters", "2",
                 "--warmup", "1", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    row = json.loads(r.stdout.strip().splitlines()[-1])
    print(row)
    assert row["img_s"] > 0 and row["peak_mem_mb"] > 0 and row["losses_finite"]
    script = subprocess.run([sys.executable, "benchmarks/bench_train.py", "--resolution", "32", "--ch", "4",
                             "--batch", "4", "--iters", "1", "--warmup", "1", "--repeats", "1",
                             "--variants", "baseline,channels_last"], capture_output=True, text=True, timeout=600)
    assert script.returncode == 0, script.stderr[-2000:]
    assert "baseline" in script.stdout and "channels_last" in script.stdout
