"""Run under torchrun with 2 processes: prints this rank's max gradient difference, without and with LeCam
(see accumulation_check)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402
from accelerate import Accelerator  # noqa: E402

from accumulation_check import accumulated_vs_full_gradient  # noqa: E402


def main() -> None:
    acc = Accelerator(cpu=True)
    assert acc.num_processes == 2, acc.num_processes
    diff = max(accumulated_vs_full_gradient(acc), accumulated_vs_full_gradient(acc, lecam=0.3))
    out = Path(sys.argv[1])
    out.joinpath(f"rank{acc.process_index}.txt").write_text(repr(diff))
    torch.distributed.destroy_process_group()   # gloo's threads left running at exit can abort the process


if __name__ == "__main__":  # worker pools may re-import this file
    main()
