"""Faults, bad input and safety: each test fails if the promised behaviour breaks.

Kill tests run real `python -m smallgan.train` subprocesses on a tiny recipe.
"""

import json
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch

from smallgan import checkpoint as ckpt
from smallgan import runs
from smallgan.config import ConfigError, load_config
from smallgan.errors import SmallganError
from smallgan.exit_codes import ExitCode
from smallgan.io import load_weights, save_weights
from smallgan.sampling.export import load_generator
from smallgan.training.loop import Trainer, train
from tiny import TINY_BASE

TINY = [*TINY_BASE, "train.batch=4", "train.d_steps=1", "train.log_every=1"]


def tiny(tmp_path, *extra, name="run"):
    return load_config("tiny-cpu", [*TINY, f"train.out_dir={tmp_path}", f"train.name={name}", *extra])


def _train_cmd(tmp_path, *extra):
    sets = [x for s in [*TINY, f"train.out_dir={tmp_path}", "train.name=run", *extra] for x in ("--set", s)]
    return [sys.executable, "-m", "smallgan.train", "--recipe", "tiny-cpu", *sets]


def _wait_for(predicate, timeout=120.0, proc=None):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if predicate():
            return True
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"training exited early with {proc.returncode}: {out[-2000:]}")
        time.sleep(0.05)
    return False


def _latest_step(run: Path) -> int:
    latest = runs.latest_checkpoint(run)
    return int(latest.name.split("-")[1]) if latest else 0


def _strict_jsonl(path: Path) -> list[dict]:
    """Every complete line must parse; only a final line cut by a kill may be partial."""
    text = path.read_text()
    lines = text.split("\n")
    complete = lines[:-1] if not text.endswith("\n") else lines[:-1]
    return [json.loads(line) for line in complete]


# ---------------------------------------------------------------------------------------------
# Crash safety


