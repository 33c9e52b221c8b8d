"""The training loop on CPU at tiny sizes: every property the training issue names, with failing assertions."""

import json
import os
import sys
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from safetensors.torch import load_file

from accumulation_check import accumulated_vs_full_gradient
from torchrun_retry import run_torchrun
from smallgan import checkpoint as ckpt
from smallgan import runs
from smallgan.sampling.export import load_generator
from smallgan.training.loop import Trainer, TrainingDiverged, train
from smallgan.training.stats import read_metrics
from tiny import TINY, states, tiny

TESTS = Path(__file__).parent


@pytest.mark.slow
def test_training_steps_change_weights_and_log_finite_losses(tmp_path):
    trainer = Trainer(tiny(tmp_path, "train.max_steps=4"))
    before = states(trainer)
    trainer.run()
    after = states(trainer)
    changed = [k for k in before if k.startswith(("G.", "D.")) and "original" in k and not torch.equal(before[k], after[k])]
    assert len(changed) > 10
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all(torch.isfinite(torch.tensor([r["d_loss"], r["g_loss"]])).all() for r in records)
    assert records[1]["sv_G_max"] > 0 and records[1]["sv_D_max"] > 0       # collapse signal logged
    run = tmp_path / "run"
    assert [p.name for p in runs.list_checkpoints(run)] == ["step-0000004"]
    assert (run / "generator.safetensors").is_file() and (run / "samples" / "step-0000004.png").is_file()
    # The EMA (started at step 2) is an average, not a copy of G.
    g_weights = [k for k in after if k.startswith("G.") and "original" in k]
    assert all(not torch.equal(after["EMA." + k[2:]], after[k]) for k in g_weights)


def test_accumulated_d_gradient_equals_full_batch_one_process():
    assert accumulated_vs_full_gradient(Accelerator(cpu=True), micro_batch=2) < 1e-5


@pytest.mark.slow
def test_accumulated_d_gradient_equals_full_batch_two_processes(tmp_path):
    _torchrun(TESTS / "dist_accumulation.py", str(tmp_path))
    diffs = [float((tmp_path / f"rank{r}.txt").read_text()) for r in (0, 1)]
    assert max(diffs) < 1e-5, diffs


@pytest.mark.slow
def test_resume_continues_the_same_trajectory(tmp_path):
    straight = train(tiny(tmp_path, "train.max_steps=6", name="straight"))
    first = train(tiny(tmp_path, "train.max_steps=3", name="resumed"))
    assert first.counters.step == 3
    second = train(tiny(tmp_path, "train.max_steps=6", name="resumed"), resume="latest")
    assert second.counters.step == 6
    a, b = states(straight), states(second)
    assert a.keys() == b.keys()
    mismatched = [k for k in a if not torch.equal(a[k], b[k])]
    assert not mismatched, mismatched[:5]
    # Without --resume an existing run is refused rather than overwritten.
    with pytest.raises(Exception, match="--resume"):
        Trainer(tiny(tmp_path, "train.max_steps=6", name="resumed"))


@pytest.mark.slow
def test_non_finite_steps_are_skipped_then_stop_the_run(tmp_path):
    trainer = Trainer(tiny(tmp_path, "train.max_steps=50", "train.max_bad_steps=3", "train.on_diverge=stop"))
    trainer.train_iteration()
    good_ckpt = trainer.save_checkpoint()
    files_before = {p.name: p.read_bytes() for p in good_ckpt.iterdir()}
    before = states(trainer)
    forward = trainer.D.forward
    trainer.D.forward = lambda x, y: forward(x, y) * float("nan")
    trainer.train_iteration()
    after = states(trainer)
    weights = [k for k in before if not k.startswith("EMA.") and "original" in k]
    assert all(torch.equal(before[k], after[k]) for k in weights)          # nothing poisoned
    counters = trainer.state.sync()
    assert counters.skipped_d == trainer.cfg.train.d_steps and counters.skipped_g == 1 and counters.bad_streak == 1
    with pytest.raises(TrainingDiverged, match="consecutive"):
        trainer.run()
    assert runs.list_checkpoints(trainer.run_dir) == [good_ckpt]            # last good checkpoint intact
    assert {p.name: p.read_bytes() for p in good_ckpt.iterdir()} == files_before


def test_a_batch_that_micro_batches_do_not_divide_is_rounded_not_cut_smaller(tmp_path):
    trainer = Trainer(tiny(tmp_path, "train.batch=10", "train.max_kimg=0.008"))  # micro_batch 4 does not divide 10
    assert (trainer.plan.batch, trainer.micro_batch, trainer.accumulation) == (8, 4, 2)   # not 2 x 5
    trainer.run()
    assert trainer.counters.real_seen == 8                                     # 8 real images per D step


