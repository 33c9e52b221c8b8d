"""GPU figures for docs/speed.md in one run: device identity, training-step speed at the paper's width, time per
1k steps of every shipped recipe, a short real training run and the GPU-side tests.

    python benchmarks/bench_gpu.py --out results.jsonl --log log.txt --budget-s 480
    python benchmarks/bench_gpu.py --quick --out /tmp/quick.jsonl      # CPU smoke test at tiny sizes

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
6. ``pytest``: tests/test_gpu.py (the `-m gpu` subset), tests/test_training.py and tests/test_sampling.py on the
   GPU machine, with what time is left.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1]

# Dense peaks of an H100/H200 SXM (TFLOP/s, no sparsity): the denominators of the MFU column.
PEAK_TFLOPS = {"bf16": 989.0, "fp16": 989.0, "tf32": 494.0, "fp32": 67.0}

# ------------------------------------------------------------------------------------------------------------
# Children (one configuration each; they print one "RESULT {json}" line)


def _sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _synthetic(cfg, n_images: int):
    import torch

    from smallgan.bench import SyntheticImages

    r = cfg.model.resolution
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n_images, 3, r, r), dtype=torch.uint8, generator=g)
    n_classes = cfg.model.n_classes
    if n_classes > 1:
        labels = torch.randint(0, n_classes, (n_images,), generator=g)
        names = [f"class{i}" for i in range(n_classes)]
    else:
        labels, names = torch.zeros(n_images, dtype=torch.long), []
    return SyntheticImages(images, labels, names)


def count_flops_of(fn) -> int:
    """FLOPs of one call of `fn` (forward and backward matmuls, convolutions, attention), with the formulas of
    torch.utils.flop_counter. Its FlopCounterMode is not used as such: the module hooks it installs to attribute
    FLOPs to modules break torch.autograd.grad (orthogonal regularisation) in backward."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    class Count(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            formula = flop_registry.get(func._overloadpacket)
            if formula is not None:
                Count.total += int(formula(*args, **kwargs, out_val=out))
            return out

    with Count():
        fn()
    _sync()
    return Count.total


