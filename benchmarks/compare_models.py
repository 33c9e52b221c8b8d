"""BigGAN against FastGAN on one data set, at the same CPU budget: the table of docs/biggan-vs-fastgan.md.

    OMP_NUM_THREADS=1 python -m benchmarks.compare_models --data builtin:photos --cpu-minutes 5 \\
        --json benchmarks/results/compare-photos-5min.json --grid docs/compare-photos.png

Both models train unconditionally (``model.n_classes=1``; FastGAN has no classes) at 64 px (FastGAN's smallest
size) on the quality benchmark's training split, each in its own process on one thread, until it has used
``--cpu-minutes`` of *CPU time* (``time.process_time``, training iterations only). CPU time, unlike wall time,
barely moves when other programs share the machine, so the two models get the same quiet-CPU budget even when
they run side by side on a busy one; the steps each reached are printed, and ``--steps B,F`` reruns exactly those.

Every figure is measured in the quality benchmark's judge features (``benchmarks/quality.py``: a small CNN
trained here on the real images' labels: the digit, or for the photographs the photograph a crop comes from):

- feature distance (Frechet) to the training split, at the held-out split's size;
- precision and recall (Kynkaanniemi et al. 2019, k = 3) against the training split, at that same size;
- spread ratio: sqrt(trace(cov)) of the samples over that of the training split, in the quality benchmark's
  pixel PCA space (``benchmarks/variety.py``: the issue-#24 variety measure, here over the whole set);
- memorisation share (``smallgan eval --metrics memorization``'s check, in 32-px pixels): the share of samples
  nearer a training image than 5 % of training images are to another;
- img/s (real images through D per CPU-second, one thread), G and D parameters, steps and kimg.

Calibration rows: held-out real images (what a generator of new images would score), copies of training images
(a generator that memorised its data: fine feature distance and recall, memorisation share 1) and uniform noise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import SRC, stamp, write_json
from benchmarks.quality import build_reference, feature_distance, few_shot_subset, held_out_split, judge_outputs
from benchmarks.variety import pixels
from smallgan.config import load_config
from smallgan.data import load_prepared

RESOLUTION = 64          # FastGAN's smallest
HOLDOUT = 0.25           # the quality benchmark's split
# The repository's small CPU recipes as they are (no other settings were searched at this budget: see the doc).
MODELS: dict[str, tuple[str, list[str]]] = {
    "biggan": ("tiny-cpu", [f"model.resolution={RESOLUTION}", "model.z_dim=80"]),   # 5 chunks of 16 at 64 px
    "fastgan": ("fastgan-tiny64", []),
}
MEMO_SAMPLES = 500       # samples in the memorisation check
PR_REPEATS = 5           # seeded subsample draws averaged in precision/recall
TRAINED_FILE = "compare-train.json"   # a child's training figures, beside its run
PER_CLASS = 100          # the quality benchmark's per-class set size (its per-class calibration; not shown here)


def config_for(model: str, data: str, out_dir: str, seed: int, extra: list[str]):
    recipe, sets = MODELS[model]
    return load_config(recipe, [f"data.path={data}", f"train.out_dir={out_dir}", f"train.name={model}",
                                f"train.seed={seed}", "model.n_classes=1", "train.sample_every=0",
                                "train.ckpt_every=0", "train.log_every=0", *sets, *extra])


# ---------------------------------------------------------------------------------------------
# One model's training, in its own process (one thread).


def train_child(args: argparse.Namespace) -> None:
    from smallgan.data import resolve_dataset
    from smallgan.io import atomic_write_text
    from smallgan.training.loop import Trainer

    torch.set_num_threads(1)
    cfg = config_for(args.child, args.data, args.out_dir, args.seed, args.sets.get(args.child, []))
    data_path = resolve_dataset(cfg.data.path, RESOLUTION)
    data = load_prepared(data_path)
    n_train = len(held_out_split(len(data), len(data.class_names), HOLDOUT, args.seed)[1])
    subset = few_shot_subset(data_path, RESOLUTION, n_train, HOLDOUT, args.seed)
    subset.labels = torch.zeros_like(subset.labels)
    trainer = Trainer(cfg, overwrite=True, dataset=subset)
    budget, steps, spent = args.cpu_minutes * 60, args.child_steps, 0.0
    while (trainer.counters.step < steps) if steps else (spent < budget):
        t0 = time.process_time()
        losses = trainer.train_iteration()
        float(losses["g_loss"])   # wait for the step (a no-op on a CPU)
        spent += time.process_time() - t0
    trainer.save_checkpoint()
    # What `smallgan compare`, `smallgan eval` and `smallgan sample` read beside the exported generator.
    atomic_write_text(trainer.run_dir / "config.json", trainer.cfg.to_json())
    images = trainer.counters.step * trainer.images_per_step
    result = {"model": args.child, "run": str(trainer.run_dir), "steps": trainer.counters.step,
              "kimg": round(images / 1000, 1), "cpu_seconds": round(spent, 1), "img_s": round(images / spent, 1),
              "train_images": n_train}
    atomic_write_text(trainer.run_dir / TRAINED_FILE, json.dumps(result))   # for --score-only
    print("RESULT " + json.dumps(result), flush=True)


def train_both(args: argparse.Namespace) -> dict[str, dict]:
    """Both children at once (one thread each); their RESULT lines."""
    procs = {}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    for i, model in enumerate(MODELS):
        cmd = [sys.executable, "-m", "benchmarks.compare_models", "--child", model, "--data", args.data,
               "--out-dir", args.out_dir,
               "--seed", str(args.seed), "--cpu-minutes", str(args.cpu_minutes),
               "--child-steps", str(args.steps[i] if args.steps else 0)]
        cmd += [x for s in args.sets.get(model, []) for x in (f"--set-{model}", s)]
        procs[model] = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    out = {}
    for model, p in procs.items():
        stdout, _ = p.communicate()
        lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
        if p.returncode or not lines:
            sys.exit(f"training {model} failed (exit {p.returncode}); see its messages above")
        out[model] = json.loads(lines[-1][len("RESULT "):])
    return out


# ---------------------------------------------------------------------------------------------
# Scoring: the same figures for each model and each calibration row.


def memorised_share(images: torch.Tensor, train_images: torch.Tensor) -> float:
    from smallgan.metrics.evaluate import tensor_sample_fn
    from smallgan.metrics.features import PixelExtractor
    from smallgan.metrics.memorization import memorization_check

    result = memorization_check(tensor_sample_fn(images, seed=None), len(images), train_images, PixelExtractor())
    return result["memorized"]


def spread(images: torch.Tensor, ref) -> float:
    from smallgan.metrics.precision_recall import feature_spread

    return feature_spread(ref.variety.pca(pixels(images)))


def figures(images: torch.Tensor, ref, train_images: torch.Tensor, seed: int) -> dict:
    from smallgan.metrics.precision_recall import precision_recall

    _, feats = judge_outputs(ref.judge, images)
    pick = np.random.default_rng(seed).permutation(len(feats))[: ref.n]
    precision, recall = precision_recall(ref.real_features, feats, size=ref.n, repeats=PR_REPEATS, seed=seed)
    return {"fd": feature_distance(feats[pick], ref.real_features), "precision": precision, "recall": recall,
            "spread": spread(images, ref) / spread(train_images, ref),
            "memorized": memorised_share(images, train_images)}


def calibration_rows(data, ref, test: torch.Tensor, train: torch.Tensor, seed: int) -> dict[str, dict]:
    g = torch.Generator().manual_seed(seed)
    train_images = data.images[train]
    copies = train_images[torch.randint(0, len(train), (MEMO_SAMPLES,), generator=g)]
    noise = torch.randint(0, 256, (MEMO_SAMPLES, *data.images.shape[1:]), dtype=torch.uint8, generator=g)
    return {"real (held out)": figures(data.images[test], ref, train_images, seed),
            "copies of training images": figures(copies, ref, train_images, seed),
            "noise": figures(noise, ref, train_images, seed)}


def model_row(trained: dict, ref, train_images: torch.Tensor, seed: int) -> tuple[dict, torch.Tensor]:
    from smallgan.compare import sample_grid, summarise_run
    from smallgan.sampling import load_generator

    G = load_generator(trained["run"], device="cpu")
    torch.manual_seed(seed)   # FastGAN's per-pixel noise
    images = G.sample(max(MEMO_SAMPLES, ref.n), seed=seed + 1000)
    summary = summarise_run(Path(trained["run"]), G, n_classes=1)
    row = {**trained, "model_label": summary.model, "g_params": summary.g_params, "d_params": summary.d_params,
           **figures(images, ref, train_images, seed)}
    return row, sample_grid(G, 32, seed, RESOLUTION)


def markdown(result: dict) -> str:
    head = ["row", "feature distance", "precision", "recall", "spread", "memorised", "steps", "kimg",
            "img/s (1 thread)", "G params", "D params"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def line(name: str, r: dict) -> str:
        def params(v):
            return "" if v is None else f"{v / 1e6:.2f}M" if v >= 1e6 else f"{v / 1e3:.0f}k"

        cells = [name, f"{r['fd']:.2f}", f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['spread']:.2f}",
                 f"{r['memorized']:.3f}",
                 str(r.get("steps", "")), str(r.get("kimg", "")), str(r.get("img_s", "")),
                 params(r.get("g_params")), params(r.get("d_params"))]
        return "| " + " | ".join(cells) + " |"

    lines += [line(f"**{m}** ({r['model_label']})", r) for m, r in result["models"].items()]
    lines += [line(f"_{name}_", r) for name, r in result["calibration"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="builtin:photos", help="builtin:photos, builtin:digits or a labelled folder")
    ap.add_argument("--cpu-minutes", type=float, default=5.0, help="training CPU time of each model (one thread)")
    ap.add_argument("--steps", type=lambda s: [int(v) for v in s.split(",")],
                    help="B,F: train BigGAN B steps and FastGAN F steps instead of a CPU budget")
    ap.add_argument("--out-dir", default="runs/compare", help="where the two runs are written")
    ap.add_argument("--set-biggan", action="append", default=[], help="extra config override for BigGAN")
    ap.add_argument("--set-fastgan", action="append", default=[], help="extra config override for FastGAN")
    ap.add_argument("--score-only", action="store_true",
                    help="score the runs a previous call trained in --out-dir instead of training again")
    ap.add_argument("--judge-steps", type=int, default=1200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write every figure to this file")
    ap.add_argument("--grid", help="write both models' samples side by side to this PNG")
    ap.add_argument("--child", choices=list(MODELS), help=argparse.SUPPRESS)
    ap.add_argument("--child-steps", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.sets = {"biggan": args.set_biggan, "fastgan": args.set_fastgan}
    args.argv = sys.argv[1:] if argv is None else argv
    if args.child:
        train_child(args)
        return {}
    args.out_dir = str(Path(args.out_dir) / args.data.replace(":", "-").replace("/", "-"))
    return compare(args)


def compare(args: argparse.Namespace) -> dict:
    from smallgan.sampling import side_by_side

    from smallgan.data import resolve_dataset

    t0 = time.perf_counter()
    resolve_dataset(args.data, RESOLUTION)   # prepared here once, not by both children at the same time
    if args.score_only:
        trained = {m: json.loads((Path(args.out_dir) / m / TRAINED_FILE).read_text()) for m in MODELS}
    else:
        trained = train_both(args)
    cfg = config_for("biggan", args.data, args.out_dir, args.seed, [])
    ref, judge_calibration, data_path = build_reference(cfg, holdout=HOLDOUT, steps=args.judge_steps,
                                                        per_class=PER_CLASS, seed=args.seed)
    data = load_prepared(data_path, resolution=RESOLUTION)
    test, train = held_out_split(len(data), len(data.class_names), HOLDOUT, args.seed)
    result = {"data": args.data, "resolution": RESOLUTION, "budget": (f"steps {args.steps}" if args.steps else
                                                                      f"{args.cpu_minutes:g} CPU-minutes each"),
              "machine": f"{platform.machine()}, one thread per model, torch {torch.__version__}",
              "judge": {k: judge_calibration[k] for k in ("images", "held_out", "judge_test_acc")},
              "models": {}, "calibration": calibration_rows(data, ref, test, train, args.seed)}
    grids = []
    for model, run in trained.items():
        result["models"][model], grid = model_row(run, ref, data.images[train], args.seed)
        grids.append(grid)
    result["seconds"] = round(time.perf_counter() - t0)
    table = markdown(result)
    print(f"{args.data} at {RESOLUTION} px, {result['budget']}; judge held-out accuracy "
          f"{judge_calibration['judge_test_acc']:.3f} on {judge_calibration['held_out']} images\n{table}")
    if args.json:
        write_json(args.json, {**result, "table": table}, stamp("compare_models", args.argv))
    if args.grid:
        side_by_side(grids, [f"{m}: {r['model_label']}, {r['steps']} steps" for m, r in result["models"].items()],
                     gap=12).save(args.grid)
    return result


if __name__ == "__main__":
    main()