@pytest.mark.slow
def test_torchrun_two_processes_with_tiny_cpu_as_shipped(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "smallgan.train", "--recipe", "tiny-cpu", "--data", "builtin:shapes", "--max-steps", "3",
           "--set", f"train.out_dir={tmp_path}"]
    r = run_torchrun(cmd, env, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "batch 16 = 8 x 1 accumulation x 2 process(es)" in r.stderr.replace("\n", "")
    assert runs.latest_checkpoint(tmp_path / "tiny-cpu").name == "step-0000003"


def test_checkpoint_holds_everything_needed(tmp_path):
    trainer = train(tiny(tmp_path, "train.max_steps=2"))
    weights, state, cfg = ckpt.load_checkpoint(runs.latest_checkpoint(trainer.run_dir))
    assert set(weights) == {"G", "D", "G_ema"}
    assert {"g_opt", "d_opt", "g_scaler", "d_scaler", "counters"} <= set(state)
    assert state["step"] == 2 and cfg == trainer.cfg
    assert any(k.endswith(".u") for k in weights["D"])                    # spectral-norm state persisted
    G = load_generator(trainer.run_dir, device="cpu").module
    z = torch.randn(2, G.z_dim)
    y = torch.zeros(2, dtype=torch.long)
    with torch.no_grad():
        assert torch.equal(G(z, y), trainer.sampling_generator()(z, y))   # the EMA, prepared for sampling


@pytest.mark.slow
def test_evaluation_during_training_keeps_the_best_generator(tmp_path):
    trainer = train(tiny(tmp_path, "train.max_steps=6", "train.eval_every=2", "eval.extractor=tiny", "eval.n=16",
                         "eval.batch_size=64", "eval.metrics=kid,fid", "eval.best=fid"))
    evals = [r for r in read_metrics(trainer.run_dir / "metrics.jsonl") if r.get("event") == "eval"]
    assert [r["step"] for r in evals] == [2, 4, 6]
    assert all(r["n_fake"] == 16 and r["fid"] >= 0 for r in evals)
    best = json.loads((trainer.run_dir / "best" / "best.json").read_text())
    winner = min(evals, key=lambda r: r["fid"])
    assert (best["step"], best["value"]) == (winner["step"], winner["fid"])
    G = load_generator(trainer.run_dir / "best", device="cpu").module
    assert G.resolution == 32
    # The tracker is part of the checkpoint: a resumed run does not forget its best.
    _, state, _ = ckpt.load_checkpoint(runs.latest_checkpoint(trainer.run_dir))
    assert state["best"]["best"]["fid"] == winner["fid"]


@pytest.mark.slow
def test_two_processes_end_identical_and_write_one_set_of_files(tmp_path):
    # With adaptive augmentation and LeCam: p and LeCam's averages come from r_t and outputs summed over both.
    _torchrun(TESTS / "dist_train.py", str(tmp_path), *TINY, "train.max_steps=3", "train.ckpt_every=2",
              "train.sample_every=2", "train.diffaug=translation", "train.ada_target=0.6", "train.augment_p=0",
              "train.ada_interval=1", "train.ada_kimg=0.1", "train.lecam=0.3")
    r0 = load_file(str(tmp_path / "rank0.safetensors"))
    r1 = load_file(str(tmp_path / "rank1.safetensors"))
    params = [k for k in r0 if "original" in k or k.endswith(("weight", "bias", "gamma"))]
    assert params and all(torch.equal(r0[k], r1[k]) for k in params)
    assert torch.equal(r0["ADA.p"], r1["ADA.p"]) and torch.equal(r0["LeCam.ema"], r1["LeCam.ema"])
    run = tmp_path / "ddp"
    assert [p.name for p in runs.list_checkpoints(run)] == ["step-0000002", "step-0000003"]
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["latest.png", "step-0000002.png", "step-0000003.png"]
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [1, 2, 3]   # one writer
    assert not [p for p in run.rglob("*") if ".tmp" in p.name]


def _torchrun(script: Path, *args: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(TESTS)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script), *args]
    r = run_torchrun(cmd, env, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


@pytest.mark.slow
def test_activation_checkpointing_gives_the_same_updates(tmp_path):
    plain = train(tiny(tmp_path, "train.max_steps=3", name="plain"))
    recomputed = train(tiny(tmp_path, "train.max_steps=3", "train.activation_checkpointing=true", name="ckpt"))
    a, b = states(plain), states(recomputed)
    params = [k for k in a if "original" in k or k.endswith(("weight", "bias", "gamma"))]
    assert params and all(torch.allclose(a[k], b[k], atol=1e-6) for k in params)


def test_compile_falls_back_with_a_note_when_no_compiler(tmp_path, monkeypatch, capsys):
    import smallgan.training.speed as speed

    monkeypatch.setattr(speed, "compiler_unavailable", lambda device: "no C++ compiler found (install g++)")
    trainer = train(tiny(tmp_path, "train.max_steps=1", "train.compile=true", "train.channels_last=true"))
    assert trainer.counters.step == 1
    assert "training without compilation" in capsys.readouterr().err
    assert trainer.G._compiled_call_impl is None


def test_no_host_sync_in_the_training_step(tmp_path):
    """Skip counters live on the device and are read at log intervals only."""
    trainer = Trainer(tiny(tmp_path, "train.max_steps=5"))
    calls = []
    original = torch.Tensor.item

    def counting_item(self):
        calls.append(1)
        return original(self)

    torch.Tensor.item = counting_item
    try:
        for _ in range(3):
            trainer.train_iteration()
    finally:
        torch.Tensor.item = original
    assert not calls
    assert trainer.state.sync().skipped_d == 0