def _time_trainer(cfg, *, iters: int, warmup: int, count_flops: bool, n_images: int) -> dict:
    """Build the Trainer on synthetic images, time `iters` iterations after `warmup`, optionally count FLOPs."""
    import torch

    from smallgan.registry import count_params
    from smallgan.training.loop import Trainer

    cuda = torch.cuda.is_available()
    data = _synthetic(cfg, n_images)
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        cfg.train.out_dir, cfg.train.name = tmp, "bench"
        t0 = time.perf_counter()
        trainer = Trainer(cfg, dataset=data)
        _sync()
        out["build_s"] = round(time.perf_counter() - t0, 2)
        warm = []
        for _ in range(warmup):
            t0 = time.perf_counter()
            trainer.train_iteration()
            _sync()
            warm.append(round(time.perf_counter() - t0, 4))
        out["warmup_s"] = warm
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for _ in range(iters):
            losses = trainer.train_iteration()
        _sync()
        s = (time.perf_counter() - t0) / iters
        out["losses_finite"] = all(bool(torch.isfinite(v).item()) for v in losses.values())
        out["losses"] = {k: round(float(v), 4) for k, v in losses.items()}
        if cuda:
            out["peak_mem_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
            out["peak_reserved_mb"] = round(torch.cuda.max_memory_reserved() / 2**20, 1)
        else:
            import resource

            out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        if count_flops:
            try:
                out["flops_per_iter"] = count_flops_of(trainer.train_iteration)
            except Exception as e:  # noqa: BLE001 - the timing above still counts
                out["flops_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
        out["G_params"], out["D_params"] = count_params(trainer.G), count_params(trainer.D)
        out["device"] = str(trainer.accelerator.device)
        out["accumulation"] = trainer.accumulation
        out["precision"] = trainer.precision   # train.precision=auto (the recipes' default), resolved for the GPU
    t = cfg.train
    out.update(s_per_iter=round(s, 5), iters=iters, warmup=warmup, batch=t.batch, micro_batch=t.micro_batch,
               d_steps=t.d_steps, img_s=round(t.batch * t.d_steps / s, 2),
               tf32_matmul=torch.backends.cuda.matmul.allow_tf32, tf32_cudnn=torch.backends.cudnn.allow_tf32,
               float32_matmul_precision=torch.get_float32_matmul_precision())
    return out


def child_info(spec: dict) -> dict:
    import torch

    row = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available(), "python": sys.version.split()[0],
           "cuda_runtime": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}
    try:
        import accelerate

        row["accelerate"] = accelerate.__version__
    except ImportError:
        pass
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        row.update(gpu=torch.cuda.get_device_name(0), capability=list(torch.cuda.get_device_capability(0)),
                   total_memory_mb=round(p.total_memory / 2**20), multiprocessors=p.multi_processor_count)
        try:
            row["bf16_native"] = torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:
            row["bf16_native"] = torch.cuda.is_bf16_supported()
        row["bf16_supported"] = torch.cuda.is_bf16_supported()
        # A measured matmul ceiling to set the MFU figures against (8192^3 bf16, median of 10 after warm-up).
        a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
        for _ in range(3):
            a @ b
        torch.cuda.synchronize()
        times = []
        for _ in range(10):
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            a @ b
            e1.record()
            e1.synchronize()
            times.append(e0.elapsed_time(e1) / 1e3)
        times.sort()
        row["bf16_matmul_tflops_measured"] = round(2 * 8192**3 / times[len(times) // 2] / 1e12, 1)
    row.update(tf32_matmul_default=torch.backends.cuda.matmul.allow_tf32,
               tf32_cudnn_default=torch.backends.cudnn.allow_tf32,
               float32_matmul_precision=torch.get_float32_matmul_precision())
    for name in ("datasets", "lpips", "imagehash", "torch_fidelity", "pyarrow", "fsspec", "smallgan"):
        try:
            mod = __import__(name)
            row[f"v_{name}"] = getattr(mod, "__version__", "?")
        except Exception as e:  # noqa: BLE001 - report, do not stop
            row[f"v_{name}"] = f"import failed: {type(e).__name__}: {e}"
    return row


def child_step(spec: dict) -> dict:
    from smallgan.bench import bench_config

    precision = spec["precision"]
    cfg = bench_config("biggan", spec["resolution"], spec["ch"], spec["batch"], spec["d_steps"], precision,
                       list(spec.get("extra", [])))
    row = _time_trainer(cfg, iters=spec["iters"], warmup=spec["warmup"], count_flops=spec.get("count_flops", False),
                        n_images=max(64, spec["batch"] * 4))
    row.update(resolution=spec["resolution"], ch=spec["ch"], extra=spec.get("extra", []))
    return row


def child_recipe(spec: dict) -> dict:
    from smallgan.config import load_config

    cfg = load_config(spec["recipe"], list(spec.get("extra", [])))
    row = _time_trainer(cfg, iters=spec["iters"], warmup=spec["warmup"], count_flops=False,
                        n_images=max(256, cfg.train.micro_batch * 4))
    row.update(recipe=spec["recipe"], arch=cfg.model.arch, resolution=cfg.model.resolution, ch=cfg.model.ch,
               diffaug=cfg.train.diffaug, extra=spec.get("extra", []),
               min_per_1k_steps=round(row["s_per_iter"] * 1000 / 60, 2))
    return row


CHILDREN = {"info": child_info, "step": child_step, "recipe": child_recipe}


def _orthogonal_init_on_gpu() -> None:
    """Harness speed-up only: the models' orthogonal init (a QR per layer) runs on the GPU instead of the CPU
    (tens of seconds per child at ch 96 on a slow CPU). Same distribution; timing and memory figures unchanged."""
    import torch

    if not torch.cuda.is_available():
        return
    plain = torch.nn.init.orthogonal_

    def orthogonal_(tensor, gain=1, generator=None):
        if generator is not None or tensor.device.type != "cpu" or tensor.numel() < 65536:
            return plain(tensor, gain) if generator is None else plain(tensor, gain, generator=generator)
        try:
            on_gpu = torch.empty(tensor.shape, device="cuda", dtype=tensor.dtype)
            plain(on_gpu, gain)
            with torch.no_grad():
                tensor.copy_(on_gpu.cpu())
            return tensor
        except Exception:  # noqa: BLE001 - fall back to the CPU
            return plain(tensor, gain)

    torch.nn.init.orthogonal_ = orthogonal_


def child_main(spec: dict) -> None:
    import torch

    _orthogonal_init_on_gpu()
    try:
        row = CHILDREN[spec["item"]](spec)
        row["ok"] = True
    except torch.OutOfMemoryError as e:
        row = {"ok": False, "oom": True, "error": f"OutOfMemoryError: {str(e).splitlines()[0][:300]}"}
    print("RESULT " + json.dumps(row), flush=True)


# ------------------------------------------------------------------------------------------------------------
# Parent


def _run(cmd: list[str], timeout: float, cwd: str | Path | None = None) -> tuple[str, str, int | str]:
    """Run `cmd` in its own process group; on timeout kill the whole group (compile workers included)."""
    import signal

    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                         start_new_session=True)
    try:
        stdout, stderr = p.communicate(timeout=timeout)
        return stdout, stderr, p.returncode
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        stdout, stderr = p.communicate()
        return stdout or "", stderr or "", "timeout"


class Runner:
    def __init__(self, args):
        self.args = args
        self.t_start = time.perf_counter()
        self.out = open(args.out, "a", buffering=1)
        self.log = open(args.log, "a", buffering=1) if args.log else None
        self.rows: list[dict] = []

    def remaining(self) -> float:
        return self.args.budget_s - (time.perf_counter() - self.t_start)

    def say(self, msg: str) -> None:
        line = f"[{time.perf_counter() - self.t_start:6.1f}s] {msg}"
        print(line, flush=True)
        if self.log:
            self.log.write(line + "\n")

    def write(self, row: dict) -> dict:
        row["t_since_start_s"] = round(time.perf_counter() - self.t_start, 1)
        self.rows.append(row)
        self.out.write(json.dumps(row) + "\n")
        self.out.flush()
        os.fsync(self.out.fileno())
        return row

    def _logchild(self, name: str, text: str) -> None:
        if self.log and text:
            self.log.write(f"----- {name} (stdout+stderr, last 20000 chars)\n{text[-20000:]}\n")

    def child(self, name: str, spec: dict, cap: float, min_needed: float = 20, post=None) -> dict | None:
        """Run one configuration in a subprocess; returns its row (also written, after `post(row)`)."""
        timeout = min(cap, self.remaining())
        if timeout < min_needed:
            self.say(f"skip {name}: {self.remaining():.0f}s of budget left")
            return self.write({"item": spec["item"], "name": name, "ok": False, "skipped": "budget"})
        self.say(f"start {name} (timeout {timeout:.0f}s)")
        t0 = time.perf_counter()
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
        stdout, stderr, rc = _run(cmd, timeout)
        wall = round(time.perf_counter() - t0, 1)
        self._logchild(name, stdout + stderr)
        line = next((ln for ln in stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is not None:
            row = {"item": spec["item"], "name": name, **json.loads(line[7:])}
        else:
            tail = [ln for ln in stderr.strip().splitlines() if ln.strip()][-12:]
            row = {"item": spec["item"], "name": name, "ok": False, "rc": rc,
                   "error": "timed out" if rc == "timeout" else "crashed", "stderr_tail": tail}
        row["wall_s"] = wall
        row["spec"] = spec
        if post is not None:
            post(row)
        self.say(f"done {name}: " + _brief(row))
        return self.write(row)


def _brief(row: dict) -> str:
    if not row.get("ok"):
        return "FAILED " + str(row.get("error") or row.get("skipped")) + (
            "\n    " + "\n    ".join(row.get("stderr_tail", [])) if row.get("stderr_tail") else "")
    if "s_per_iter" in row:
        mem = row.get("peak_mem_mb", row.get("peak_rss_mb"))
        return f"{row['s_per_iter']:.4f} s/iter, {row['img_s']:.1f} img/s, peak {mem} MB"
    return json.dumps({k: v for k, v in row.items() if k not in ("spec",)})[:600]


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


def run_compile(r: Runner, q: bool, step) -> None:
    mb = 8 if q else 64
    step(f"bf16-compile-b{mb}", "bf16", mb, ["train.compile=true"], cap=r.args.compile_cap, min_needed=60)


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
    stdout, stderr, rc = _run(cmd, timeout, cwd=work)
    text = stdout + stderr
    wall = round(time.perf_counter() - t0, 1)
    r._logchild("train", text)
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


def run_pytest(r: Runner, q: bool, out_dir: Path) -> None:
    timeout = min(150.0, r.remaining())
    if timeout < 30:
        r.say(f"skip pytest: {r.remaining():.0f}s left")
        r.write({"item": "pytest", "ok": False, "skipped": "budget"})
        return
    tests = [str(SRC / "tests" / name) for name in ("test_gpu.py", "test_training.py", "test_sampling.py")]
    # -vv on top of the project's addopts -q: one line per test, so a run cut off at its timeout still counts.
    cmd = [sys.executable, "-m", "pytest", "-vv", "-x", "-p", "no:cacheprovider", "-rfE", "--durations=8", *tests]
    r.say(f"start pytest (timeout {timeout:.0f}s)")
    t0 = time.perf_counter()
    # cwd outside the source tree: `python -m` puts the cwd on sys.path, and the installed package (with its
    # smallgan.recipes mapping) must be the one imported.
    work = tempfile.mkdtemp(prefix="smallgan-pytest-")
    stdout, stderr, rc = _run(cmd, timeout, cwd=work)
    text = stdout + stderr
    wall = round(time.perf_counter() - t0, 1)
    (out_dir / "pytest.txt").write_text(f"$ {' '.join(cmd)}\nrc={rc} wall={wall}s\n\n{text}")
    summary = [ln for ln in text.splitlines() if re.search(r"\b(passed|failed|error|errors)\b", ln)]
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|errors?|skipped|xfailed)", text)}
    per_test = re.findall(r"^(\S+::\S+) (PASSED|FAILED|ERROR|SKIPPED|XFAIL)", text, flags=re.M)
    if not counts:  # cut off: count the per-test lines
        for _, outcome in per_test:
            counts[outcome.lower()] = counts.get(outcome.lower(), 0) + 1
    row_failed = [name for name, outcome in per_test if outcome in ("FAILED", "ERROR")]
    row = {"item": "pytest", "ok": rc == 0, "rc": rc, "wall_s": wall, "counts": counts,
           "summary": summary[-3:], "failed_tests": row_failed, "tests_run": len(per_test)}
    if rc not in (0, "timeout"):
        row["error_tail"] = [ln for ln in text.strip().splitlines() if ln.strip()][-25:]
    r.say("done pytest: " + json.dumps(row))
    r.write(row)


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench_gpu.jsonl", help="JSONL file (appended, flushed per row)")
    ap.add_argument("--log", default="", help="full child output goes here")
    ap.add_argument("--budget-s", type=float, default=480.0, help="wall-time budget for all items")
    ap.add_argument("--compile-cap", type=float, default=150.0, help="timeout of the torch.compile row")
    ap.add_argument("--items", default="info,step,recipe,train,compile,pytest")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (CPU smoke test of this script)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child_main(json.loads(args.child))
        return
    r = Runner(args)
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
        run_compile(r, args.quick, step)
    if "pytest" in items:
        run_pytest(r, args.quick, out_dir)
    table = summary_table(r.rows)
    (out_dir / "summary.md").write_text(table + "\n")
    r.say("finished\n" + table)


if __name__ == "__main__":
    main()
