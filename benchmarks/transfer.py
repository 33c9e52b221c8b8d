"""Transfer benchmark: does a run started from pretrained weights (`train --init`) learn a few images of new
classes better than one trained from scratch, at the same budget?

The fine-tuning use case at CPU size, on scikit-learn's handwritten digits (no download): a tiny-cpu BigGAN is
trained on every image of the digits 0-4 (the "pretrained" run); then the digits 5-9, new classes, are learned
from `--images` of their images with the finetune32 recipe, from scratch and from the pretrained run ("init":
with FreezeD as the recipe has it; "init+g_norm": also train.finetune=g_norm), for the same steps and seed.
Every variant is scored by benchmarks/quality.py against all real images of 5-9: class accuracy and feature
distance. The figures of docs/fine-tuning.md:

    python -m benchmarks.transfer --pretrain-steps 1200 --steps 600 --images 100 \
        --json benchmarks/results/transfer-digits-600steps.json
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import torch

from benchmarks import quality
from benchmarks.common import stamp, write_json
from data_tools.builtin import render_digit
from smallgan.config import load_config
from smallgan.training.loop import train

VARIANTS = {   # name -> overrides of finetune32 for the target run
    "scratch": ["train.freeze_d=0"],
    "init": ["train.init={pretrained}"],
    "init+g_norm": ["train.init={pretrained}", "train.finetune=g_norm"],
}


def write_digit_folders(root: Path, resolution: int) -> tuple[Path, Path]:
    """Digits 0-4 and 5-9 as two image folders, one sub-folder per class (as `smallgan prepare` reads them)."""
    source, target = root / "digits-0to4", root / "digits-5to9"
    if not target.is_dir():
        for i in range(1797):
            image, label = render_digit(i, resolution)
            folder = (source if label < 5 else target) / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            image.save(folder / f"{i:04d}.png")
    return source, target


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="runs/transfer-bench", help="folder for the image folders and runs")
    ap.add_argument("--pretrain-steps", type=int, default=1600, help="G steps of the pretrained run (digits 0-4)")
    ap.add_argument("--steps", type=int, default=800, help="G steps of each target run (digits 5-9)")
    ap.add_argument("--images", type=int, default=100, help="training images of the new classes")
    ap.add_argument("--points", type=int, default=4, help="evaluations along each target run")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of: {', '.join(VARIANTS)}")
    ap.add_argument("--train-seed", type=int, default=0, help="train.seed of the target runs (the same 100 images)")
    ap.add_argument("--json", help="write all figures to this file")
    args = ap.parse_args(argv)

    work = Path(args.work)
    source, target = write_digit_folders(work / "data", resolution=32)
    pretrained = work / "pretrained"
    if not (pretrained / "checkpoints").is_dir():
        cfg = load_config("tiny-cpu", [f"data.path={source}", f"train.max_steps={args.pretrain_steps}",
                                       f"train.out_dir={work}", "train.name=pretrained", "train.sample_every=0"])
        train(cfg, overwrite=True)
    results = {"machine": f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}",
               "pretrain_steps": args.pretrain_steps, "steps": args.steps, "images": args.images,
               "train_seed": args.train_seed, "variants": {}}
    for name in args.variants.split(","):
        sets = [s.format(pretrained=pretrained) for s in VARIANTS[name]] + [f"train.seed={args.train_seed}"]
        print(f"\n== {name}: finetune32 {' '.join(sets)}", flush=True)
        run_args = ["--data", str(target), "--recipe", "finetune32", "--minutes", "0", "--steps", str(args.steps),
                    "--points", str(args.points), "--max-images", str(args.images)]
        for s in sets:
            run_args += ["--set", s]
        results["variants"][name] = quality.main(run_args)
    print(f"\n{'variant':<14} {'class acc':>9} {'distance':>9}   (digits 5-9 from {args.images} images, "
          f"{args.steps} steps)")
    for name, r in results["variants"].items():
        print(f"{name:<14} {r['final']['class_acc']:>9.3f} {r['final']['fd']:>9.2f}")
    if args.json:
        write_json(args.json, results, stamp("transfer", argv))
    return results


if __name__ == "__main__":
    main()
