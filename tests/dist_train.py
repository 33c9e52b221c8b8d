"""Run under torchrun with 2 processes: trains a tiny run, then dumps this rank's weights for comparison."""

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from smallgan.config import load_config
from smallgan.training.loop import train


def main() -> None:
    out_dir = Path(sys.argv[1])
    cfg = load_config("tiny-cpu", [f"train.out_dir={out_dir}", "train.name=ddp", *sys.argv[2:]])
    trainer = train(cfg)
    assert trainer.accelerator.num_processes == 2, trainer.accelerator.num_processes
    rank = trainer.accelerator.process_index
    weights = {f"G.{k}": v for k, v in trainer.G.state_dict().items()}
    weights.update({f"D.{k}": v for k, v in trainer.D.state_dict().items()})
    weights.update({f"EMA.{k}": v for k, v in trainer.ema.state_dict().items()})
    weights["ADA.p"] = trainer.state.ada.p.reshape(1)   # the augmentation probability: one value on every process
    if trainer.state.lecam is not None:
        weights["LeCam.ema"] = trainer.state.lecam.ema
    save_file({k: v.contiguous() for k, v in weights.items()}, str(out_dir / f"rank{rank}.safetensors"))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()   # gloo's threads left running at exit can abort the process


if __name__ == "__main__":  # worker pools may re-import this file
    main()
