"""Run under torchrun with 2 processes by tests/test_multiprocess_faults.py: trains (resuming when asked) like
`smallgan train`, then dumps this rank's weights and counters, so the test can check that the ranks agree.

    dist_faults.py OUT_DIR new|resume|diverge [section.key=value ...]

diverge: a new run whose D outputs NaN in iterations 5 and 6 of the first try (as tests/test_rollback.py
does in one process), so that both processes must roll back together.
"""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from smallgan.config import load_config
from smallgan.exit_codes import ExitCode
from smallgan.training.loop import Trainer


def main() -> None:
    out_dir, mode = Path(sys.argv[1]), sys.argv[2]
    cfg = load_config("tiny-cpu", [f"train.out_dir={out_dir}", "train.name=run", *sys.argv[3:]])
    trainer = Trainer(cfg, resume="latest" if mode == "resume" else None)
    if mode == "diverge":
        forward = trainer.D.forward
        first_try = lambda c: c.step >= 4 and c.rollbacks == 0                    # noqa: E731
        trainer.D.forward = lambda x, y: forward(x, y) * (float("nan") if first_try(trainer.counters) else 1.0)
    trainer.run()
    weights = {f"G.{k}": v for k, v in trainer.G.state_dict().items()}
    weights.update({f"D.{k}": v for k, v in trainer.D.state_dict().items()})
    save_file({k: v.contiguous() for k, v in weights.items()}, str(out_dir / f"rank{trainer.accelerator.process_index}.safetensors"))
    # What this worker exits with, as `smallgan train` decides it (torchrun does not report it after a SIGTERM).
    code = ExitCode.TERMINATED if trainer.stopping and trainer.stopping.signal == "SIGTERM" else ExitCode.FINISHED
    (out_dir / f"rank{trainer.accelerator.process_index}.json").write_text(json.dumps({**vars(trainer.counters), "exit_code": code}))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()   # gloo's threads left running at exit can abort the process
    sys.exit(code)


if __name__ == "__main__":  # worker pools may re-import this file
    main()
