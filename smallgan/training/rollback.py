"""Divergence recovery (train.on_diverge = "rollback").

Resuming a diverged run replays the same trajectory into the same divergence: every random draw of an
iteration derives from (seed, rank, step). So a rollback reloads the newest checkpoint from before the trouble
and changes what a retry must change: ``Counters.rollbacks`` grows by one and enters the seed of every
iteration (other latents, flips, augmentation; the real images keep their order, so every epoch stays a
permutation), and the learning rates are multiplied by train.rollback_lr_factor. Both live in the checkpoints
that follow (the counter in state.pt, the rates in the optimisers' state), so a resumed run continues the
retry exactly. metrics.jsonl is cut back to the checkpoint's step and gets a ``rollback`` event; the abandoned
records move to metrics-abandoned.jsonl. After train.max_rollbacks rollbacks the run stops (exit 3) with its
checkpoints untouched: nothing is saved once it has diverged.

The trigger is the non-finite streak of events.py (train.max_bad_steps skipped iterations in a row): every
process reads the same streak at the same log interval (gradients are all-reduced before the check), so all
of them roll back together, to the same checkpoint, without exchanging a message.
"""

from __future__ import annotations

from pathlib import Path

from smallgan import runs
from smallgan.config import Config
from smallgan.errors import TrainingDiverged
from smallgan.training.state import TrainState, load_checkpoint
from smallgan.training.stats import MetricsLog

ABANDONED_FILE = "metrics-abandoned.jsonl"   # records of rolled-back iterations, beside metrics.jsonl


def rollback(state: TrainState, diverged: TrainingDiverged, cfg: Config, run_dir: Path,
             log: MetricsLog | None) -> str:
    """Roll `state` back to the newest checkpoint before the trouble and return the line that says so (the
    loop goes on from there), or raise TrainingDiverged. Every process calls it (the counters were synced by
    the check that raised)."""
    t, c = cfg.train, state.counters
    if t.on_diverge != "rollback":
        raise diverged
    diverged_at, streak, done = c.step, c.bad_streak, c.rollbacks
    last_good = diverged_at - streak               # the iterations after it were all skipped
    target = runs.checkpoint_before(run_dir, last_good)
    if done >= t.max_rollbacks or target is None:
        why = (f"after {done} rollback(s) (train.max_rollbacks={t.max_rollbacks})" if target is not None else
               f"with no checkpoint at or before step {last_good} to roll back to (train.ckpt_every_kimg)")
        raise TrainingDiverged(
            f"diverged at step {diverged_at} ({streak} non-finite steps in a row) {why}; stopped. "
            f"Last good checkpoint: {runs.latest_checkpoint(run_dir) or 'none'}. Lower train.g_lr and "
            "train.d_lr, or use train.precision=bf16 instead of fp16"
        ) from None
    state.accelerator.wait_for_everyone()
    # Wall time spent stays spent, and the best evaluation (exported to best/ already) stays the best.
    elapsed, best = c.elapsed, state.best.state_dict()
    load_checkpoint(state, target, cfg.model, same_data=False)   # p and LeCam's anchors of before the trouble
    state.best.load_state_dict(best)
    c = state.counters
    restored_rollbacks, c.rollbacks, c.elapsed = c.rollbacks, done + 1, elapsed
    # The rates in the checkpoint were lowered once per rollback before it: lower them to this retry's.
    factor = t.rollback_lr_factor ** (c.rollbacks - restored_rollbacks)
    for opt in (state.g_opt, state.d_opt):
        for group in opt.param_groups:
            group["lr"] = group["lr"] * factor
    lr_scale = t.rollback_lr_factor ** c.rollbacks
    if log is not None:
        _rewind_log(log, c.step, c.rollbacks)
        log.write({"event": "rollback", "step": c.step, "from_step": diverged_at, "bad_steps": streak,
                   "rollback": c.rollbacks, "max_rollbacks": t.max_rollbacks, "checkpoint": str(target),
                   "lr_scale": lr_scale})
    state.accelerator.wait_for_everyone()
    return (f"[yellow]diverged[/] at step {diverged_at} ({streak} non-finite steps in a row): rollback "
            f"{c.rollbacks}/{t.max_rollbacks} to {target}, new seeds, learning rates x {lr_scale:g}")


def _rewind_log(log: MetricsLog, step: int, rollback: int) -> None:
    dropped = log.rewind(step)
    if dropped:
        abandoned = MetricsLog(log.path.with_name(ABANDONED_FILE))
        for record in dropped:
            abandoned.write({**record, "rollback": rollback})
        abandoned.close()
