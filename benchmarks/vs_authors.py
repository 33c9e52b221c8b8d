"""Our training step against the BigGAN authors' code (BigGAN-PyTorch) at the same settings, in one run.

    python -m benchmarks.vs_authors --ref ~/src/BigGAN-PyTorch --resolution 64 --ch 32 --batch 16
    python -m benchmarks.vs_authors --ref ~/src/BigGAN-PyTorch --resolution 32 64 128 --device cuda --ch 96

`--ref` is a checkout of github.com/ajbrock/BigGAN-PyTorch: nothing is fetched at run time and none of its code
is copied here; its modules are imported from that folder, in a subprocess of their own (its `datasets.py`
shadows Hugging Face's).

Both sides do the same iteration, in fp32: d_steps D updates on (fakes, reals) with the hinge loss, one G update,
orthogonal regularisation of G (beta 1e-4, the shared embedding left out) and an EMA of G; G with skip-z and a
shared embedding, self-attention at the same resolution in G and D, one class. Ours runs through the real
Trainer (smallgan.bench); theirs through their G_D wrapper, `losses`, `utils.ortho` and `utils.ema`, as their
train_fns.py does. Sides take turns within each repeat (each in a fresh process), so background load hits them
alike; the median ratio of img/s (real images through D per second) is printed, with each side's peak memory
(CUDA max allocated, or the process's peak RSS and its growth from after the imports, on the CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

ATTENTION = {32: 16, 64: 32, 128: 64}
G_BLOCKS = {32: 3, 64: 4, 128: 5}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # Linux reports KiB


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def ours(args: argparse.Namespace) -> dict:
    from smallgan.bench import bench_config, run_benchmark

    start = _current_rss_mb()
    cfg = bench_config("biggan", args.resolution, args.ch, args.batch, args.d_steps, "no",
                       [f"model.shared_dim={args.shared_dim}", "model.hier=true", "train.ortho_beta=1e-4",
                        "train.channels_last=true"] + list(args.set or []))
    row = run_benchmark(cfg, iters=args.iters, warmup=args.warmup, device=args.device)
    return {"s_per_iter": row["s_per_iter"], "peak_mem_mb": row["peak_mem_mb"],
            "growth_mb": round(row["peak_mem_mb"] - start, 1) if row["device"] == "cpu" else None,
            "device": row["device"], "G_params": row["G_params"], "D_params": row["D_params"]}


def _their_step(G, D, GD, G_ema, ema, losses, utils, x, y, z_dim: int, d_steps: int) -> None:
    """One iteration of their train_fns.GAN_training_function (no accumulation, no toggle_grads)."""
    import torch

    for _ in range(d_steps):
        D.optim.zero_grad()
        z, yf = torch.randn(x.shape[0], z_dim, device=x.device), torch.zeros_like(y)
        D_fake, D_real = GD(z, yf, x, y, train_G=False, split_D=False)
        loss_real, loss_fake = losses.discriminator_loss(D_fake, D_real)
        (loss_real + loss_fake).backward()
        D.optim.step()
    G.optim.zero_grad()
    z, yf = torch.randn(x.shape[0], z_dim, device=x.device), torch.zeros_like(y)
    losses.generator_loss(GD(z, yf, train_G=True, split_D=False)).backward()
    utils.ortho(G, 1e-4, blacklist=list(G.shared.parameters()))
    G.optim.step()
    ema.update()


def theirs(args: argparse.Namespace) -> dict:
    import io
    from contextlib import redirect_stdout

    import torch

    sys.path.insert(0, str(Path(args.ref).resolve()))
    try:
        import h5py  # noqa: F401   their utils imports their datasets.py, which needs it only for HDF5 data sets
    except ImportError:
        sys.modules["h5py"] = types.ModuleType("h5py")
    import BigGAN
    import losses
    import utils

    device = torch.device("cuda" if args.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
    start = _current_rss_mb()
    r = args.resolution
    z_dim = 20 * (G_BLOCKS[r] + 1)
    attn = str(ATTENTION[r])
    g_kw = dict(G_ch=args.ch, dim_z=z_dim, resolution=r, G_attn=attn, n_classes=1, G_shared=True,
                shared_dim=args.shared_dim, hier=True, G_lr=5e-5, G_B1=0.0, G_B2=0.999)
    with redirect_stdout(io.StringIO()):   # their constructors print parameter counts
        G = BigGAN.Generator(**g_kw).to(device)
        D = BigGAN.Discriminator(D_ch=args.ch, D_attn=attn, resolution=r, n_classes=1, D_lr=2e-4,
                                 D_B1=0.0, D_B2=0.999).to(device)
        G_ema = BigGAN.Generator(**g_kw, skip_init=True, no_optim=True).to(device)
        ema = utils.ema(G, G_ema, 0.9999, 0)
    GD = BigGAN.G_D(G, D)
    x = torch.rand(args.batch, 3, r, r, device=device) * 2 - 1
    y = torch.zeros(args.batch, dtype=torch.long, device=device)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    step = lambda: _their_step(G, D, GD, G_ema, ema, losses, utils, x, y, z_dim, args.d_steps)  # noqa: E731
    for _ in range(args.warmup):
        step()
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(args.iters):
        step()
    sync()
    seconds = (time.perf_counter() - t0) / args.iters
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else _rss_mb()
    return {"s_per_iter": round(seconds, 5), "peak_mem_mb": round(peak, 1),
            "growth_mb": None if cuda else round(peak - start, 1), "device": str(device),
            "G_params": sum(p.numel() for p in G.parameters()), "D_params": sum(p.numel() for p in D.parameters())}


def _run_side(side: str, r: int, args: argparse.Namespace) -> dict | None:
    cmd = [sys.executable, __file__, "--side", side, "--ref", args.ref, "--resolution", str(r),
           "--ch", str(args.ch), "--batch", str(args.batch), "--d-steps", str(args.d_steps),
           "--shared-dim", str(args.shared_dim), "--device", args.device, "--iters", str(args.iters),
           "--warmup", str(args.warmup), "--threads", str(args.threads)]
    cmd += [x for s in (args.set or []) for x in ("--set", s)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        print(f"{side} @ {r}px failed:\n{out.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(line[7:])


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", required=True, help="a checkout of BigGAN-PyTorch (the folder holding BigGAN.py)")
    ap.add_argument("--resolution", type=int, nargs="+", default=[64], choices=sorted(ATTENTION))
    ap.add_argument("--ch", type=int, default=32)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--d-steps", type=int, default=2)
    ap.add_argument("--shared-dim", type=int, default=128)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads per side (0 = torch's default)")
    ap.add_argument("--set", action="append", help="extra config override for our side")
    ap.add_argument("--json", action="store_true", help="also print one JSON object per resolution")
    ap.add_argument("--side", choices=["ours", "theirs"], help=argparse.SUPPRESS)   # child mode
    args = ap.parse_args()
    if not (Path(args.ref) / "BigGAN.py").is_file():
        sys.exit(f"--ref {args.ref}: no BigGAN.py there; pass a checkout of ajbrock/BigGAN-PyTorch")
    if args.side:
        args.resolution = args.resolution[0]
        if args.device == "cpu":
            os.environ["CUDA_VISIBLE_DEVICES"] = ""
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        row = (ours if args.side == "ours" else theirs)(args)
        print("RESULT " + json.dumps({**row, "threads": torch.get_num_threads()}))
        return
    load_before = _load()
    results: dict[tuple[str, int], list[dict]] = {}
    for r in args.resolution:
        for rep in range(args.repeats):
            for side in (("ours", "theirs") if rep % 2 == 0 else ("theirs", "ours")):
                row = _run_side(side, r, args)
                if row is not None:
                    results.setdefault((side, r), []).append(row)
    print(f"\nBigGAN, ch {args.ch}, batch {args.batch}, d_steps {args.d_steps}, fp32, EMA + ortho reg on both "
          f"sides; median of {args.repeats} alternating runs x {args.iters} iterations; "
          f"load average {load_before} -> {_load()}")
    print(f"{'res':>4}{'side':>8}{'s/iter':>10}{'img/s':>9}{'peak MB':>10}{'growth MB':>11}{'G+D params':>12}  device")
    for r in args.resolution:
        img_s = {}
        for side in ("ours", "theirs"):
            rows = results.get((side, r))
            if not rows:
                continue
            s = statistics.median(x["s_per_iter"] for x in rows)
            img_s[side] = [args.batch * args.d_steps / x["s_per_iter"] for x in rows]
            peak = statistics.median(x["peak_mem_mb"] for x in rows)
            growth = rows[0]["growth_mb"]
            growth_txt = f"{statistics.median(x['growth_mb'] for x in rows):.0f}" if growth is not None else "-"
            print(f"{r:>4}{side:>8}{s:>10.4f}{args.batch * args.d_steps / s:>9.1f}{peak:>10.0f}{growth_txt:>11}"
                  f"{rows[0]['G_params'] + rows[0]['D_params']:>12,}  {rows[0]['device']}")
        if len(img_s) == 2:
            # The ratio of each repeat's pair (neighbours in time), then the median: load drifts between repeats.
            ratios = [a / b for a, b in zip(img_s["ours"], img_s["theirs"])]
            print(f"{r:>4}   ratio ours/theirs img/s: {statistics.median(ratios):.2f}x "
                  f"(per repeat: {', '.join(f'{x:.2f}' for x in ratios)})")
            if args.json:
                print(json.dumps({"resolution": r, "ratio": statistics.median(ratios), "ratios": ratios,
                                  "runs": {k: results[(k, r)] for k in ("ours", "theirs")}}))


if __name__ == "__main__":
    main()
