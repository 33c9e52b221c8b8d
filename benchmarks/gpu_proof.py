"""Everything the GPU has to prove, in one call of at most eight minutes, into one results folder.

    python -m benchmarks.gpu_proof --out gpu-proof/              # on one CUDA GPU
    python -m benchmarks.gpu_proof --out /tmp/proof --dry-run    # the same items at tiny size on the CPU (CI)

Items, in this order (each in its own process, every row appended to rows.jsonl as soon as it exists, so a run
cut off still leaves what finished; a summary.md at the end):

1. ``mfu``: the real Trainer at BigGAN 128 px, ch 96, micro-batch 64, 1 D step, eager, bf16 then fp16: s/iter,
   img/s, peak CUDA memory and model FLOP utilisation (bench_gpu.py's FLOP count and peaks).
2. ``pytest``: ``pytest -m gpu``: every training iteration of a GPU test runs under
   ``torch.cuda.set_sync_debug_mode("error")`` (tests/conftest.py), so one that waits for the GPU fails.
3. ``notebook``: tests/test_notebook.py, the Colab notebook in its smoke mode, on this machine.
4. ``fewshot``: ``smallgan train`` on builtin:digits (1,797 images) for --fewshot-steps steps with a KID at the
   end (Inception features given --inception-weights, else the tiny random extractor: a smoke check only).
5. ``compiled``: item 1 with train.compile=true, bf16 then fp16 (last: the first iterations compile).

--dry-run: 32 px, ch 8, micro-batch 8; compiled rows with train.compile_backend=eager (Dynamo traces, no code
generated); the notebook item is left to tests/test_notebook.py, which CI runs anyway.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import bench_gpu   # the MFU figures and the summary table
from benchmarks.common import SRC, Runner, run_process, stamp, write_markdown


def _mfu_rows(r: Runner, dry: bool, compiled: bool, counted: dict[int, int]) -> None:
    res, ch, mb = (32, 8, 8) if dry else (128, 96, 64)
    iters, warmup = (1, 1) if dry else (10, 3)
    extra = ["train.compile=true"] + (["train.compile_backend=eager"] if dry else []) if compiled else []
    for precision in ("bf16", "fp16"):
        if dry and precision == "fp16":
            precision = "no"   # fp16 autocast needs CUDA: the dry run times fp32 in its place
        name = f"{precision}-{'compiled' if compiled else 'eager'}-{res}px-ch{ch}-b{mb}"
        spec = {"item": "step", "resolution": res, "ch": ch, "batch": mb, "d_steps": 1, "precision": precision,
                "extra": extra, "iters": iters, "warmup": warmup if not compiled else warmup + 1,
                "count_flops": not compiled and precision == "bf16"}
        row = r.child(name, spec, cap=60 if dry else (120 if compiled else 60), min_needed=15,
                      post=lambda x: bench_gpu.add_mfu(x, counted))
        if row and row.get("mfu") is not None:
            r.say(f"  {name}: MFU {row['mfu']:.1%} of the {row['mfu_peak']} peak")


def _command(r: Runner, name: str, cmd: list[str], cap: float, out_dir: Path, env: dict | None = None,
             cwd: Path | None = None) -> dict:
    """Run a command (not a child spec) with what is left of the budget; its output goes to <name>.txt."""
    import os

    timeout = min(cap, r.remaining())
    if timeout < 20:
        return r.write({"item": name, "ok": False, "skipped": "budget"})
    r.say(f"start {name} (timeout {timeout:.0f}s): {' '.join(cmd[1:])}")
    t0 = time.perf_counter()
    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        stdout, stderr, rc = run_process(cmd, timeout, cwd=cwd or tempfile.mkdtemp(prefix="smallgan-proof-"))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    wall = round(time.perf_counter() - t0, 1)
    text = stdout + stderr
    header = f"commit {r.stamp['commit']}; command: {r.stamp['command']}\n$ {' '.join(cmd)}\nrc={rc} wall={wall}s"
    (out_dir / f"{name}.txt").write_text(f"{header}\n\n{text}")
    tail = [ln for ln in text.strip().splitlines() if ln.strip()][-5:]
    row = {"item": name, "ok": rc == 0, "rc": rc, "wall_s": wall, "tail": tail}
    r.say(f"done {name}: rc={rc} in {wall}s")
    return r.write(row)


def _pytest(r, out_dir: Path) -> None:
    # The gpu marker lives in tests/test_gpu.py only: collecting the whole suite would cost half a minute.
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-rfEs", "-p", "no:cacheprovider",
           str(SRC / "tests" / "test_gpu.py")]
    _command(r, "pytest", cmd, 120, out_dir, env={"SMALLGAN_SYNC_DEBUG": "error"})


def _notebook(r, dry: bool, out_dir: Path) -> None:
    if dry:
        r.write({"item": "notebook", "ok": True, "skipped": "dry run: tests/test_notebook.py runs it in CI"})
        return
    cmd = [sys.executable, "-m", "pytest", "-m", "slow or not slow", "-p", "no:cacheprovider",
           str(SRC / "tests" / "test_notebook.py")]
    _command(r, "notebook", cmd, 90, out_dir)


def _fewshot(r, args, out_dir: Path) -> None:
    steps = 4 if args.dry_run else args.fewshot_steps
    runs = Path(tempfile.mkdtemp(prefix="smallgan-fewshot-"))
    extractor = ["--set", "eval.extractor=inception", "--set", f"eval.inception_weights={args.inception_weights}"] \
        if args.inception_weights else ["--set", "eval.extractor=tiny"]
    cmd = [sys.executable, "-m", "smallgan.train", "--recipe", "tiny-cpu", "--data", "builtin:digits",
           "--max-steps", str(steps), "--set", f"train.out_dir={runs}", "--set", "train.name=fewshot",
           "--set", f"train.eval_every={steps}", "--set", "eval.metrics=kid",
           "--set", f"eval.n={64 if args.dry_run else 2000}", *extractor]
    row = _command(r, "fewshot", cmd, 120, out_dir)
    metrics = runs / "fewshot" / "metrics.jsonl"
    if metrics.is_file():
        recs = [json.loads(ln) for ln in metrics.read_text().splitlines() if ln.strip()]
        kid = [x for x in recs if any(k.startswith("kid") for k in x)]
        row["kid"] = {k: v for k, v in kid[-1].items() if k.startswith("kid") or k == "step"} if kid else None
        row["extractor"] = "inception" if args.inception_weights else "tiny (smoke check: no comparable number)"
        r.write({**row, "item": "fewshot-kid"})


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="results folder (created)")
    ap.add_argument("--budget-s", type=float, default=470.0, help="wall-time budget for all items")
    ap.add_argument("--items", default="mfu,pytest,notebook,fewshot,compiled")
    ap.add_argument("--fewshot-steps", type=int, default=1000)
    ap.add_argument("--inception-weights", default="", help="a local Inception weights file for the KID")
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (CI)")
    args = ap.parse_args(argv)
    out_dir = Path(args.out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    stamped = stamp("gpu_proof", sys.argv[1:] if argv is None else argv)
    r = Runner(out_dir / "rows.jsonl", out_dir / "log.txt", args.budget_s, stamped)
    items = [s.strip() for s in args.items.split(",") if s.strip()]
    r.say(f"gpu_proof: items {items}, budget {args.budget_s:.0f}s, dry run {args.dry_run}")
    counted: dict[int, int] = {}
    if "mfu" in items:
        r.child("info", {"item": "info"}, cap=60)
        _mfu_rows(r, args.dry_run, compiled=False, counted=counted)
    if "pytest" in items:
        _pytest(r, out_dir)
    if "notebook" in items:
        _notebook(r, args.dry_run, out_dir)
    if "fewshot" in items:
        _fewshot(r, args, out_dir)
    if "compiled" in items:
        _mfu_rows(r, args.dry_run, compiled=True, counted=counted)
    table = bench_gpu.summary_table(r.rows)
    lines = [f"| {x['item']} | {'ok' if x.get('ok') else 'FAILED'} | {x.get('wall_s', '-')} | "
             f"{x.get('skipped') or x.get('kid') or ''} |" for x in r.rows if x["item"] not in ("step", "info")]
    write_markdown(out_dir / "summary.md", table + "\n\n| item | result | wall s | note |\n|---|---|---|---|\n"
                   + "\n".join(lines) + "\n", stamped)
    r.say("finished\n" + (out_dir / "summary.md").read_text())
    return out_dir


if __name__ == "__main__":
    main()
