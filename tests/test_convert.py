"""`smallgan convert`: checkpoints of the BigGAN authors' code -> smallgan run folders.

The authors' code is not needed: the checkpoints here are built with their exact key names and shapes
(ajbrock/BigGAN-PyTorch, BigGAN.py and layers.py) at tiny widths, and the converted models are compared with a
reference forward written from their formulas (eval mode: spectral norm from the stored u0, conditional
BatchNorm with gain = 1 + linear(y), bias = linear(y) and the stored statistics).
"""

import json
import math
import subprocess
import sys

import numpy
import pytest
import torch
import torch.nn.backends.thnn  # noqa: F401  (a function PyTorch <= 1.1 pickles referenced)
import torch.nn.functional as F

from smallgan.checkpoint import load_checkpoint
from smallgan.config import load_config, read_config
from smallgan.convert import ConversionError, convert_biggan_pytorch, refuse_hf_biggan_deep, write_run
from smallgan.registry import build_discriminator, build_generator
from smallgan.sampling import load_generator
from their_biggan import (
    D_ARCH, G_ARCH, Builder, chunk_and_cond, convert, their_config, their_generator, write_their_folder,
)

# Our stage names: the resolution a block outputs (suffix when it repeats).
OUR_G_BLOCKS = {32: ["b8", "b16", "b32"], 64: ["b8", "b16", "b32", "b64"]}
OUR_D_BLOCKS = {32: ["b16", "b8", "b8_2", "b8_3"], 64: ["b32", "b16", "b8", "b4", "b4_2"]}

TINY32 = dict(resolution=32, G_ch=8, D_ch=8, dim_z=8, shared_dim=6, hier=True, G_attn="16", D_attn="0",
              n_classes=5, SN_eps=1e-6, BN_eps=1e-5)
TINY64 = dict(resolution=64, G_ch=4, D_ch=8, dim_z=10, shared_dim=7, hier=False, G_attn="0", D_attn="32",
              n_classes=5, SN_eps=1e-6, BN_eps=1e-5)


# ---------------------------------------------------------------------------------------------
# The reference: their eval-mode forward, from their formulas


def sn_weight(sd, p, eps):
    w = sd[f"{p}.weight"]
    mat = w.view(w.shape[0], -1)
    v = F.normalize(sd[f"{p}.u0"] @ mat, eps=eps)           # u0 is not updated in eval mode
    u = F.normalize(v @ mat.t(), eps=eps)
    return w / (v @ mat.t() @ u.t()).squeeze()


