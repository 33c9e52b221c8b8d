"""GPU figures for docs/speed.md in one run: device identity, training-step speed at the paper's width, time per
1k steps of every shipped recipe, a short real training run and the GPU-side tests.

    python -m benchmarks.bench_gpu --out results.jsonl --log log.txt --budget-s 480
    python -m benchmarks.bench_gpu --quick --out /tmp/quick.jsonl      # CPU smoke test at tiny sizes

Every configuration runs in its own subprocess (a fresh Accelerator and allocator; an OOM or a crash loses
one row, not the run), and every row is appended to the JSONL file as soon as it exists, so a run cut off at
its time limit still leaves the finished rows. Items run in priority order and stop when the budget is spent:

1. ``info``: GPU name, capability, memory, torch version, bf16 support, TF32 flags, a bf16 matmul ceiling.
2. ``step``: the real Trainer (smallgan.bench.bench_config) at BigGAN 128 px, ch 96, 1 D step (the authors'
   ImageNet-128 launch): fp32 / bf16 / fp16 / bf16 + activation checkpointing at micro-batch 64, then the
   largest micro-batch that fits in bf16 (256 else 128; 512 with checkpointing); bf16 + torch.compile comes
   after item 4, since its first iterations compile for minutes. Figures: s/iter, img/s (real images through
   D per second), peak CUDA memory (max allocated) and model FLOP utilisation: FLOPs of one iteration counted
   with the formulas of torch.utils.flop_counter (forward + backward matmuls/convs; model FLOPs, so the recompute
   of activation checkpointing is not counted) / s per iteration / the GPU's dense peak for that precision.
3. ``recipe``: every shipped recipe as it is (batch, accumulation, d_steps, precision, DiffAugment) on
   synthetic images (train.eval_every=0; FastGAN with train.lpips_weights=random, same cost): s/iter and
   time per 1k steps (training iterations only: no sampling, checkpoints or evaluation).
4. ``train``: `smallgan train --recipe anime64 --data builtin:shapes --max-steps 200` end to end.
5. ``compile``: the bf16 + torch.compile row of item 2.

The GPU tests are pytest's (`python -m pytest -m gpu`, run by benchmarks/gpu_proof.py); the children are
benchmarks/gpu_children.py.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import Runner, run_process, stamp, write_markdown

# Dense peaks of an H100/H200 SXM (TFLOP/s, no sparsity): the denominators of the MFU column.
PEAK_TFLOPS = {"bf16": 989.0, "fp16": 989.0, "tf32": 494.0, "fp32": 67.0}


def _peak_for(precision: str, row: dict) -> tuple[float, str]:
    if precision in ("bf16", "fp16"):
        return PEAK_TFLOPS[precision], f"{precision} tensor dense {PEAK_TFLOPS[precision]:.0f} TFLOP/s"
    if row.get("tf32_cudnn") or row.get("tf32_matmul"):
        return PEAK_TFLOPS["tf32"], f"TF32 tensor dense {PEAK_TFLOPS['tf32']:.0f} TFLOP/s"
    return PEAK_TFLOPS["fp32"], f"FP32 non-tensor {PEAK_TFLOPS['fp32']:.0f} TFLOP/s"


def _flops_for(batch: int, counted: dict[int, int]) -> tuple[int | None, str]:
    """Model FLOPs per iteration at `batch`: counted, else a linear fit (fixed cost + per image) of the counts."""
    if batch in counted:
        return counted[batch], "counted"
    if len(counted) >= 2:
        (b0, f0), (b1, f1) = sorted(counted.items())[:1] + sorted(counted.items())[-1:]
        per = (f1 - f0) / (b1 - b0)
        return int(f0 + per * (batch - b0)), f"linear fit of counts at {b0} and {b1}"
    if counted:
        b0, f0 = next(iter(counted.items()))
        return int(f0 * batch / b0), f"scaled from the count at {b0}"
    return None, "none"


def add_mfu(row: dict, counted: dict[int, int]) -> None:
    if not row.get("ok") or "s_per_iter" not in row:
        return
    if row.get("flops_per_iter"):
        counted.setdefault(row["batch"], row["flops_per_iter"])
    flops, how = _flops_for(row["batch"], counted)
    if flops is None:
        return
    peak, peak_name = _peak_for(row["precision"], row)
    achieved = flops / row["s_per_iter"] / 1e12
    row.update(model_flops_per_iter=flops, flops_source=how, achieved_tflops=round(achieved, 1),
               mfu=round(achieved / peak, 4), mfu_peak=peak_name)
    if row["precision"] == "no":
        row["mfu_vs_fp32_67"] = round(achieved / PEAK_TFLOPS["fp32"], 4)


def run_steps(r: Runner, q: bool) -> None:
    res, ch, mb = (32, 8, 8) if q else (128, 96, 64)
    it, wu = (2, 1) if q else (10, 3)
    counted: dict[int, int] = {}

    def step(name, precision, batch, extra=(), count=False, cap=90.0, iters=it, warmup=wu, min_needed=20.0):
        spec = {"item": "step", "resolution": res, "ch": ch, "batch": batch, "d_steps": 1, "precision": precision,
                "extra": list(extra), "iters": iters, "warmup": warmup, "count_flops": count}
        row = r.child(name, spec, cap, min_needed, post=lambda x: add_mfu(x, counted))
        if row is not None:
            if row.get("model_flops_per_iter"):
                r.say(f"  {name}: {row['achieved_tflops']} TFLOP/s, MFU {row['mfu']:.1%} vs {row['mfu_peak']}")
        return row

    step(f"fp32-b{mb}", "no", mb, count=True)
    step(f"bf16-b{mb}", "bf16", mb, count=True)
    step(f"fp16-b{mb}", "fp16", mb)
    step(f"bf16-ckpt-b{mb}", "bf16", mb, ["train.activation_checkpointing=true"])
    big = mb * 4
    row = step(f"bf16-b{big}", "bf16", big, count=True, iters=max(2, it // 2), warmup=min(wu, 2))
    if not (row and row.get("ok")):
        step(f"bf16-b{mb * 2}", "bf16", mb * 2, count=True, iters=max(2, it // 2), warmup=min(wu, 2))
    step(f"bf16-ckpt-b{mb * 8}", "bf16", mb * 8, ["train.activation_checkpointing=true"],
         iters=max(2, it // 2), warmup=min(wu, 2), cap=120)
    return step


def run_compile(r: Runner, q: bool, step, compile_cap: float) -> None:
    mb = 8 if q else 64
    step(f"bf16-compile-b{mb}", "bf16", mb, ["train.compile=true"], cap=compile_cap, min_needed=60)


def run_recipes(r: Runner, q: bool) -> None:
    recipes = ["tiny-cpu", "anime64", "anime128", "deep-anime128", "fastgan-tiny64", "fastgan-anime256",
               "imagenet128"]
    for name in recipes:
        # Time training steps only: eval_every (imagenet128) would build the Inception extractor (weights absent).
        extra = ["train.eval_every=0"] + (["train.lpips_weights=random"] if name.startswith("fastgan") else [])
        if q:  # tiny sizes on the CPU: same code paths (accumulation, DiffAugment, decoders)
            extra += ["model.ch=8", "model.d_ch=8", "train.batch=4", "train.micro_batch=2", "train.precision=no"]
        iters, warmup = (2, 1) if name == "imagenet128" else (4, 2)
        if q:
            iters, warmup = 1, 1
        spec = {"item": "recipe", "recipe": name, "extra": extra, "iters": iters, "warmup": warmup}
        r.child(f"recipe-{name}", spec, cap=120 if name == "imagenet128" else 75, min_needed=25)


def run_train(r: Runner, q: bool, out_dir: Path) -> None:
    steps = 4 if q else 200
    every = 2 if q else 100
    timeout = min(210.0, r.remaining())
    if timeout < 60:
        r.say(f"skip train: {r.remaining():.0f}s left")
        r.write({"item": "train", "ok": False, "skipped": "budget"})
        return
    work = Path(tempfile.mkdtemp(prefix="smallgan-train-"))
    runs = work / "runs"
    cmd = [sys.executable, "-c", "from smallgan.cli import main; main()", "train", "--recipe", "anime64",
           "--data", "builtin:shapes", "--max-steps", str(steps), "--set", f"train.out_dir={runs}",
           "--set", f"train.sample_every={every}", "--set", f"train.ckpt_every={every}"]
    if q:
        cmd += ["--set", "model.ch=8", "--set", "train.batch=8", "--set", "train.micro_batch=4",
                "--set", "train.precision=no"]
    r.say(f"start train (timeout {timeout:.0f}s): {' '.join(cmd[3:])}")
    t0 = time.perf_counter()
    stdout, stderr, rc = run_process(cmd, timeout, cwd=work)
    text = stdout + stderr
    wall = round(time.perf_counter() - t0, 1)
    r.logchild("train", text)
    row = {"item": "train", "name": f"anime64-shapes-{steps}steps", "ok": rc == 0, "rc": rc, "wall_s": wall,
           "command": "smallgan " + " ".join(cmd[3:])}
    step_lines = [ln.strip() for ln in text.splitlines() if re.match(r"\s*step \d+[/ ]", ln)]
    row["log_lines"] = step_lines[-6:]
    rates = [float(m.group(1)) for ln in step_lines if (m := re.search(r"([\d.]+) img/s", ln))]
    if rates:
        row["img_s_logged_last"] = rates[-1]
        row["img_s_logged_all"] = rates
    metrics = runs / "anime64" / "metrics.jsonl"
    if metrics.is_file():
        recs = [json.loads(ln) for ln in metrics.read_text().splitlines() if ln.strip()]
        recs = [x for x in recs if "step" in x and "img_s" in x]
        if recs:
            row["train_seconds"] = recs[-1].get("seconds")
            row["final_step"] = recs[-1]["step"]
            row["final_losses"] = {k: recs[-1].get(k) for k in ("d_loss", "g_loss")}
            row["skipped"] = [recs[-1].get("skipped_d"), recs[-1].get("skipped_g")]
    head = [ln for ln in text.splitlines() if ln.startswith("run ")]
    row["run_line"] = head[:1]
    samples = sorted((runs / "anime64" / "samples").glob("step-*.png"))
    if samples:
        dest = out_dir / f"gpu-anime64-shapes-{steps}steps.png"
        shutil.copyfile(samples[-1], dest)
        row["samples_png"] = dest.name
        row["samples_from"] = samples[-1].name
    if rc != 0:
        row["error_tail"] = [ln for ln in text.strip().splitlines() if ln.strip()][-15:]
    r.say("done train: " + json.dumps({k: row.get(k) for k in ("ok", "rc", "wall_s", "train_seconds",
                                                              "img_s_logged_last", "samples_png")}))
    if rc != 0:
        r.say("  " + "\n  ".join(row["error_tail"]))
    r.write(row)
    shutil.rmtree(work, ignore_errors=True)


def summary_table(rows: list[dict]) -> str:
    lines = ["| config | s/iter | img/s | peak MB | TFLOP/s | MFU | note |", "|---|---|---|---|---|---|---|"]
    for x in rows:
        if x.get("item") != "step":
            continue
        if not x.get("ok"):
            lines.append(f"| {x['name']} | - | - | - | - | - | {x.get('error') or x.get('skipped')} |")
            continue
        note = f"warm-up iterations {x.get('warmup_s')} s" if "compile" in x["name"] else ""
        mem = x.get("peak_mem_mb", x.get("peak_rss_mb"))
        mfu = f"{x['mfu']:.1%}" if "mfu" in x else "-"
        lines.append(f"| {x['name']} | {x['s_per_iter']:.4f} | {x['img_s']:.1f} | {mem} | "
                     f"{x.get('achieved_tflops', '-')} | {mfu} | {note} |")
    lines += ["", "| recipe | batch = micro x accum | d_steps | precision | s/iter | min per 1k steps | img/s | peak MB |",
              "|---|---|---|---|---|---|---|---|"]
    for x in rows:
        if x.get("item") != "recipe":
            continue
        if not x.get("ok"):
            lines.append(f"| {x['name']} | - | - | - | - | - | - | {x.get('error') or x.get('skipped')} |")
            continue
        lines.append(f"| {x['recipe']} | {x['batch']} = {x['micro_batch']} x {x['accumulation']} | {x['d_steps']} | "
                     f"{x['precision']} | {x['s_per_iter']:.4f} | {x['min_per_1k_steps']} | {x['img_s']:.1f} | "
                     f"{x.get('peak_mem_mb', x.get('peak_rss_mb'))} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench_gpu.jsonl", help="JSONL file (appended, flushed per row)")
    ap.add_argument("--log", default="", help="full child output goes here")
    ap.add_argument("--budget-s", type=float, default=480.0, help="wall-time budget for all items")
    ap.add_argument("--compile-cap", type=float, default=150.0, help="timeout of the torch.compile row")
    ap.add_argument("--items", default="info,step,recipe,train,compile")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (CPU smoke test of this script)")
    args = ap.parse_args(argv)
    stamped = stamp("bench_gpu", sys.argv[1:] if argv is None else argv)
    r = Runner(args.out, args.log, args.budget_s, stamped)
    out_dir = Path(args.out).resolve().parent
    items = [s.strip() for s in args.items.split(",") if s.strip()]
    r.say(f"bench_gpu: items {items}, budget {args.budget_s:.0f}s, quick={args.quick}")
    if "info" in items:
        r.child("info", {"item": "info"}, cap=60)
    step = run_steps(r, args.quick) if "step" in items else None
    if "recipe" in items:
        run_recipes(r, args.quick)
    if "train" in items:
        run_train(r, args.quick, out_dir)
    # torch.compile last among the timings: its first iterations compile for a minute or more.
    if step is not None and "compile" in items:
        run_compile(r, args.quick, step, args.compile_cap)
    table = summary_table(r.rows)
    write_markdown(out_dir / "summary.md", table + "\n", stamped)
    r.say("finished\n" + table)


if __name__ == "__main__":
    main()
