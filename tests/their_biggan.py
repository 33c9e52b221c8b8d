"""Checkpoints in the layout of the BigGAN authors' code (ajbrock/BigGAN-PyTorch, BigGAN.py and layers.py), built
at tiny widths with their exact key names and shapes, and their conversion to run folders: what
test_convert.py checks and test_transfer.py fine-tunes from. A helper module, not a test module.
"""

from pathlib import Path

import torch
from torch import nn

from smallgan.convert import convert_biggan_pytorch, write_run

# Their G_arch / D_arch tables (BigGAN.py) at the two resolutions used here: widths in multiples of ch.
G_ARCH = {32: ([4, 4, 4], [4, 4, 4]), 64: ([16, 16, 8, 4], [16, 8, 4, 2])}
D_ARCH = {32: ([4, 4, 4], [4, 4, 4, 4], [True, True, False, False], [16, 16, 16, 16]),
          64: ([1, 2, 4, 8], [1, 2, 4, 8, 16], [True] * 4 + [False], [32, 16, 8, 4, 4])}


def their_config(arch: dict) -> dict:
    """A train.py config as their state_dict.pth stores it (argparse values plus the activation modules)."""
    return {"model": "BigGAN", "G_param": "SN", "D_param": "SN", "G_shared": True, "mybn": False,
            "cross_replica": False, "norm_style": "bn", "D_wide": True, "G_nl": "inplace_relu",
            "D_nl": "inplace_relu", "G_lr": 1e-4, "D_lr": 4e-4, "G_B1": 0.0, "G_B2": 0.999, "D_B1": 0.0,
            "D_B2": 0.999, "adam_eps": 1e-6, "num_D_steps": 1, "batch_size": 4, "num_G_accumulations": 2,
            "ema": True, "ema_decay": 0.9999, "ema_start": 20000, "G_ortho": 0.0, "dataset": "I128_hdf5",
            "G_activation": nn.ReLU(inplace=True), "D_activation": nn.ReLU(inplace=True), **arch}


class Builder:
    def __init__(self, seed: int) -> None:
        self.g = torch.Generator().manual_seed(seed)
        self.sd: dict[str, torch.Tensor] = {}

    def randn(self, *shape, scale=1.0):
        return torch.randn(*shape, generator=self.g) * scale

    def sn(self, p, out, in_shape, bias=True):
        self.sd[f"{p}.weight"] = self.randn(out, *in_shape, scale=0.2)
        if bias:
            self.sd[f"{p}.bias"] = self.randn(out, scale=0.1)
        self.sd[f"{p}.u0"] = self.randn(1, out, scale=0.7)   # an EMA of unit vectors: not unit itself
        self.sd[f"{p}.sv0"] = self.randn(1).abs() + 1

    def stats(self, p, c):
        self.sd[f"{p}.stored_mean"] = self.randn(c, scale=0.3)
        self.sd[f"{p}.stored_var"] = torch.rand(c, generator=self.g) + 0.5

    def attention(self, p, c):
        for name, out, inp in (("theta", c // 8, c), ("phi", c // 8, c), ("g", c // 2, c), ("o", c, c // 2)):
            self.sn(f"{p}.{name}", out, (inp, 1, 1), bias=False)
        self.sd[f"{p}.gamma"] = torch.tensor(0.8)


def chunk_and_cond(a):
    blocks = len(G_ARCH[a["resolution"]][0])
    chunk = a["dim_z"] // (blocks + 1) if a["hier"] else a["dim_z"]
    return chunk, a["shared_dim"] + (chunk if a["hier"] else 0)


def their_generator(a: dict, seed: int) -> dict:
    b, ch = Builder(seed), a["G_ch"]
    ins, outs = [w * ch for w in G_ARCH[a["resolution"]][0]], [w * ch for w in G_ARCH[a["resolution"]][1]]
    chunk, cond = chunk_and_cond(a)
    b.sd["shared.weight"] = b.randn(a["n_classes"], a["shared_dim"])
    b.sn("linear", ins[0] * 16, (chunk,))
    attn = [int(r) for r in a["G_attn"].split("_")]
    for i, (cin, cout) in enumerate(zip(ins, outs)):
        p = f"blocks.{i}.0"
        for bn, c in (("bn1", cin), ("bn2", cout)):
            b.sn(f"{p}.{bn}.gain", c, (cond,), bias=False)
            b.sn(f"{p}.{bn}.bias", c, (cond,), bias=False)
            b.stats(f"{p}.{bn}", c)
        b.sn(f"{p}.conv1", cout, (cin, 3, 3))
        b.sn(f"{p}.conv2", cout, (cout, 3, 3))
        b.sn(f"{p}.conv_sc", cout, (cin, 1, 1))            # every G block upsamples: a learnable skip
        if 8 * 2**i in attn:
            b.attention(f"blocks.{i}.1", cout)
    b.sd["output_layer.0.gain"] = 1 + b.randn(outs[-1], scale=0.1)
    b.sd["output_layer.0.bias"] = b.randn(outs[-1], scale=0.1)
    b.stats("output_layer.0", outs[-1])
    b.sn("output_layer.2", 3, (outs[-1], 3, 3))
    return b.sd


def their_discriminator(a: dict, seed: int) -> dict:
    b, ch = Builder(seed), a["D_ch"]
    mid, outs, down, labels = D_ARCH[a["resolution"]]
    ins, outs = [3] + [w * ch for w in mid], [w * ch for w in outs]
    attn = [int(r) for r in a["D_attn"].split("_")]
    for i, (cin, cout) in enumerate(zip(ins, outs)):
        p = f"blocks.{i}.0"
        b.sn(f"{p}.conv1", cout, (cin, 3, 3))
        b.sn(f"{p}.conv2", cout, (cout, 3, 3))
        if cin != cout or down[i]:
            b.sn(f"{p}.conv_sc", cout, (cin, 1, 1))
        if labels[i] in attn:
            b.attention(f"blocks.{i}.1", cout)
    b.sn("linear", 1, (outs[-1],))
    b.sn("embed", a["n_classes"], (outs[-1],), bias=False)
    return b.sd


def write_their_folder(folder: Path, arch: dict, *, suffix: str = "", state_dict: bool = True) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    sds = {"G": their_generator(arch, 1), "D": their_discriminator(arch, 2), "G_ema": their_generator(arch, 3)}
    for name, sd in sds.items():
        torch.save(sd, folder / f"{name}{suffix}.pth")
    if state_dict:
        state = {"itr": 1234, "epoch": 3, "save_num": 0, "save_best_num": 0, "best_IS": 0, "best_FID": 999999,
                 "config": their_config(arch)}
        torch.save(state, folder / f"state_dict{suffix}.pth")
    return sds


def convert(src: Path, out: Path, **kwargs) -> Path:
    return write_run(out, convert_biggan_pytorch(src, **kwargs))