@pytest.mark.slow
def test_sigkill_at_random_moments_never_leaves_a_bad_checkpoint(tmp_path):
    """Checkpoint every step, so a random kill often lands inside a checkpoint write."""
    run = tmp_path / "run"
    rng = random.Random(0)
    for trial in range(3):
        resume = ["--resume"] if runs.latest_checkpoint(run) else []
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        proc = subprocess.Popen([*_train_cmd(tmp_path, "train.ckpt_every=1", "train.max_steps=100000"), *resume],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        start = _latest_step(run)
        assert _wait_for(lambda: _latest_step(run) >= start + 2, proc=proc)
        time.sleep(rng.uniform(0.0, 0.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        complete = runs.list_checkpoints(run)
        assert complete
        for path in complete:                      # every complete-looking checkpoint loads
            weights, state, _ = ckpt.load_checkpoint(path)
            assert state["step"] == int(path.name.split("-")[1]) and set(weights) == {"G", "D", "G_ema"}
        records = _strict_jsonl(run / "metrics.jsonl")
        assert records and all("step" in r for r in records)
    # Resume continues from the newest complete checkpoint (interrupted writes are cleaned up).
    latest = runs.latest_checkpoint(run)
    step = int(latest.name.split("-")[1])
    r = subprocess.run([*_train_cmd(tmp_path, f"train.max_steps={step + 2}", "train.ckpt_every=1"), "--resume"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"resumed from {latest}" in r.stderr.replace("\n", "")
    assert runs.latest_checkpoint(run).name == f"step-{step + 2:07d}"
    assert not list((run / "checkpoints").glob(".*"))


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_ctrl_c_save_a_checkpoint_and_exit_cleanly(tmp_path, sig):
    run = tmp_path / "run"
    proc = subprocess.Popen(_train_cmd(tmp_path, "train.ckpt_every=1000", "train.max_steps=100000"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert _wait_for(lambda: (run / "metrics.jsonl").is_file() and (run / "metrics.jsonl").stat().st_size > 0,
                     proc=proc)
    t0 = time.time()
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=30)
    assert time.time() - t0 < 10, "took too long to stop"
    assert proc.returncode == (ExitCode.TERMINATED if sig == signal.SIGTERM else ExitCode.INTERRUPTED), out[-2000:]
    assert f"stopped by {sig.name}" in out
    latest = runs.latest_checkpoint(run)
    assert latest is not None
    last_logged = _strict_jsonl(run / "metrics.jsonl")[-1]["step"]
    assert int(latest.name.split("-")[1]) == last_logged     # nothing trained after the last checkpoint is lost
    if sig == signal.SIGTERM:   # a pre-empted job is requeued as it was: the same command continues the run
        proc = subprocess.Popen(_train_cmd(tmp_path, "train.ckpt_every=1000", "train.max_steps=100000"),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert _wait_for(lambda: _strict_jsonl(run / "metrics.jsonl")[-1]["step"] > last_logged, proc=proc)
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == ExitCode.TERMINATED, out[-2000:]
        assert f"resumed from {latest} at step {last_logged}" in out.replace("\n", "")
        assert _latest_step(run) > last_logged


@pytest.mark.slow
def test_dying_while_old_checkpoints_are_deleted_leaves_only_complete_ones(tmp_path, monkeypatch):
    trainer = train(tiny(tmp_path, "train.max_steps=2", "train.keep_ckpts=1"))
    real_rmtree = shutil.rmtree

    def die_midway(path, ignore_errors=False):
        if ".old-" not in Path(path).name:               # only the retention deletion dies
            return real_rmtree(path, ignore_errors=ignore_errors)
        first = sorted(Path(path).iterdir())[0]
        first.unlink()                                   # one file gone, then the process "dies"
        raise SystemExit("killed")

    trainer.train_iteration()
    monkeypatch.setattr(ckpt.shutil, "rmtree", die_midway)
    with pytest.raises(SystemExit):
        trainer.save_checkpoint()                        # step 3 written, deleting step 2 dies midway
    monkeypatch.setattr(ckpt.shutil, "rmtree", real_rmtree)
    complete = runs.list_checkpoints(trainer.run_dir)
    assert [p.name for p in complete] == ["step-0000003"]
    ckpt.load_checkpoint(complete[0])
    assert runs.remove_incomplete(trainer.run_dir)       # the half-deleted folder is swept at the next start
    assert not [p for p in (trainer.run_dir / "checkpoints").iterdir() if p.name.startswith(".")]


# ---------------------------------------------------------------------------------------------
# Disk full / unwritable


def test_low_disk_space_is_refused_before_training(tmp_path, monkeypatch):
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(ckpt.shutil, "disk_usage", lambda p: usage._replace(free=1024))
    with pytest.raises(SmallganError, match="MiB free"):
        Trainer(tiny(tmp_path))


def test_unwritable_run_folder_is_refused_before_training(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the run folder's parent should be")
    with pytest.raises(SmallganError, match="cannot write to the run folder"):
        Trainer(tiny(blocker))


@pytest.mark.slow
def test_failed_checkpoint_write_leaves_no_partial_checkpoint(tmp_path, monkeypatch):
    trainer = train(tiny(tmp_path, "train.max_steps=1"))
    good = runs.latest_checkpoint(trainer.run_dir)
    trainer.train_iteration()
    calls = {"n": 0}
    real_save = safetensors.torch.save_file

    def failing_save(tensors, path, metadata=None):
        calls["n"] += 1
        if calls["n"] == 2:  # the second file of the checkpoint: a write that fails midway
            Path(path).write_bytes(b"partial")
            raise OSError(28, "No space left on device")
        real_save(tensors, path, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", failing_save)
    with pytest.raises(SmallganError, match="No space left on device") as e:
        trainer.save_checkpoint()
    assert str(good) in str(e.value)
    assert runs.list_checkpoints(trainer.run_dir) == [good]
    assert not [p for p in (trainer.run_dir / "checkpoints").iterdir() if p.name.startswith(".")]
    ckpt.load_checkpoint(good)  # still whole


# ---------------------------------------------------------------------------------------------
# Bad recipes and options: one line, before heavy work


@pytest.mark.parametrize("override, words", [
    ("model.z_dim=30", ["model.z_dim", "32"]),
    ("model.g_attention=[48]", ["g_attention", "48"]),
    ("train.batch=0", ["train.batch", "> 0"]),     # any batch >= the processes is planned (plan_batches)
    ("train.diffaug=color,zoom", ["zoom"]),
])
def test_impossible_settings_name_the_problem(tmp_path, override, words):
    with pytest.raises(SmallganError) as e:
        Trainer(tiny(tmp_path, override))
    assert "\n" not in str(e.value) and all(w in str(e.value) for w in words)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusal")
def test_fp16_without_a_gpu_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        Trainer(tiny(tmp_path, "train.precision=fp16"))


# ---------------------------------------------------------------------------------------------
# Bad data


def _image_folder(root: Path, n: int, size: int = 40) -> Path:
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (size, size), (40 * i % 255, 100, 200)).save(root / f"img{i}.png")
    return root


def test_missing_dataset_path(tmp_path):
    with pytest.raises(SmallganError, match="does not exist"):
        Trainer(tiny(tmp_path, f"data.path={tmp_path / 'nowhere'}"))


def test_folder_without_images(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    with pytest.raises(SmallganError, match="no images"):
        Trainer(tiny(tmp_path, f"data.path={empty}"))


@pytest.mark.slow
def test_one_image_trains(tmp_path):
    folder = _image_folder(tmp_path / "one", 1)
    trainer = train(tiny(tmp_path, f"data.path={folder}", "train.max_steps=2"))
    assert trainer.counters.step == 2 and len(trainer.stream) == 1


@pytest.mark.slow
def test_dataset_at_another_resolution_is_resized_on_load(tmp_path):
    from data_tools.prepare import PrepareOptions, prepare

    folder = _image_folder(tmp_path / "imgs", 4, size=80)
    out = tmp_path / "prepared64"
    prepare(str(folder), out, PrepareOptions(resolution=64, workers=1))
    trainer = train(tiny(tmp_path, f"data.path={out}", "train.max_steps=1"))  # the recipe is 32 px
    assert trainer.stream.images.shape[-1] == 32


# ---------------------------------------------------------------------------------------------
# Bad checkpoints: refused with a message, nothing executes


def _checkpoint(tmp_path) -> Path:
    trainer = train(tiny(tmp_path, "train.max_steps=1", name="src"))
    return runs.latest_checkpoint(trainer.run_dir)


@pytest.mark.slow
def test_truncated_checkpoint_is_refused(tmp_path):
    path = _checkpoint(tmp_path)
    g = path / "G.safetensors"
    g.write_bytes(g.read_bytes()[: g.stat().st_size // 2])
    with pytest.raises(SmallganError, match="damaged"):
        ckpt.load_checkpoint(path)
    gen = path.parent.parent / "generator.safetensors"
    gen.write_bytes(gen.read_bytes()[:100])
    with pytest.raises(SmallganError, match="damaged"):
        load_generator(gen)


@pytest.mark.slow
def test_checkpoint_from_another_architecture_is_refused(tmp_path):
    path = _checkpoint(tmp_path)
    with pytest.raises(SmallganError, match="other model settings"):
        Trainer(tiny(tmp_path, "model.ch=8", name="src"), resume=str(path))
    # The generator export rebuilt against the wrong weights: a one-line mismatch error.
    cfg = tiny(tmp_path, "model.ch=8")
    from smallgan.registry import build_generator

    G = build_generator(cfg.model, n_classes=1)
    wrong = tmp_path / "wrong.safetensors"
    state = load_weights(path / "G_ema.safetensors")
    save_weights(wrong, state, {"format": "smallgan-generator", "format_version": "1",
                                "config": cfg.to_json(), "class_names": "[]", "step": "1"})
    with pytest.raises(SmallganError, match="does not match"):
        load_generator(wrong)
    del G


@pytest.mark.slow
def test_checkpoint_from_a_newer_format_is_refused(tmp_path):
    path = _checkpoint(tmp_path)
    state = torch.load(path / "state.pt", weights_only=True)
    state["format_version"] = ckpt.FORMAT_VERSION + 1
    torch.save(state, path / "state.pt")
    with pytest.raises(SmallganError, match="newer"):
        ckpt.load_checkpoint(path)


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['SMALLGAN_EXPLOIT_MARK']}",))


@pytest.mark.slow
def test_pickle_with_code_is_refused_and_never_runs(tmp_path, monkeypatch):
    path = _checkpoint(tmp_path)
    mark = tmp_path / "exploited"
    monkeypatch.setenv("SMALLGAN_EXPLOIT_MARK", str(mark))
    with open(path / "state.pt", "wb") as f:
        pickle.dump({"step": 1, "payload": _Exploit()}, f)
    torch.save({"step": 1, "payload": _Exploit()}, path / "state.pt")
    with pytest.raises(SmallganError, match="cannot be loaded safely"):
        ckpt.load_checkpoint(path)
    assert not mark.exists()


# ---------------------------------------------------------------------------------------------
# Long runs: no memory or file-descriptor growth


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
def test_memory_and_open_files_do_not_grow_with_steps(tmp_path):
    trainer = Trainer(tiny(tmp_path, "train.max_steps=50", "train.log_every=10", "train.sv_every=20",
                           "train.ckpt_every=100"))
    trainer.run()
    rss_50, fds_50 = _rss_mb(), len(os.listdir("/proc/self/fd"))
    trainer.cfg.train.max_kimg = 500 * trainer.images_per_step / 1000
    trainer.run()
    rss_500, fds_500 = _rss_mb(), len(os.listdir("/proc/self/fd"))
    assert trainer.counters.step == 500
    assert rss_500 - rss_50 < 40, (rss_50, rss_500)
    assert fds_500 <= fds_50
