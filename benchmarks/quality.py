"""Quality benchmark: does a recipe learn its classes, and how close are its images to the real ones?

Trains a recipe on a labelled dataset for a fixed budget (CPU minutes or steps) and, at a few points of the
run, samples every class from the EMA generator exactly as `smallgan sample --class` does, then reports:

- class accuracy: the share of class-conditional samples that a classifier trained here on the *real*
  images assigns to the asked class (its accuracy on held-out real images is printed beside it);
- feature distance: the Frechet distance between generated and real images in that classifier's
  penultimate features (no download), with held-out real images and uniform noise as calibration rows;
- variety per class (benchmarks/variety.py): recall in those features and the spread of the class's samples
  over the real class's, each beside its real-vs-real figure; a class under half of it is flagged (*);
- steps, images seen by D (kimg) and training seconds (sampling and evaluation not counted).

    python -m benchmarks.quality --data builtin:shapes --recipe tiny-cpu --minutes 3
    python -m benchmarks.quality --data builtin:digits --recipe tiny-cpu --minutes 10
    python -m benchmarks.quality --data builtin:shapes --run runs/demo      # evaluate a finished run
    python -m benchmarks.quality --data builtin:shapes --minutes 0 --steps 1600 --d-ceiling
    python -m benchmarks.quality --data builtin:digits --minutes 0 --steps 1200 --points 3 --max-images 100

`--json FILE` writes every figure; `--grid FILE` the final samples, one class per row. `--d-ceiling` adds a
row that bounds what conditioning can reach: the recipe's D, given the labels, trained as a plain classifier
on as many real images as the run's D saw, and scored on the held-out images. A projection D that cannot
tell the classes apart this way cannot teach G to draw them either.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from smallgan.config import Config, load_config
from smallgan.data import PreparedImages, load_prepared, resolve_dataset, to_float
from smallgan.augment import DiffAugment
from smallgan.metrics.fid import frechet_distance
from smallgan.registry import build_discriminator
from smallgan.sampling import TrainedGenerator, load_generator, save_grid

from benchmarks.common import stamp, write_json
from benchmarks.variety import VarietyReference, build_variety, class_figures, format_classes, summary


# ---------------------------------------------------------------------------------------------
# The judge: a small CNN trained on the real images, in seconds.


class Judge(nn.Module):
    """Four conv stages to a 4x4 map, then a 128-d feature layer. It sees RGB plus a per-image standardised
    grey channel: the grey channel makes shape easy to read whatever the colours (shapes), while RGB keeps
    colour in the features the distance is measured in."""

    def __init__(self, n_classes: int, width: int = 16) -> None:
        super().__init__()
        w = width
        stages, c_in = [], 4
        for c_out in (w, 2 * w, 4 * w, 4 * w):
            stages += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
            c_in = c_out
        self.stages = nn.ModuleList(nn.Sequential(*stages[i:i + 3]) for i in range(0, len(stages), 3))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * w * 16, 128), nn.ReLU())
        self.out = nn.Linear(128, n_classes)

    def features(self, x: Tensor) -> Tensor:
        grey = x.mean(1, keepdim=True)
        grey = (grey - grey.mean((2, 3), keepdim=True)) / (grey.std((2, 3), keepdim=True) + 1e-3)
        h = torch.cat([x, grey], 1)
        for stage in self.stages:
            h = stage(h)
            if h.shape[-1] > 4:
                h = F.max_pool2d(h, 2)
        return self.head(F.adaptive_avg_pool2d(h, 4))

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.features(x))


def _shift(x: Tensor, g: torch.Generator, max_shift: int) -> Tensor:
    """Random translation by up to max_shift pixels (edge padding): a judge that tolerates placement."""
    pad = F.pad(x, [max_shift] * 4, mode="replicate")
    dx, dy = (int(v) for v in torch.randint(0, 2 * max_shift + 1, (2,), generator=g))
    return pad[..., dy:dy + x.shape[-2], dx:dx + x.shape[-1]]


def train_judge(images: Tensor, labels: Tensor, n_classes: int, *, steps: int, seed: int = 0) -> Judge:
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    judge = Judge(n_classes)
    opt = torch.optim.Adam(judge.parameters(), lr=2e-3)
    epochs = math.ceil(steps / math.ceil(len(images) / 64))
    steps = epochs * math.ceil(len(images) / 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    judge.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(images), generator=g).split(64):
            x = _shift(to_float(images[idx]), g, max(1, images.shape[-1] // 16))
            loss = F.cross_entropy(judge(x), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return judge.eval()


@torch.no_grad()
def judge_outputs(judge: Judge, images: Tensor) -> tuple[Tensor, np.ndarray]:
    """(predicted classes, penultimate features as float64) of uint8 images."""
    preds, feats = [], []
    for chunk in images.split(256):
        f = judge.features(to_float(chunk.clone()))
        preds.append(judge.out(f).argmax(1))
        feats.append(f.double().numpy())
    return torch.cat(preds), np.concatenate(feats)


def feature_distance(a: np.ndarray, b: np.ndarray) -> float:
    return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


# ---------------------------------------------------------------------------------------------
# Scoring a generator


@dataclass
class Reference:
    judge: Judge
    class_names: list[str]
    real_features: np.ndarray   # judge features of the judge's training images (the reference set)
    n: int                      # images per row: held-out count, so every distance has the same bias
    variety: VarietyReference   # per-class recall and spread references, with their calibration


def score(generator: TrainedGenerator, ref: Reference, per_class: int, seed: int = 0) -> dict:
    n_classes = len(ref.class_names)
    hits, feats, recall, spread = [], [], [], []
    for c in range(n_classes):
        images = generator.sample(per_class, classes=c, seed=seed + c)
        pred, f = judge_outputs(ref.judge, images)
        hits.append((pred == c).float().mean().item())
        feats.append(f)
        r, s = class_figures(ref.variety, c, f, images, seed)
        recall.append(r)
        spread.append(s)
    feats_all = np.concatenate(feats)
    pick = np.random.default_rng(seed).permutation(len(feats_all))[: ref.n]
    return {"class_acc": float(np.mean(hits)), "per_class_acc": [round(h, 3) for h in hits],
            "fd": feature_distance(feats_all[pick], ref.real_features),
            **summary(recall, spread, ref.variety.calibration)}


def class_rows(generator: TrainedGenerator, n_classes: int, per_row: int = 10, seed: int = 0) -> Tensor:
    return torch.cat([generator.sample(per_row, classes=c, seed=seed + c) for c in range(n_classes)])


# ---------------------------------------------------------------------------------------------


def held_out_split(n_images: int, n_classes: int, holdout: float, seed: int) -> tuple[Tensor, Tensor]:
    """(test, train) indices: the judge and the D ceiling learn on train and are scored on test."""
    perm = torch.randperm(n_images, generator=torch.Generator().manual_seed(seed))
    n_test = max(n_classes, int(n_images * holdout))
    return perm[:n_test], perm[n_test:]


def build_reference(cfg: Config, holdout: float, steps: int, per_class: int,
                    seed: int = 0) -> tuple[Reference, dict, Path]:
    data_path = resolve_dataset(cfg.data.path, cfg.model.resolution)
    data = load_prepared(data_path, resolution=cfg.model.resolution)
    if len(data.class_names) < 2:
        sys.exit(f"{cfg.data.path} has one class: the quality benchmark needs a labelled (class sub-folder) dataset")
    test, train = held_out_split(len(data), len(data.class_names), holdout, seed)
    n_test = len(test)
    # The judge depends only on the data and these settings: cached beside the prepared dataset.
    cache = data_path / f".quality-judge-{cfg.model.resolution}px-{steps}-{seed}.pt"
    t0 = time.perf_counter()
    if cache.is_file():
        judge = Judge(len(data.class_names))
        judge.load_state_dict(torch.load(cache, weights_only=True))
        judge.eval()
    else:
        judge = train_judge(data.images[train], data.labels[train], len(data.class_names), steps=steps, seed=seed)
        torch.save(judge.state_dict(), cache)
    seconds = time.perf_counter() - t0
    train_pred, train_feats = judge_outputs(judge, data.images[train])
    test_pred, test_feats = judge_outputs(judge, data.images[test])
    g = torch.Generator().manual_seed(seed)
    noise = torch.randint(0, 256, (n_test, *data.images.shape[1:]), dtype=torch.uint8, generator=g)
    noise_pred, noise_feats = judge_outputs(judge, noise)
    calibration = {
        "images": len(data), "classes": len(data.class_names), "held_out": n_test,
        "judge_seconds": round(seconds, 1),
        "judge_train_acc": (train_pred == data.labels[train]).float().mean().item(),
        "judge_test_acc": (test_pred == data.labels[test]).float().mean().item(),
        "real_fd": feature_distance(test_feats, train_feats),
        "noise_fd": feature_distance(noise_feats, train_feats),
        # Noise asked to be a random class: the chance level of class accuracy.
        "noise_class_acc": (noise_pred == torch.randint(0, len(data.class_names), (n_test,), generator=g)).float().mean().item(),
    }
    variety = build_variety((data.images[train], data.labels[train], train_feats),
                            (data.images[test], data.labels[test], test_feats), len(data.class_names),
                            per_class, seed)
    calibration["variety"] = variety.calibration
    return Reference(judge, list(data.class_names), train_feats, n_test, variety), calibration, data_path


def d_ceiling(cfg: Config, data_path: Path, real_images: int, holdout: float, seed: int = 0) -> dict:
    """The recipe's D as a supervised classifier: its pooled features and a linear layer over the classes,
    trained with D's optimiser settings and augmentation on ``real_images`` real images (what the run's D saw),
    scored on the held-out images. Conditioning in a projection D rests on these same features."""
    data = load_prepared(data_path, resolution=cfg.model.resolution)
    n_classes = len(data.class_names)
    test, train = held_out_split(len(data), n_classes, holdout, seed)
    torch.manual_seed(seed)
    D = build_discriminator(cfg.model, n_classes=1)
    if not hasattr(D, "features"):
        return {"skipped": f"{cfg.model.arch}'s D has no pooled features to classify from"}
    augment = DiffAugment(cfg.train.diffaug)
    with torch.no_grad():
        width = D.features(to_float(data.images[:2])).shape[1]
    head = nn.Linear(width, n_classes)
    t = cfg.train
    opt = torch.optim.Adam([*D.parameters(), *head.parameters()], lr=t.d_lr, betas=tuple(t.betas), eps=t.adam_eps)
    g = torch.Generator().manual_seed(seed)
    steps = max(1, real_images // t.batch)
    t0 = time.perf_counter()
    for _ in range(steps):
        idx = train[torch.randint(0, len(train), (t.batch,), generator=g)]
        loss = F.cross_entropy(head(D.features(augment(to_float(data.images[idx])))), data.labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    D.eval()
    with torch.no_grad():
        pred = torch.cat([head(D.features(to_float(c))).argmax(1) for c in data.images[test].split(256)])
    return {"steps": steps, "real_images": steps * t.batch, "train_seconds": round(time.perf_counter() - t0, 1),
            "final_train_loss": round(loss.item(), 3),
            "held_out_acc": (pred == data.labels[test]).float().mean().item()}


def few_shot_subset(data_path: Path, resolution: int, n: int, holdout: float, seed: int = 0) -> PreparedImages:
    """`n` images drawn (seeded) from the judge's training split: a few-shot training set that never holds
    the held-out images, while the feature distance still compares with the whole real distribution."""
    data = load_prepared(data_path, resolution=resolution)
    _, train = held_out_split(len(data), len(data.class_names), holdout, seed)
    pick = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(seed + 1))[:n]]
    return PreparedImages(data.images[pick], data.labels[pick], list(data.class_names))


def train_and_score(cfg: Config, ref: Reference, *, minutes: float, steps: int, points: int, per_class: int,
                    console_print, dataset: PreparedImages | None = None,
                    raw: bool = False) -> tuple[list[dict], TrainedGenerator]:
    from smallgan.ema import prepare_for_sampling
    from smallgan.training.loop import Trainer

    trainer = Trainer(cfg, overwrite=True, dataset=dataset)
    t = cfg.train
    if minutes:
        marks = [minutes * 60 * (i + 1) / points for i in range(points)]
    else:
        marks = [max(1, round(steps * (i + 1) / points)) for i in range(points)]
    curve, spent = [], 0.0
    for mark in marks:
        r_t, iterations = 0.0, 0
        while (spent if minutes else trainer.counters.step) < mark:
            t0 = time.perf_counter()
            losses = trainer.train_iteration()
            spent += time.perf_counter() - t0
            r_t, iterations = r_t + losses["r_t"], iterations + 1
        G = TrainedGenerator(trainer.sampling_generator(), trainer.cfg, trainer.class_names)
        # r_t: D's overfitting gauge over the segment; p: the augmentation probability now (docs/fewshot-regularisers.md).
        row = {"step": trainer.counters.step, "kimg": round(trainer.counters.step * t.batch * t.d_steps / 1000, 1),
               "train_seconds": round(spent, 1), "r_t": round(float(r_t) / max(iterations, 1), 3),
               "augment_p": round(trainer.state.ada.p.item(), 3), **score(G, ref, per_class)}
        curve.append(row)
        console_print(format_row(row) + "\n" + format_classes(row), flush=True)
        if raw:   # the trained G's own weights, with standing statistics as the EMA copy gets them
            module = prepare_for_sampling(trainer.G, batch_size=max(trainer.micro_batch, 32))
            row["raw"] = score(TrainedGenerator(module, trainer.cfg, trainer.class_names), ref, per_class)
            console_print(format_row({"step": "raw G", **row["raw"]}) + "\n" + format_classes(row["raw"]), flush=True)
    trainer.save_checkpoint()   # the real export path: generator.safetensors, as `smallgan sample` reads it
    return curve, load_generator(trainer.run_dir, device="cpu")


def format_row(row: dict) -> str:
    variety = (f" {row['recall_min']:>6.2f}/{row['recall_mean']:.2f} {row['spread_min']:>6.2f}/{row['spread_mean']:.2f}"
               if "recall_min" in row else f" {'':>11} {'':>11}")
    flagged = f" low variety: {','.join(map(str, row['low_variety']))}" if row.get("low_variety") else ""
    return (f"{row.get('step', '-'):>7} {row.get('kimg', '-'):>8} {row.get('train_seconds', '-'):>9} "
            f"{row['class_acc']:>9.3f} {row['fd']:>9.2f}" + variety
            + (f" r_t {row['r_t']:.2f} p {row['augment_p']:.2f}" if "r_t" in row else "") + flagged)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="builtin:shapes", help="labelled dataset: builtin:shapes, builtin:digits, a folder")
    ap.add_argument("--recipe", default="tiny-cpu")
    ap.add_argument("--minutes", type=float, default=3.0, help="training budget in CPU minutes (0: use --steps)")
    ap.add_argument("--steps", type=int, default=0, help="training budget in G steps (with --minutes 0)")
    ap.add_argument("--points", type=int, default=6, help="evaluations along the run (the curve)")
    ap.add_argument("--per-class", type=int, default=100, help="samples per class at each evaluation")
    ap.add_argument("--run", help="evaluate this finished run's generator instead of training")
    ap.add_argument("--judge-steps", type=int, default=1200, help="optimiser steps (batch 64) of the judge")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="config override section.key=value")
    ap.add_argument("--json", help="write all figures to this file")
    ap.add_argument("--grid", help="write the final samples (one class per row) to this PNG")
    ap.add_argument("--d-ceiling", action="store_true",
                    help="also train the recipe's D as a classifier on the run's real-image budget (a bound)")
    ap.add_argument("--max-images", type=int, default=0,
                    help="train on this many images of the judge's training split (a few-shot set); 0 = all")
    ap.add_argument("--keep", help="train in this folder and keep the run (e.g. for `smallgan sample --run`)")
    ap.add_argument("--raw", action="store_true", help="also score the raw G (not the EMA) at every point")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        overrides = [f"data.path={args.data}", f"train.out_dir={args.keep or tmp}", "train.name=quality",
                     f"train.seed={args.seed}", *args.sets]
        if args.run:
            G = load_generator(args.run, device="cpu")
            cfg = G.config
            cfg.data.path = args.data
        else:
            cfg = load_config(args.recipe, overrides)
        holdout = 0.25
        ref, calibration, data_path = build_reference(cfg, holdout=holdout, steps=args.judge_steps,
                                                      per_class=args.per_class, seed=args.seed)
        result = {
            "data": args.data, "recipe": args.run or args.recipe, "overrides": args.sets,
            "budget": f"{args.minutes:g} min" if args.minutes and not args.run else f"{args.steps} steps",
            "machine": f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}",
            "calibration": calibration, "train_images": args.max_images or calibration["images"],
        }
        print(f"{args.data}: {calibration['images']} images, {calibration['classes']} classes; judge trained in "
              f"{calibration['judge_seconds']} s, held-out accuracy {calibration['judge_test_acc']:.3f}")
        sys.stdout.flush()
        print(f"{'step':>7} {'kimg':>8} {'train_s':>9} {'class_acc':>9} {'feat_fd':>9} {'recall':>11} {'spread':>11}"
              "   (recall, spread: worst class/mean)")
        real_row = {"step": "real", "class_acc": calibration["judge_test_acc"], "fd": calibration["real_fd"],
                    **calibration["variety"]}
        print(format_row(real_row) + "\n" + format_classes(real_row))
        print(format_row({"step": "noise", "class_acc": calibration["noise_class_acc"], "fd": calibration["noise_fd"]}))
        if args.run:
            result["final"] = score(G, ref, args.per_class, seed=args.seed + 1000)
        else:
            subset = (few_shot_subset(data_path, cfg.model.resolution, args.max_images, holdout, args.seed)
                      if args.max_images else None)
            curve, G = train_and_score(cfg, ref, minutes=args.minutes, steps=args.steps, points=max(1, args.points),
                                       per_class=args.per_class, console_print=print, dataset=subset,
                                       raw=args.raw)
            result["curve"] = curve
            result["final"] = {**{k: curve[-1][k] for k in ("step", "kimg", "train_seconds")},
                               **score(G, ref, args.per_class, seed=args.seed + 1000)}
        print(format_row({"step": "final", **result["final"]}) + "   (exported generator, fresh latents)\n"
              + format_classes(result["final"]))
        if args.d_ceiling:
            # A finished run (--run) does not record its length here: --steps says how many G steps it took.
            steps = result["final"].get("step") or args.steps
            if not steps:
                sys.exit("--d-ceiling with --run needs --steps: the G steps the run took (its log says)")
            real_images = steps * cfg.train.batch * cfg.train.d_steps
            ceiling = d_ceiling(cfg, data_path, real_images, holdout, seed=args.seed)
            result["d_ceiling"] = ceiling
            if "skipped" in ceiling:
                print(f"D ceiling skipped: {ceiling['skipped']}")
            else:
                print(f"D ceiling: the recipe's D trained on the labels with {ceiling['real_images']:,} real images "
                      f"({ceiling['steps']} steps) classifies held-out images at {ceiling['held_out_acc']:.3f}")
        if args.grid:
            save_grid(class_rows(G, len(ref.class_names)), args.grid, nrow=10)
    if args.json:
        write_json(args.json, result, stamp("quality", argv))
    return result


if __name__ == "__main__":
    main()
