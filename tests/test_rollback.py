"""Divergence recovery (train.on_diverge = "rollback", training/rollback.py): a forced divergence (D's outputs
made NaN from a given step) rolls back to the newest checkpoint before it and retries with other seeds."""

import pytest
import torch

from smallgan import checkpoint as ckpt
from smallgan import runs
from smallgan.config import load_config
from smallgan.training.loop import Trainer, TrainingDiverged, train
from smallgan.training.rollback import ABANDONED_FILE
from smallgan.training.stats import read_metrics
from tiny import TINY_BASE

TINY = [*TINY_BASE, "train.batch=4", "train.d_steps=1", "train.log_every=1", "train.sv_every=2",
        "train.max_bad_steps=2"]


def tiny(tmp_path, name, *extra):
    return load_config("tiny-cpu", [*TINY, f"train.out_dir={tmp_path}", f"train.name={name}", *extra])


def poison(trainer, when):
    """D's outputs become NaN in the iterations where when(counters) holds: the non-finite streak of a
    diverging run, without waiting for one."""
    forward = trainer.D.forward

    def maybe_nan(x, y):
        out = forward(x, y)
        return out * float("nan") if when(trainer.counters) else out

    trainer.D.forward = maybe_nan
    return trainer


def training_records(run_dir):
    return [r for r in read_metrics(run_dir / "metrics.jsonl") if "event" not in r]


@pytest.mark.slow
def test_a_diverged_run_rolls_back_retries_with_new_seeds_and_resumes_exactly(tmp_path):
    # (A checkpoint costs far more than these tiny steps: only the needed ones are written.)
    straight = train(tiny(tmp_path, "straight", "train.max_steps=5", "train.ckpt_every=100"))
    # Iterations 5 and 6 diverge on the first try only: the streak of 2 is seen at step 6, back to step-4.
    first_try = lambda c: c.step >= 4 and c.rollbacks == 0                        # noqa: E731
    retry = ["train.rollback_lr_factor=1", "train.ckpt_every=4"]                  # only new seeds
    rolled = poison(Trainer(tiny(tmp_path, "rolled", "train.max_steps=8", *retry)), first_try)
    rolled.run()
    assert (rolled.counters.step, rolled.counters.rollbacks) == (8, 1)
    records = read_metrics(rolled.run_dir / "metrics.jsonl")
    steps = [r["step"] for r in records]
    assert steps == sorted(steps)                                                 # never out of order
    assert [r["step"] for r in training_records(rolled.run_dir)] == list(range(1, 9))   # each step once
    events = [r for r in records if r.get("event") == "rollback"]
    assert [(e["step"], e["from_step"], e["rollback"]) for e in events] == [(4, 6, 1)]
    abandoned = read_metrics(rolled.run_dir / ABANDONED_FILE)
    assert [r["step"] for r in abandoned] == [5] and all(r["rollback"] == 1 for r in abandoned)

    # Up to the checkpoint the same trajectory as the run that never diverged; after it, other seeds.
    a, b = training_records(straight.run_dir), training_records(rolled.run_dir)
    assert [r["d_loss"] for r in a[:4]] == [r["d_loss"] for r in b[:4]]
    assert a[4]["d_loss"] != b[4]["d_loss"]

    # The retry is checkpointed: a resumed run seeds its iterations with the same retry count and rates.
    resumed = Trainer(tiny(tmp_path, "rolled", "train.max_steps=9", *retry), resume="latest")
    assert (resumed.counters.step, resumed.counters.rollbacks) == (8, 1)
    assert all(torch.equal(v, resumed.G.state_dict()[k]) for k, v in rolled.G.state_dict().items())


@pytest.mark.slow
def test_after_max_rollbacks_the_run_stops_with_its_checkpoints_intact(tmp_path):
    trainer = poison(Trainer(tiny(tmp_path, "run", "train.max_steps=20", "train.max_rollbacks=2",
                                   "train.ckpt_every=2")),
                     lambda c: c.step >= 2)                                        # diverges on every try
    with pytest.raises(TrainingDiverged, match=r"after 2 rollback\(s\) \(train.max_rollbacks=2\)"):
        try:
            trainer.run()
        finally:
            good = runs.list_checkpoints(trainer.run_dir)
    assert [p.name for p in good] == ["step-0000002"]                              # nothing saved after trouble
    ckpt.load_checkpoint(good[0])
    assert trainer.counters.rollbacks == 2
    # Learning rates x 0.5 per rollback (the default train.rollback_lr_factor), compounded.
    assert trainer.state.g_opt.param_groups[0]["lr"] == pytest.approx(trainer.cfg.train.g_lr * 0.25)
    events = [r for r in read_metrics(trainer.run_dir / "metrics.jsonl") if r.get("event") == "rollback"]
    assert [(e["step"], e["rollback"], e["lr_scale"]) for e in events] == [(2, 1, 0.5), (2, 2, 0.25)]

    # No checkpoint from before the trouble: stops at once, saying why.
    early = poison(Trainer(tiny(tmp_path, "early", "train.max_steps=20", "train.ckpt_every=100")),
                   lambda c: True)
    with pytest.raises(TrainingDiverged, match="no checkpoint at or before step 0"):
        early.run()