def conv(sd, p, x, eps):
    w = sn_weight(sd, p, eps)
    return F.conv2d(x, w, sd.get(f"{p}.bias"), padding=w.shape[-1] // 2)


def linear(sd, p, x, eps):
    return F.linear(x, sn_weight(sd, p, eps), sd.get(f"{p}.bias"))


def ccbn(sd, p, x, y, a):
    gain = (1 + linear(sd, f"{p}.gain", y, a["SN_eps"]))[:, :, None, None]
    bias = linear(sd, f"{p}.bias", y, a["SN_eps"])[:, :, None, None]
    out = F.batch_norm(x, sd[f"{p}.stored_mean"], sd[f"{p}.stored_var"], None, None, False, 0.1, a["BN_eps"])
    return out * gain + bias


def attention(sd, p, x, eps):
    b, c, h, w = x.shape
    theta = conv(sd, f"{p}.theta", x, eps).view(b, c // 8, h * w)
    phi = F.max_pool2d(conv(sd, f"{p}.phi", x, eps), 2).view(b, c // 8, h * w // 4)
    g = F.max_pool2d(conv(sd, f"{p}.g", x, eps), 2).view(b, c // 2, h * w // 4)
    beta = F.softmax(torch.bmm(theta.transpose(1, 2), phi), -1)
    o = conv(sd, f"{p}.o", torch.bmm(g, beta.transpose(1, 2)).view(b, c // 2, h, w), eps)
    return sd[f"{p}.gamma"] * o + x


def g_block(sd, i, x, y, a):
    p, eps = f"blocks.{i}.0", a["SN_eps"]
    up = lambda t: F.interpolate(t, scale_factor=2)  # noqa: E731
    h = up(F.relu(ccbn(sd, f"{p}.bn1", x, y, a)))
    h = conv(sd, f"{p}.conv2", F.relu(ccbn(sd, f"{p}.bn2", conv(sd, f"{p}.conv1", h, eps), y, a)), eps)
    return h + conv(sd, f"{p}.conv_sc", up(x), eps)


def reference_generator(sd, z, y, a):
    emb, n = sd["shared.weight"][y], len(G_ARCH[a["resolution"]][0])
    chunk, _ = chunk_and_cond(a)
    if a["hier"]:
        z0, *zs = torch.split(z, chunk, 1)
        conds = [torch.cat([emb, zi], 1) for zi in zs]
    else:
        z0, conds = z, [emb] * n
    h = linear(sd, "linear", z0, a["SN_eps"]).view(z.shape[0], -1, 4, 4)
    for i in range(n):
        h = g_block(sd, i, h, conds[i], a)
        if f"blocks.{i}.1.gamma" in sd:
            h = attention(sd, f"blocks.{i}.1", h, a["SN_eps"])
    # Their output BatchNorm (layers.bn) is built without BN_eps: eps 1e-5.
    h = F.batch_norm(h, sd["output_layer.0.stored_mean"], sd["output_layer.0.stored_var"],
                     sd["output_layer.0.gain"], sd["output_layer.0.bias"], False, 0.1, 1e-5)
    return torch.tanh(conv(sd, "output_layer.2", F.relu(h), a["SN_eps"]))


def reference_discriminator(sd, x, y, a):
    eps, down = a["SN_eps"], D_ARCH[a["resolution"]][2]
    h = x
    for i in range(len(down)):
        p = f"blocks.{i}.0"
        r = conv(sd, f"{p}.conv2", F.relu(conv(sd, f"{p}.conv1", F.relu(h) if i > 0 else h, eps)), eps)
        r = F.avg_pool2d(r, 2) if down[i] else r
        pool = (lambda t: F.avg_pool2d(t, 2)) if down[i] else (lambda t: t)
        skip = (lambda t: conv(sd, f"{p}.conv_sc", t, eps)) if f"{p}.conv_sc.weight" in sd else (lambda t: t)
        s = pool(skip(h)) if i > 0 else skip(pool(h))     # the first block pools before its 1x1 conv
        h = r + s
        if f"blocks.{i}.1.gamma" in sd:
            h = attention(sd, f"blocks.{i}.1", h, eps)
    h = torch.sum(F.relu(h), [2, 3])
    embed = sn_weight(sd, "embed", eps)
    return (linear(sd, "linear", h, eps) + torch.sum(F.embedding(y, embed) * h, 1, keepdim=True))[:, 0]


# ---------------------------------------------------------------------------------------------
# Helpers



def latents(a, n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    chunk, _ = chunk_and_cond(a)
    z_dim = chunk * (len(G_ARCH[a["resolution"]][0]) + 1) if a["hier"] else a["dim_z"]
    return torch.randn(n, z_dim, generator=g), torch.arange(n) % a["n_classes"]


def our_key(their: str, res: int, net: str) -> str | None:
    """Their key -> ours, by the naming rules (None for u0 / sv0, which become u, v)."""
    parts = their.split(".")
    if parts[-1] in ("u0", "sv0"):
        return None
    blocks = OUR_G_BLOCKS[res] if net == "G" else OUR_D_BLOCKS[res]
    if parts[0] == "blocks":
        name = blocks[int(parts[1])]
        rest = parts[3:]
        head = f"blocks.{name}" if parts[2] == "0" else f"attention.{name}"
        rest = ["skip" if r == "conv_sc" else r for r in rest]
        if rest[-1] in ("stored_mean", "stored_var"):
            rest = rest[:-1] + ["norm", "running_mean" if rest[-1] == "stored_mean" else "running_var"]
        their = ".".join([head] + rest)
    elif parts[0] == "output_layer":
        layer = {"0": "to_rgb.bn", "2": "to_rgb.conv"}[parts[1]]
        leaf = {"gain": "weight", "stored_mean": "running_mean", "stored_var": "running_var"}.get(parts[2], parts[2])
        their = f"{layer}.{leaf}"
    elif net == "D":
        their = f"head.{their}"
    if their.endswith(".weight") and not their.startswith(("shared.", "to_rgb.bn.")):
        their = their[: -len(".weight")] + ".parametrizations.weight.original"
    return their


# ---------------------------------------------------------------------------------------------
# Tests


@pytest.mark.parametrize("arch", [TINY32, TINY64], ids=["32px-hier-G-attention", "64px-flat-D-attention"])
def test_every_tensor_lands_in_its_place(tmp_path, arch):
    theirs = write_their_folder(tmp_path / "theirs", arch)
    run = convert(tmp_path / "theirs", tmp_path / "run")
    weights, state, cfg = load_checkpoint(run / "checkpoints" / "step-0000000")
    res = arch["resolution"]
    for name in ("G", "D", "G_ema"):
        ours, covered = weights[name], set()
        for key, value in theirs[name].items():
            target = our_key(key, res, name[0])
            if target is None:
                continue
            assert torch.equal(ours[target], value), (name, key, target)
            covered.add(target)
            if key.endswith(".weight") and f"{key[:-7]}.u0" in theirs[name]:
                # our u, v: one step of their eval-mode power iteration from u0
                mat, u0 = value.flatten(1).double(), theirs[name][f"{key[:-7]}.u0"].double()[0]
                v = F.normalize(mat.t() @ u0, dim=0)
                u = F.normalize(mat @ v, dim=0)
                prefix = target[: -len(".original")]
                assert torch.allclose(ours[f"{prefix}.0.v"].double(), v, atol=1e-6)
                assert torch.allclose(ours[f"{prefix}.0.u"].double(), u, atol=1e-6)
                covered |= {f"{prefix}.0.u", f"{prefix}.0.v"}
        rest = {k for k in ours if k not in covered}
        assert all(k.endswith("num_batches_tracked") for k in rest), sorted(rest)
    assert state["counters"]["step"] == 0
    G, D = build_generator(cfg.model), build_discriminator(cfg.model)
    for net, key, lr in ((G, "g_opt", 1e-4), (D, "d_opt", 4e-4)):   # fresh Adam with the authors' settings
        opt = torch.optim.Adam(net.parameters())
        opt.load_state_dict(state[key])
        assert opt.param_groups[0]["lr"] == lr and opt.param_groups[0]["eps"] == 1e-6 and not opt.state
    assert cfg.model.n_classes == 5 and cfg.train.g_lr == 1e-4 and cfg.train.batch == 8
    saved = json.loads((run / "config.json").read_text())
    assert saved["model"]["ch"] == arch["G_ch"] and saved["model"]["hier"] is arch["hier"]
    assert json.loads((run / "checkpoints" / "step-0000000" / "class_names.json").read_text()) == list("01234")
    assert json.loads((run / "converted.json").read_text())["authors_itr"] == 1234


@pytest.mark.parametrize("arch", [TINY32, TINY64], ids=["32px-hier-G-attention", "64px-flat-D-attention"])
def test_converted_models_compute_what_the_authors_models_compute(tmp_path, arch):
    theirs = write_their_folder(tmp_path / "theirs", arch)
    run = convert(tmp_path / "theirs", tmp_path / "run")
    z, y = latents(arch)
    G = load_generator(run, device="cpu")            # generator.safetensors: the EMA generator
    with torch.no_grad():
        ours, ref = G.module(z, y), reference_generator(theirs["G_ema"], z, y, arch)
        other = reference_generator(theirs["G"], z, y, arch)
    err = (ours - ref).abs().max().item()
    print(f"G_ema output max abs error {err:.2e}")
    assert err < 1e-3
    assert (ours - other).abs().max().item() > 1e-2      # it is the EMA generator, not G

    weights, _, cfg = load_checkpoint(run / "checkpoints" / "step-0000000")
    D = build_discriminator(cfg.model).eval()
    D.load_state_dict(weights["D"])
    x = torch.rand(len(y), 3, arch["resolution"], arch["resolution"], generator=torch.Generator().manual_seed(1))
    x = x * 2 - 1
    with torch.no_grad():
        logits, ref_logits = D(x, y), reference_discriminator(theirs["D"], x, y, arch)
    err = (logits - ref_logits).abs().max().item()
    print(f"D logit max abs error {err:.2e} (logits of size {ref_logits.abs().max().item():.2f})")
    assert err < 1e-3


def test_one_generator_block_matches_the_reference(tmp_path):
    theirs = write_their_folder(tmp_path / "theirs", TINY32)
    run = convert(tmp_path / "theirs", tmp_path / "run")
    G = load_generator(run, device="cpu").module
    chunk, cond = chunk_and_cond(TINY32)
    g = torch.Generator().manual_seed(5)
    x, c = torch.randn(3, 32, 8, 8, generator=g), torch.randn(3, cond, generator=g)
    with torch.no_grad():
        err = (G.blocks["b16"](x, c) - g_block(theirs["G_ema"], 1, x, c, TINY32)).abs().max().item()
    assert err < 1e-4


@pytest.mark.parametrize("arch, expected", [
    (TINY32, (32, 8, 8, 8, 6, 5, True, [16], [])), (TINY64, (64, 4, 8, 10, 7, 5, False, [], [32]))])
def test_without_state_dict_the_architecture_comes_from_the_shapes(tmp_path, arch, expected):
    theirs = write_their_folder(tmp_path / "theirs", arch, state_dict=False)
    converted = convert_biggan_pytorch(tmp_path / "theirs")
    m = converted.cfg.model
    assert (m.resolution, m.ch, m.d_ch, m.z_dim, m.shared_dim, m.n_classes, m.hier, m.g_attention,
            m.d_attention) == expected
    assert any("tensor shapes" in n for n in converted.notes)
    z, y = latents(arch)
    with torch.no_grad():
        err = (converted.G_ema(z, y) - reference_generator(theirs["G_ema"], z, y, arch)).abs().max().item()
    assert err < 1e-3


def test_their_ema_survives_recipe_toml_config_json_and_a_resumed_run(tmp_path):
    from smallgan.data import PreparedImages
    from smallgan.training.loop import Trainer

    write_their_folder(tmp_path / "theirs", TINY32)   # EMA 0.9999 per iteration from iteration 20,000
    converted = convert_biggan_pytorch(tmp_path / "theirs")
    run = write_run(tmp_path / "run", converted)
    per_iteration = 4 * 2 * 1                           # their batch_size x num_G_accumulations x num_D_steps
    for cfg in (load_config(str(run / "recipe.toml")), read_config(run / "config.json")):
        assert cfg.train.ema_halflife_kimg == pytest.approx(per_iteration * math.log(0.5) / math.log(0.9999) / 1000)
        assert cfg.train.ema_start_kimg == pytest.approx(20000 * per_iteration / 1000)
    # What a continued run does with them: a copy of G until iteration 20,000, then 0.9999 per iteration.
    images = (torch.rand(8, 3, 32, 32) * 255).to(torch.uint8)
    data = PreparedImages(images, torch.arange(8) % 5, [str(i) for i in range(5)])
    trainer = Trainer(load_config(str(run / "recipe.toml"), ["train.max_steps=1", "train.log_with=none"]),
                      resume="latest", dataset=data)
    assert trainer.ema.decay(19999) == 0.0 and trainer.ema.decay(20000) == pytest.approx(0.9999)
    trainer.run()
    assert trainer.counters.step == 1
    # The authors' settings it does not use, in one note (their data and path options are not listed).
    unused = [n for n in converted.notes if "not used" in n]
    assert len(unused) == 1 and "ema=True" in unused[0] and "dataset" not in unused[0]


def test_suffix_selects_the_copy_and_a_missing_file_is_named(tmp_path):
    write_their_folder(tmp_path / "theirs", TINY32, suffix="_best0")
    converted = convert_biggan_pytorch(tmp_path / "theirs", suffix="_best0")
    assert "G_best0.pth" in converted.source["files"] and converted.cfg.model.ch == 8
    with pytest.raises(ConversionError, match=r"G\.pth does not exist .*G_best0\.pth.*--suffix"):
        convert_biggan_pytorch(tmp_path / "theirs")


def test_without_G_ema_the_EMA_generator_is_G(tmp_path):
    theirs = write_their_folder(tmp_path / "theirs", TINY32)
    (tmp_path / "theirs" / "G_ema.pth").unlink()
    converted = convert_biggan_pytorch(tmp_path / "theirs")
    assert any("no G_ema.pth" in n for n in converted.notes)
    z, y = latents(TINY32)
    with torch.no_grad():
        assert torch.equal(converted.G_ema(z, y), converted.G(z, y))
        assert (converted.G(z, y) - reference_generator(theirs["G"], z, y, TINY32)).abs().max() < 1e-3


def test_leftover_missing_and_misshapen_tensors_are_refused_by_name(tmp_path):
    theirs = write_their_folder(tmp_path / "theirs", TINY32)
    g = dict(theirs["G"])
    g["blocks.0.0.extra.weight"] = torch.zeros(2)
    torch.save(g, tmp_path / "theirs" / "G.pth")
    with pytest.raises(ConversionError, match=r"^G\.pth does not fit .*no place .* for blocks\.0\.0\.extra\.weight$"):
        convert_biggan_pytorch(tmp_path / "theirs")
    d = dict(theirs["D"])
    del d["blocks.1.0.conv2.u0"]
    torch.save(theirs["G"], tmp_path / "theirs" / "G.pth")
    torch.save(d, tmp_path / "theirs" / "D.pth")
    with pytest.raises(ConversionError, match=r"^D\.pth does not fit .*: missing blocks\.1\.0\.conv2\.u0$"):
        convert_biggan_pytorch(tmp_path / "theirs")
    torch.save(theirs["D"], tmp_path / "theirs" / "D.pth")
    with pytest.raises(ConversionError) as e:
        convert_biggan_pytorch(tmp_path / "theirs", overrides=["model.shared_dim=7"])
    message = str(e.value)
    assert "\n" not in message
    assert "shared.weight has shape (5, 6)" in message and "needs (5, 7)" in message
    assert "--set model.shared_dim=7" in message


def test_settings_smallgan_cannot_represent_are_refused_in_one_line(tmp_path):
    write_their_folder(tmp_path / "theirs", TINY32)
    path = tmp_path / "theirs" / "state_dict.pth"
    for change, words in (({"G_shared": False}, "G_shared=False"), ({"mybn": True}, "mybn"),
                          ({"model": "BigGANdeep"}, "BigGAN.py"), ({"D_wide": False}, "D_wide")):
        torch.save({"itr": 1, "config": {**their_config(TINY32), **change}}, path)
        with pytest.raises(ConversionError, match=words) as e:
            convert_biggan_pytorch(tmp_path / "theirs")
        assert "\n" not in str(e.value)
    # Without a config the keys give the variant away: --mybn keeps the statistics in a sub-module.
    g = their_generator(TINY32, 1)
    g["blocks.0.0.bn1.bn.stored_mean"] = g.pop("blocks.0.0.bn1.stored_mean")
    torch.save(g, tmp_path / "theirs" / "G.pth")
    path.unlink()
    with pytest.raises(ConversionError, match=r"^G\.pth was trained with --mybn"):
        convert_biggan_pytorch(tmp_path / "theirs")
    # Their 32 px D labels every block 16: D_attn='16' puts attention after all four blocks (16, 8, 8, 8 px).
    arch = {**TINY32, "D_attn": "16"}
    write_their_folder(tmp_path / "d32", arch)
    with pytest.raises(ConversionError, match="at most one attention block per resolution"):
        convert_biggan_pytorch(tmp_path / "d32")


class WritesAFile:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


class OldTorchBackend:
    """How PyTorch <= 1.1 pickled a module's ``_backend``: a call of this function."""

    def __reduce__(self):
        return (torch.nn.backends.thnn._get_thnn_function_backend, ())


def test_a_pickle_with_code_is_refused_and_nothing_runs(tmp_path):
    write_their_folder(tmp_path / "theirs", TINY32)
    marker = tmp_path / "created-by-the-pickle"
    torch.save({"linear.weight": torch.zeros(2), "x": WritesAFile(marker)}, tmp_path / "theirs" / "G.pth")
    with pytest.raises(ConversionError, match=r"^G\.pth holds code \(.*open\).*nothing in it was run$"):
        convert_biggan_pytorch(tmp_path / "theirs")
    assert not marker.exists()
    assert not (tmp_path / "run").exists()


def test_config_objects_of_the_authors_pickles_load_as_data(tmp_path):
    """Their config holds nn.ReLU modules; with PyTorch <= 1.1 each also pickled its backend by a function call."""
    write_their_folder(tmp_path / "theirs", TINY32)
    config = their_config(TINY32)
    config["G_activation"]._backend = OldTorchBackend()
    # best_IS / best_FID: numpy scalars; the format of PyTorch < 1.6 records module classes as persistent ids
    state = {"itr": 7, "best_IS": numpy.float64(97.35), "best_FID": numpy.float64(9.5), "config": config}
    torch.save(state, tmp_path / "theirs" / "state_dict.pth", _use_new_zipfile_serialization=False)
    converted = convert_biggan_pytorch(tmp_path / "theirs")
    assert converted.source["authors_itr"] == 7 and converted.cfg.model.sn_eps == 1e-6
    assert converted.source["authors_config"]["G_activation"] == "<ReLU>"


def smallgan(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "smallgan", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def test_cli_converts_and_the_folder_samples(tmp_path):
    write_their_folder(tmp_path / "theirs", TINY32)
    run = tmp_path / "run"
    r = smallgan("convert", "biggan-pytorch", str(tmp_path / "theirs"), "--out", str(run))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "wrote" in r.stdout
    assert (run / "generator.safetensors").is_file()
    assert (run / "checkpoints" / "step-0000000" / "G.safetensors").is_file()
    r = smallgan("sample", "--run", str(run), "--class", "3", "--grid", "--n", "4", "--out", str(tmp_path / "g.png"))
    assert r.returncode == 0 and (tmp_path / "g.png").is_file(), r.stderr[-2000:]
    r = smallgan("info", "--recipe", str(run / "recipe.toml"), "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    info = json.loads(r.stdout)
    assert (info["arch"], info["resolution"], info["ch"], info["n_classes"]) == ("biggan", 32, 8, 5)
    # A second conversion into the same folder is refused, in one line, before anything is written.
    r = smallgan("convert", "biggan-pytorch", str(tmp_path / "theirs"), "--out", str(run))
    assert r.returncode == 2 and "already exists" in r.stderr and r.stderr.strip().count("\n") == 0


def test_cli_refuses_a_code_pickle_in_one_line(tmp_path):
    write_their_folder(tmp_path / "theirs", TINY32)
    marker = tmp_path / "created-by-the-pickle"
    torch.save({"config": {"x": WritesAFile(marker)}}, tmp_path / "theirs" / "state_dict.pth")
    r = smallgan("convert", "biggan-pytorch", str(tmp_path / "theirs"), "--out", str(tmp_path / "run"))
    assert r.returncode == 2 and "state_dict.pth holds code" in r.stderr, r.stderr
    assert r.stderr.strip().count("\n") == 0
    assert not marker.exists() and not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------
# huggingface/pytorch-pretrained-BigGAN


def hf_state_dict(ch=8, z_dim=8, n_classes=5, n_stats=51):
    """A tiny generator in its layout (model.py: BigGAN.embeddings, generator.gen_z/layers/bn/conv_to_rgb,
    torch.nn.utils.spectral_norm's weight_orig/weight_u/weight_v)."""
    b = Builder(0)

    def stats(p, c):
        b.sd[f"{p}.running_means"], b.sd[f"{p}.running_vars"] = b.randn(n_stats, c), b.randn(n_stats, c).abs()

    def sn(p, out, in_shape, bias=True):
        b.sd[f"{p}.weight_orig"] = b.randn(out, *in_shape)
        b.sd[f"{p}.weight_u"], b.sd[f"{p}.weight_v"] = b.randn(out), b.randn(int(torch.tensor(in_shape).prod()))
        if bias:
            b.sd[f"{p}.bias"] = b.randn(out)

    cond = 2 * z_dim
    b.sd["embeddings.weight"] = b.randn(z_dim, n_classes)
    sn("generator.gen_z", 4 * 4 * 16 * ch, (cond,))
    layers = [(False, 16, 16), (True, 16, 8), (False, 8, 8), (True, 8, 4)]
    for i, (_, cin, cout) in enumerate(layers):
        p, mid = f"generator.layers.{i}", cin * ch // 4
        for k, c in enumerate((cin * ch, mid, mid, mid)):
            stats(f"{p}.bn_{k}", c)
            sn(f"{p}.bn_{k}.scale", c, (cond,), bias=False)
            sn(f"{p}.bn_{k}.offset", c, (cond,), bias=False)
        for k, (o, i_, ks) in enumerate(((mid, cin * ch, 1), (mid, mid, 3), (mid, mid, 3), (cout * ch, mid, 1))):
            sn(f"{p}.conv_{k}", o, (i_, ks, ks))
    stats("generator.bn", 4 * ch)
    b.sd["generator.bn.weight"], b.sd["generator.bn.bias"] = b.randn(4 * ch), b.randn(4 * ch)
    sn("generator.conv_to_rgb", 4 * ch, (4 * ch, 3, 3))
    return b.sd


def test_hf_biggan_deep_is_recognised_and_refused_with_the_reason(tmp_path):
    (tmp_path / "hf").mkdir()
    torch.save(hf_state_dict(), tmp_path / "hf" / "pytorch_model.bin")
    with pytest.raises(ConversionError, match=r"51 sets of statistics, one per truncation") as e:
        refuse_hf_biggan_deep(tmp_path / "hf")
    assert "\n" not in str(e.value) and "nothing was written" in str(e.value)
    torch.save(their_generator(TINY32, 0), tmp_path / "other.bin")
    with pytest.raises(ConversionError, match="not a pytorch-pretrained-BigGAN generator"):
        refuse_hf_biggan_deep(tmp_path / "other.bin")
