"""The child processes of benchmarks/bench_gpu.py and benchmarks/gpu_proof.py: one configuration each, in a
fresh process (a fresh Accelerator and allocator; an OOM or a crash loses one row, not the run), printing one
``RESULT {json}`` line.

    python -m benchmarks.gpu_children --child '{"item": "step", "resolution": 32, ...}'
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile


def count_flops_of(fn) -> int:
    """FLOPs of one call of `fn` (forward and backward matmuls, convolutions, attention), with the formulas of
    torch.utils.flop_counter. Its FlopCounterMode is not used as such: the module hooks it installs to attribute
    FLOPs to modules break torch.autograd.grad (orthogonal regularisation) in backward."""
    import torch
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
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return Count.total


def time_trainer(cfg, *, iters: int, warmup: int, count_flops: bool, n_images: int) -> dict:
    """Build the Trainer on synthetic images, time `iters` iterations after `warmup`, optionally count FLOPs."""
    import time

    import torch

    from smallgan.bench import peak_memory, synthetic_images, time_iterations
    from smallgan.registry import count_params
    from smallgan.training.loop import Trainer

    data = synthetic_images(cfg, n_images)
    with tempfile.TemporaryDirectory() as tmp:
        cfg.train.out_dir, cfg.train.name = tmp, "bench"
        t0 = time.perf_counter()
        trainer = Trainer(cfg, dataset=data)
        out: dict = {"build_s": round(time.perf_counter() - t0, 2)}
        timing = time_iterations(trainer.train_iteration, iters=iters, warmup=warmup)
        out["warmup_s"] = timing.warmup_s
        out["losses_finite"] = all(bool(torch.isfinite(v).item()) for v in timing.losses.values())
        out["losses"] = {k: round(float(v), 4) for k, v in timing.losses.items()}
        out.update(peak_memory())
        if count_flops:
            try:
                out["flops_per_iter"] = count_flops_of(trainer.train_iteration)
            except Exception as e:  # noqa: BLE001 - the timing above still counts
                out["flops_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
        out["G_params"], out["D_params"] = count_params(trainer.G), count_params(trainer.D)
        out["device"] = str(trainer.accelerator.device)
        out["accumulation"] = trainer.accumulation
        out["precision"] = trainer.precision   # train.precision=auto (the recipes' default), resolved for the GPU
    t, s = cfg.train, timing.s_per_iter
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
    row = time_trainer(cfg, iters=spec["iters"], warmup=spec["warmup"], count_flops=spec.get("count_flops", False),
                        n_images=max(64, spec["batch"] * 4))
    row.update(resolution=spec["resolution"], ch=spec["ch"], extra=spec.get("extra", []))
    return row


def child_recipe(spec: dict) -> dict:
    from smallgan.config import load_config

    cfg = load_config(spec["recipe"], list(spec.get("extra", [])))
    row = time_trainer(cfg, iters=spec["iters"], warmup=spec["warmup"], count_flops=False,
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", required=True, help="the configuration, as JSON")
    child_main(json.loads(ap.parse_args().child))


if __name__ == "__main__":
    main()
