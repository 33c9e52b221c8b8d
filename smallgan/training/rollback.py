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
from typing import Any

from smallgan import checkpoint as ckpt
from smallgan.errors import TrainingDiverged
from smallgan.training.events import Reporter
from smallgan.training.stats import MetricsLog

ABANDONED_FILE = "metrics-abandoned.jsonl"   # records of rolled-back iterations, beside metrics.jsonl


def checkpoint_before(run_dir: Path, step: int) -> Path | None:
    """The newest complete checkpoint at or before `step`."""
    found = [p for p in ckpt.list_checkpoints(run_dir) if int(p.name.split("-")[1]) <= step]
    return found[-1] if found else None


class Recovery:
    """What one Trainer does when its Reporter raises TrainingDiverged (`trainer`: the loop's Trainer, which
    imports this module)."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer

    def recover(self, diverged: TrainingDiverged, report: Reporter) -> None:
        """Roll back and return (the loop goes on from the checkpoint), or raise TrainingDiverged."""
        tr = self.trainer
        t, c = tr.cfg.train, tr.state.counters        # counters were synced by the check that raised
        if t.on_diverge != "rollback":
            raise diverged
        diverged_at, streak, done = c.step, c.bad_streak, c.rollbacks
        last_good = diverged_at - streak               # the iterations after it were all skipped
        target = checkpoint_before(tr.run_dir, last_good)
        if done >= t.max_rollbacks or target is None:
            why = (f"after {done} rollback(s) (train.max_rollbacks={t.max_rollbacks})" if target is not None else
                   f"with no checkpoint at or before step {last_good} to roll back to (train.ckpt_every)")
            raise TrainingDiverged(
                f"diverged at step {diverged_at} ({streak} non-finite steps in a row) {why}; stopped. "
                f"Last good checkpoint: {ckpt.latest_checkpoint(tr.run_dir) or 'none'}. Lower train.g_lr and "
                "train.d_lr, or use train.precision=bf16 instead of fp16"
            ) from None
        tr.accelerator.wait_for_everyone()
        restored_rollbacks = self._load(target)
        c.rollbacks = done + 1
        # The rates in the checkpoint were lowered once per rollback before it: lower them to this retry's.
        factor = t.rollback_lr_factor ** (c.rollbacks - restored_rollbacks)
        for opt in (tr.parts.g_opt, tr.parts.d_opt):
            for group in opt.param_groups:
                group["lr"] = group["lr"] * factor
        tr._sampling_step = -1                          # its cached EMA generator is of the abandoned tail
        report.rewound()
        lr_scale = t.rollback_lr_factor ** c.rollbacks
        if report.log is not None:
            self._rewind_log(report.log, c.step, c.rollbacks)
            report.log.write({"event": "rollback", "step": c.step, "from_step": diverged_at, "bad_steps": streak,
                              "rollback": c.rollbacks, "max_rollbacks": t.max_rollbacks, "checkpoint": str(target),
                              "lr_scale": lr_scale})
        if tr.is_main:
            tr.console.print(
                f"[yellow]diverged[/] at step {diverged_at} ({streak} non-finite steps in a row): rollback "
                f"{c.rollbacks}/{t.max_rollbacks} to {target}, new seeds, learning rates x {lr_scale:g}")
        tr.accelerator.wait_for_everyone()

    def _load(self, target: Path) -> int:
        """Restore `target` into the running Trainer; returns the rollbacks counted when it was saved."""
        tr = self.trainer
        held = tr.state.counters                        # the loop and the Reporter hold this object
        elapsed = held.elapsed                          # wall time spent stays spent
        tr.restore_fewshot(tr.state.load(target, tr.cfg.model))   # p and LeCam's anchors of before the trouble
        vars(held).update(vars(tr.state.counters))
        tr.state.counters = held
        restored = held.rollbacks
        held.elapsed = elapsed
        return restored

    def _rewind_log(self, log: MetricsLog, step: int, rollback: int) -> None:
        dropped = log.rewind(step)
        if dropped:
            abandoned = MetricsLog(log.path.with_name(ABANDONED_FILE))
            for record in dropped:
                abandoned.write({**record, "rollback": rollback})
            abandoned.close()
