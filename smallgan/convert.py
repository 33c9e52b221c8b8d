"""Pretrained BigGAN checkpoints -> smallgan run folders (`smallgan convert`).

``biggan-pytorch``: the checkpoints of the BigGAN authors' PyTorch code (ajbrock/BigGAN-PyTorch, ``BigGAN.py``):
``G.pth``, ``D.pth``, ``G_ema.pth`` and ``state_dict.pth`` (which holds the training ``config``). Every tensor
is mapped onto smallgan's ``biggan`` modules by name and shape; anything left over, missing or of another
shape is refused by name. The converted EMA generator in eval mode computes what the authors' generator
computes in eval mode (``G.eval()``: stored BatchNorm statistics, stored spectral-norm vectors).

``hf-biggan-deep``: the generator of huggingface/pytorch-pretrained-BigGAN. Its layout is recognised and
refused (:data:`HF_DIFFERENCE` says why).

Files are read with ``torch.load(weights_only=True)``: a file that would run code when unpickled is refused.
Nothing here downloads anything.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# The run-folder writers of smallgan.checkpoint, named only here: if they move (e.g. to smallgan.io), this line
# is the one to change.
from smallgan.checkpoint import GENERATOR_FILE, atomic_write_text, export_generator, save_checkpoint
from smallgan.config import Config, ConfigError, apply_override, validate
from smallgan.errors import SmallganError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CONVERTED_FILE = "converted.json"   # where a converted run folder records its source


class ConversionError(SmallganError):
    """A checkpoint that cannot be converted exactly; the message names the file, tensor or setting."""


# ---------------------------------------------------------------------------------------------
# Loading without running code


class _Placeholder:
    """Stands in for the few harmless objects the authors' pickles hold besides data; keeps their state as data."""

    dump_patches = False   # read by torch's legacy loader for module classes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state


# Objects in the authors' state_dict.pth: their train.py puts the activation modules into `config`
# (config['G_activation'] = nn.ReLU(...)), and PyTorch <= 1.1 modules pickled their backend through this function.
# Each is replaced by a _Placeholder subclass of the same name: nothing of theirs is constructed or called.
_HARMLESS_GLOBALS = {
    full: type(full.rsplit(".", 1)[1], (_Placeholder,), {})
    for full in ("torch.nn.modules.activation.ReLU", "torch.nn.backends.thnn._get_thnn_function_backend")
}
_GLOBAL_IN_ERROR = re.compile(r"GLOBAL ([\w.]+)")
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C   # the first pickle of a torch.save file before PyTorch 1.6


class _Refused(pickle.UnpicklingError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    if not (isinstance(cls, type) and issubclass(cls, _Placeholder)):
        raise _Refused(f"copyreg._reconstructor of {cls!r}")
    return cls()


class _PlainDataUnpickler(pickle.Unpickler):
    """Plain data only: containers, numbers, strings, numpy scalars, and placeholders for the objects in
    _HARMLESS_GLOBALS. Any other global is refused before anything is called; tensors are not read."""

    def find_class(self, module: str, name: str) -> Any:
        import collections

        import numpy

        # Protocol 2 (PyTorch's default before 1.6) writes Python 2 module names.
        module = {"__builtin__": "builtins", "copy_reg": "copyreg"}.get(module, module)
        full = f"{module}.{name}"
        if full in _HARMLESS_GLOBALS:
            return _HARMLESS_GLOBALS[full]
        allowed = {
            "collections.OrderedDict": collections.OrderedDict, "builtins.set": set, "builtins.frozenset": frozenset,
            "copyreg._reconstructor": _reconstructor, "numpy.dtype": numpy.dtype,
            # numpy scalars (their best_IS / best_FID): a value from a dtype and its bytes
            "numpy.core.multiarray.scalar": _numpy_scalar, "numpy._core.multiarray.scalar": _numpy_scalar,
            "torch._utils._rebuild_tensor_v2": _Placeholder,
            "_codecs.encode": _latin1_bytes,     # how pickle protocol 2 writes bytes
        }
        if full in allowed:
            return allowed[full]
        if module == "torch" and name.endswith("Storage"):
            return _Placeholder
        raise _Refused(full)

    def persistent_load(self, pid: Any) -> Any:
        # torch.save records tensor storages ("storage", ...) and, before 1.6, module classes ("module", cls, ...)
        # as persistent ids; neither is needed from the config file.
        if isinstance(pid, tuple) and pid and pid[0] == "module" and isinstance(pid[1], type) \
                and issubclass(pid[1], _Placeholder):
            return pid[1]
        if isinstance(pid, tuple) and pid and pid[0] == "storage":
            return _Placeholder()
        raise _Refused(f"persistent id {str(pid)[:60]}")


def _latin1_bytes(text: Any, encoding: Any) -> bytes:
    if not isinstance(text, str) or encoding != "latin1":
        raise _Refused("_codecs.encode other than str -> latin1 bytes")
    return text.encode("latin1")


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    import numpy

    if not isinstance(dtype, numpy.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise _Refused("numpy scalar of a non-numeric dtype")
    return numpy.frombuffer(data, dtype=dtype, count=1)[0].item()


def _read_plain_data(path: Path) -> Any:
    """The object of a torch.save file (zip or legacy format), read by :class:`_PlainDataUnpickler`."""
    import io
    import zipfile

    with open(path, "rb") as f:
        if zipfile.is_zipfile(f):
            with zipfile.ZipFile(f) as z:
                name = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
                if name is None:
                    raise ValueError("a zip file without data.pkl")
                return _PlainDataUnpickler(io.BytesIO(z.read(name))).load()
        f.seek(0)
        if _PlainDataUnpickler(f).load() != _LEGACY_MAGIC:
            raise ValueError("not a torch.save file")
        _PlainDataUnpickler(f).load()     # protocol version
        _PlainDataUnpickler(f).load()     # system information
        return _PlainDataUnpickler(f).load()


def load_safely(path: Path, *, plain_data: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; code or unknown objects in the pickle are refused.

    ``plain_data``: where weights-only loading refuses what the authors' state_dict.pth holds (the nn.ReLU
    modules and numpy scalars of its config, which PyTorch < 1.6 files also record as module persistent ids),
    read it again with :class:`_PlainDataUnpickler` (data and placeholders only, never tensors or code).
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path} does not exist")
    try:
        try:
            with torch.serialization.safe_globals([(cls, full) for full, cls in _HARMLESS_GLOBALS.items()]):
                return torch.load(path, map_location="cpu", weights_only=True)
        except (AttributeError, TypeError):  # a PyTorch without (class, name) allowlisting: no placeholders
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = _GLOBAL_IN_ERROR.search(str(e))
        what = found.group(1) if found else "an object that weights-only loading does not allow"
        if plain_data:
            try:
                return _read_plain_data(path)
            except _Refused as refused:
                what = refused.name
            except (pickle.UnpicklingError, ValueError, EOFError, OSError, AttributeError, TypeError):
                pass
        raise ConversionError(f"{path.name} holds code ({what}), not only tensors and plain data; refused, "
                              "nothing in it was run") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConversionError(f"cannot read {path} ({first[:200]}); is it a complete torch.save file?") from None


def _state_dict(obj: Any, path: Path) -> dict[str, Tensor]:
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        raise ConversionError(f"{path.name} is not a state dict (a mapping of names to tensors)")
    return dict(obj)


# ---------------------------------------------------------------------------------------------
# The authors' architecture settings -> smallgan's


G_BLOCKS_TO_RESOLUTION = {3: 32, 4: 64, 5: 128, 6: 256, 7: 512}   # G_arch in their BigGAN.py
_RELUS = ("relu", "inplace_relu", "ir")                            # activation_dict in their utils.py


def _attention_list(value: Any, key: str) -> list[int]:
    # Their G_attn / D_attn are strings such as '64' or '32_64'; '0' (or any resolution no block has) means none.
    try:
        return [int(item) for item in str(value).split("_") if item.strip()]
    except ValueError:
        raise ConversionError(f"state_dict.pth: config['{key}'] = {value!r} is not like '64' or '32_64'") from None


def model_from_authors_config(c: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """ModelConfig fields from the authors' training config; refuses the variants smallgan does not model."""
    def refuse(setting: str, why: str) -> NoReturn:
        raise ConversionError(f"state_dict.pth: config {setting}: {why}; smallgan's biggan cannot represent it "
                              "exactly, so it is not converted")

    if c.get("model", "BigGAN") != "BigGAN":
        refuse(f"model={c['model']!r}", "only BigGAN.py checkpoints convert (not BigGAN-deep or other models)")
    for key in ("G_param", "D_param"):
        if c.get(key, "SN") != "SN":
            refuse(f"{key}={c[key]!r}", "smallgan spectrally normalises every G and D layer")
    if not c.get("G_shared", False):
        refuse("G_shared=False", "without the shared embedding each BatchNorm has its own class embedding")
    if c.get("mybn", False) or c.get("cross_replica", False):
        refuse("mybn/cross_replica", "these BatchNorms keep their statistics in other modules and formats")
    if c.get("norm_style", "bn") != "bn":
        refuse(f"norm_style={c['norm_style']!r}", "smallgan's G uses BatchNorm")
    if not c.get("D_wide", True):
        refuse("D_wide=False (--D_thin)", "smallgan's D blocks are wide (hidden width = output width)")
    for key in ("G_nl", "D_nl"):
        if str(c.get(key, "relu")) not in _RELUS:
            refuse(f"{key}={c[key]!r}", "smallgan uses ReLU")
    try:
        resolution, dim_z = int(c["resolution"]), int(c["dim_z"])
        shared_dim = int(c.get("shared_dim", 0)) or dim_z     # their rule: 0 means dim_z
        fields = {
            "arch": "biggan", "resolution": resolution, "ch": int(c["G_ch"]), "d_ch": int(c["D_ch"]),
            "shared_dim": shared_dim, "n_classes": int(c["n_classes"]), "hier": bool(c.get("hier", False)),
            "g_attention": _attention_list(c.get("G_attn", "64"), "G_attn"),
            "d_attention": _d_attention(_attention_list(c.get("D_attn", "64"), "D_attn"), resolution),
            "bn_eps": float(c.get("BN_eps", 1e-5)), "sn_eps": float(c.get("SN_eps", 1e-8)), "shared_init": "ortho",
        }
    except KeyError as e:
        raise ConversionError(f"state_dict.pth: config has no {e.args[0]!r}; is it a BigGAN-PyTorch state_dict.pth?") \
            from None
    blocks = {v: k for k, v in G_BLOCKS_TO_RESOLUTION.items()}.get(resolution)
    if blocks is None:
        refuse(f"resolution={resolution}", f"BigGAN.py has no {resolution} px table")
    # Their hierarchical G splits z into (blocks + 1) equal chunks and drops the remainder (dim_z is recomputed).
    fields["z_dim"] = dim_z // (blocks + 1) * (blocks + 1) if fields["hier"] else dim_z
    fields["g_attention"] = [r for r in fields["g_attention"] if r in {8 * 2**i for i in range(blocks)}]
    notes = []
    if fields["bn_eps"] != 1e-5:
        notes.append(f"the authors' output BatchNorm always uses eps 1e-5; here it uses BN_eps={fields['bn_eps']:g} "
                     "like the block BatchNorms")
    return fields, notes


def _d_attention(wanted: list[int], resolution: int) -> list[int]:
    # Their D_arch labels each block by the resolution it outputs, except at 32 px where all four blocks are
    # labelled 16 (they output 16, 8, 8, 8): D_attn='16' there puts attention after every block. Translate
    # the labels to output resolutions (a label no block has means none); the attention check then refuses
    # what smallgan cannot place.
    from smallgan.models.biggan import D_BLOCKS

    if resolution == 32:
        return [16, 8] if 16 in wanted else []
    outputs, res = set(), resolution
    for _, down in D_BLOCKS.get(resolution, ()):
        res = res // 2 if down else res
        outputs.add(res)
    return [r for r in wanted if r in outputs]


def model_from_shapes(g: dict[str, Tensor], d: dict[str, Tensor]) -> dict[str, Any]:
    """ModelConfig fields read from the tensor shapes of the authors' G and D state dicts."""
    from smallgan.models.biggan import D_BLOCKS, G_WIDTHS, discriminator_specs
    from smallgan.config import ModelConfig

    def need(sd: dict[str, Tensor], key: str, file: str) -> Tensor:
        if key not in sd:
            raise ConversionError(f"{file} has no {key}; is it a BigGAN.py (ajbrock/BigGAN-PyTorch) state dict?")
        return sd[key]

    blocks = sum(1 for k in g if re.fullmatch(r"blocks\.\d+\.0\.conv1\.weight", k))
    if blocks not in G_BLOCKS_TO_RESOLUTION:
        raise ConversionError(f"G.pth has {blocks} residual blocks; BigGAN.py generators have 3 to 7 "
                              "(32 to 512 px)")
    res = G_BLOCKS_TO_RESOLUTION[blocks]
    n_classes, shared_dim = need(g, "shared.weight", "G.pth").shape
    chunk = need(g, "linear.weight", "G.pth").shape[1]
    cond = need(g, "blocks.0.0.bn1.gain.weight", "G.pth").shape[1]
    hier = cond != shared_dim    # with hierarchical z every BatchNorm sees [shared embedding, z chunk]
    fields = {
        "arch": "biggan", "resolution": res, "shared_dim": int(shared_dim), "n_classes": int(n_classes),
        "ch": need(g, "output_layer.2.weight", "G.pth").shape[1] // G_WIDTHS[res][-1],
        "d_ch": need(d, "blocks.0.0.conv1.weight", "D.pth").shape[0] // D_BLOCKS[res][0][0],
        "hier": hier, "z_dim": int((cond - shared_dim) * (blocks + 1) if hier else chunk),
        "g_attention": [8 * 2**i for i in range(blocks) if f"blocks.{i}.1.gamma" in g],
        # The authors' ImageNet launch values (scripts/launch_BigGAN_bs256x8.sh); shapes do not carry them.
        "bn_eps": 1e-5, "sn_eps": 1e-6, "shared_init": "ortho",
    }
    specs = discriminator_specs(ModelConfig(**{**fields, "d_attention": []}))
    fields["d_attention"] = sorted({s.resolution for i, s in enumerate(specs) if f"blocks.{i}.1.gamma" in d},
                                   reverse=True)
    return fields


def train_from_authors_config(c: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """TrainConfig fields from the authors' optimiser and EMA settings (those smallgan has)."""
    t: dict[str, Any] = {}
    pairs = (("g_lr", "G_lr", float), ("d_lr", "D_lr", float), ("adam_eps", "adam_eps", float),
             ("d_steps", "num_D_steps", int), ("ema_decay", "ema_decay", float), ("ema_start", "ema_start", int),
             ("ortho_beta", "G_ortho", float))
    for ours, theirs, kind in pairs:
        if c.get(theirs) is not None:
            t[ours] = kind(c[theirs])
    if c.get("G_B1") is not None and c.get("G_B2") is not None:
        t["betas"] = [float(c["G_B1"]), float(c["G_B2"])]
    if c.get("batch_size"):
        t["batch"] = int(c["batch_size"]) * int(c.get("num_G_accumulations", 1) or 1)
    notes = []
    if (c.get("D_B1"), c.get("D_B2")) != (c.get("G_B1"), c.get("G_B2")):
        notes.append(f"smallgan uses one pair of Adam betas for G and D; took G's {t.get('betas')}")
    return t, notes


# ---------------------------------------------------------------------------------------------
# Tensor mapping


@dataclass(frozen=True)
class Slot:
    """One layer: its prefix in the authors' state dict and in smallgan's, and how its tensors translate.

    kind: ``sn`` (spectrally normalised conv / linear / embedding: weight, [bias], u0, sv0), ``ccbn``
    (conditional BatchNorm: gain and bias SN linears, stored_mean, stored_var), ``bn`` (the output BatchNorm:
    gain, bias, stored_mean, stored_var), ``tensor`` (one tensor as it is).
    """

    kind: str
    theirs: str
    ours: str


def _attention_slots(theirs: str, ours: str) -> list[Slot]:
    return [Slot("sn", f"{theirs}.{n}", f"{ours}.{n}") for n in ("theta", "phi", "g", "o")] + \
        [Slot("tensor", f"{theirs}.gamma", f"{ours}.gamma")]


def generator_slots(G: nn.Module) -> list[Slot]:
    """Authors' G (blocks.{i}.0 a GBlock, blocks.{i}.1 its attention, output_layer = bn, ReLU, conv) -> ours."""
    slots = [Slot("tensor", "shared.weight", "shared.weight"), Slot("sn", "linear", "linear")]
    for i, (name, block) in enumerate(G.blocks.items()):
        p, o = f"blocks.{i}.0", f"blocks.{name}"
        slots += [Slot("ccbn", f"{p}.bn1", f"{o}.bn1"), Slot("sn", f"{p}.conv1", f"{o}.conv1"),
                  Slot("ccbn", f"{p}.bn2", f"{o}.bn2"), Slot("sn", f"{p}.conv2", f"{o}.conv2")]
        if block.skip is not None:
            slots.append(Slot("sn", f"{p}.conv_sc", f"{o}.skip"))
        if name in G.attention:
            slots += _attention_slots(f"blocks.{i}.1", f"attention.{name}")
    return slots + [Slot("bn", "output_layer.0", "to_rgb.bn"), Slot("sn", "output_layer.2", "to_rgb.conv")]


def discriminator_slots(D: nn.Module) -> list[Slot]:
    """Authors' D (blocks.{i}.0 a DBlock, blocks.{i}.1 its attention, linear, embed) -> ours."""
    slots = []
    for i, (name, block) in enumerate(D.blocks.items()):
        p, o = f"blocks.{i}.0", f"blocks.{name}"
        slots += [Slot("sn", f"{p}.conv1", f"{o}.conv1"), Slot("sn", f"{p}.conv2", f"{o}.conv2")]
        if block.skip is not None:
            slots.append(Slot("sn", f"{p}.conv_sc", f"{o}.skip"))
        if name in D.attention:
            slots += _attention_slots(f"blocks.{i}.1", f"attention.{name}")
    if D.head.embed is None:
        raise ConversionError("the authors' D always projects onto a class embedding; a one-class model has "
                              "nothing smallgan's unconditional D can hold it in")
    return slots + [Slot("sn", "linear", "head.linear"), Slot("sn", "embed", "head.embed")]


_SN = ".parametrizations.weight"


def _pairs(slot: Slot, ours: dict[str, Tensor]) -> list[tuple[str, str, tuple[int, ...]]]:
    """(their key, our key, the shape we need) for each tensor of a slot; our key "" for buffers we recompute."""
    t, o = slot.theirs, slot.ours
    if slot.kind == "tensor":
        return [(t, o, tuple(ours[o].shape))]
    if slot.kind == "sn":
        weight = ours[f"{o}{_SN}.original"]
        pairs = [(f"{t}.weight", f"{o}{_SN}.original", tuple(weight.shape))]
        if f"{o}.bias" in ours:
            pairs.append((f"{t}.bias", f"{o}.bias", tuple(ours[f"{o}.bias"].shape)))
        # u0: their power-iteration vector, (1, out); sv0: the last sigma, kept for logging only (layers.py).
        return pairs + [(f"{t}.u0", "", (1, weight.shape[0])), (f"{t}.sv0", "", (1,))]
    if slot.kind == "ccbn":
        return (_pairs(Slot("sn", f"{t}.gain", f"{o}.gain"), ours) + _pairs(Slot("sn", f"{t}.bias", f"{o}.bias"), ours)
                + [(f"{t}.stored_mean", f"{o}.norm.running_mean", tuple(ours[f"{o}.norm.running_mean"].shape)),
                   (f"{t}.stored_var", f"{o}.norm.running_var", tuple(ours[f"{o}.norm.running_var"].shape))])
    if slot.kind == "bn":
        return [(f"{t}.{a}", f"{o}.{b}", tuple(ours[f"{o}.{b}"].shape))
                for a, b in (("gain", "weight"), ("bias", "bias"), ("stored_mean", "running_mean"),
                             ("stored_var", "running_var"))]
    raise ValueError(f"unknown slot kind {slot.kind!r}")


def spectral_norm_vectors(weight: Tensor, u0: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Our (u, v) for the authors' (W, u0): the same sigma in eval mode.

    Their SN in eval mode (layers.py, ``SN.W_`` with ``self.training`` False) keeps u0 and, at every forward,
    takes ``v = normalize(u0 W)``, ``u = normalize(v W^T)`` and divides W by ``v W^T u^T = |W v|``. Ours divides
    by ``u^T W v`` with its stored u, v: storing exactly that v and u gives the same sigma.
    """
    mat = weight.double().flatten(1)
    v = F.normalize(mat.t() @ u0.double().reshape(-1), dim=0, eps=eps)
    u = F.normalize(mat @ v, dim=0, eps=eps)
    return u.float(), v.float()


def _names(keys: Sequence[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def convert_state(
    theirs: dict[str, Tensor], slots: list[Slot], module: nn.Module, *, file: str, model: str, eps: float,
) -> dict[str, Tensor]:
    """The authors' state dict -> a complete state dict for `module`, or a one-line refusal naming the tensor."""
    ours = module.state_dict()
    pairs = [p for slot in slots for p in _pairs(slot, ours)]
    wanted = {their for their, _, _ in pairs}
    missing = [their for their, _, _ in pairs if their not in theirs]
    leftover = [k for k in theirs if k not in wanted]
    if missing or leftover:
        parts = ([f"missing {_names(missing)}"] if missing else []) + \
                ([f"no place in smallgan's model for {_names(leftover)}"] if leftover else [])
        raise ConversionError(f"{file} does not fit {model}: {'; '.join(parts)}")
    for their, _, shape in pairs:
        if tuple(theirs[their].shape) != shape:
            raise ConversionError(f"{file}: {their} has shape {tuple(theirs[their].shape)}, but {model} needs "
                                  f"{shape}; fix the architecture with --set model.KEY=VALUE")
    out: dict[str, Tensor] = {}
    for their, our, _ in pairs:
        if our:
            out[our] = theirs[their].detach().float().clone()
    for slot in slots:
        for t, o in _sn_layers(slot):
            weight, u0 = theirs[f"{t}.weight"], theirs[f"{t}.u0"]
            if not torch.isfinite(weight).all() or float((weight.double().flatten(1).t() @ u0.double()[0]).norm()) == 0:
                raise ConversionError(f"{file}: {t}.weight is not finite or {t}.u0 gives sigma 0; the checkpoint "
                                      "is damaged")
            out[f"{o}{_SN}.0.u"], out[f"{o}{_SN}.0.v"] = spectral_norm_vectors(weight, u0, eps)
    for key, value in ours.items():
        if key.endswith("num_batches_tracked"):   # the authors' BatchNorms do not count batches
            out[key] = torch.zeros_like(value)
    assert set(out) == set(ours), sorted(set(ours) ^ set(out))
    return out


def _sn_layers(slot: Slot) -> list[tuple[str, str]]:
    if slot.kind == "sn":
        return [(slot.theirs, slot.ours)]
    if slot.kind == "ccbn":
        return [(f"{slot.theirs}.{n}", f"{slot.ours}.{n}") for n in ("gain", "bias")]
    return []


def _attention_blocks(sd: dict[str, Tensor]) -> list[int]:
    return sorted(int(m.group(1)) for k in sd if (m := re.fullmatch(r"blocks\.(\d+)\.1\.gamma", k)))


def _check_attention(theirs: dict[str, Tensor], module: nn.Module, file: str, key: str) -> None:
    """Attention after the same blocks, or a line that says how to get there (or that smallgan cannot)."""
    ours = [i for i, name in enumerate(module.blocks) if name in module.attention]
    found = _attention_blocks(theirs)
    if found == ours:
        return
    specs = module.specs
    if any(i >= len(specs) for i in found):
        return   # the key check names the surplus blocks
    at = sorted({specs[i].resolution for i in found}, reverse=True)
    firsts = {i for i, s in enumerate(specs) if all(p.resolution != s.resolution for p in specs[:i])}
    where = ", ".join(f"{i} ({specs[i].resolution}x{specs[i].resolution})" for i in found) or "none"
    if set(found) <= firsts:
        raise ConversionError(f"{file} has self-attention after block(s) {where}, the model after "
                              f"{ours or 'none'}; use --set model.{key}={at}")
    raise ConversionError(f"{file} has self-attention after block(s) {where}; smallgan places at most one "
                          "attention block per resolution, after the first block at that resolution")


def _check_variants(g: dict[str, Tensor], file: str) -> None:
    """Refuse the generator variants whose keys give them away, config or not (the keys are what gets loaded)."""
    keys = list(g)
    if any(re.fullmatch(r"blocks\.\d+\.0\.conv[34]\.weight", k) for k in keys):
        raise ConversionError(f"{file} looks like the authors' BigGAN-deep (BigGANdeep.py: conv3/conv4 bottleneck "
                              "blocks); only BigGAN.py checkpoints convert")
    if any(k.endswith((".bn.stored_mean", ".bn.running_mean", "accumulation_counter")) for k in keys):
        raise ConversionError(f"{file} was trained with --mybn or --cross_replica (BatchNorm statistics in "
                              "sub-modules); smallgan's BatchNorm cannot represent them exactly")
    if "shared.weight" not in g and "blocks.0.0.bn1.gain.weight" in g and "blocks.0.0.bn1.gain.u0" not in g:
        raise ConversionError(f"{file} was trained without --G_shared (a class embedding in every BatchNorm); "
                              "smallgan's biggan has one shared embedding")
    if "linear.weight" in g and "linear.u0" not in g:
        raise ConversionError(f"{file} has no spectral-norm vectors (u0): it was trained with G_param other than "
                              "SN; smallgan spectrally normalises every layer")


# ---------------------------------------------------------------------------------------------
# biggan-pytorch


@dataclass
class Converted:
    """A converted model, ready to write as a run folder."""

    cfg: Config
    G: nn.Module
    D: nn.Module
    G_ema: nn.Module
    class_names: list[str]
    source: dict[str, Any]
    notes: list[str]


def _build(cfg: Config, which: str) -> nn.Module:
    from smallgan.registry import build_discriminator, build_generator

    build = build_generator if which == "G" else build_discriminator
    # Shapes only on the meta device (no orthogonal init of a 70M-parameter model), then real empty storage
    # that load_state_dict fills completely.
    with torch.device("meta"):
        module = build(cfg.model)
    return module.to_empty(device="cpu")


def _describe(cfg: Config, source: str) -> str:
    m = cfg.model
    return (f"smallgan's biggan from {source} ({m.resolution} px, ch={m.ch}, d_ch={m.d_ch or m.ch}, z_dim={m.z_dim}, "
            f"shared_dim={m.shared_dim}, hier={str(m.hier).lower()}, {m.n_classes} classes, "
            f"g_attention={m.g_attention}, d_attention={m.d_attention})")


def _json_safe(value: Any) -> Any:
    """Plain data as it is; anything else (their config's activation modules) as its type name."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)) or (isinstance(value, float) and math.isfinite(value)):
        return value
    return f"<{type(value).__name__}>"   # e.g. <ReLU> for their activation modules


def convert_biggan_pytorch(src: Path, suffix: str = "", overrides: Iterable[str] = ()) -> Converted:
    """Read and map an authors' checkpoint folder; nothing is written (see :func:`write_run`)."""
    src = Path(src)
    if not src.is_dir():
        raise ConversionError(f"{src} is not a folder; pass the folder that holds G{suffix}.pth, D{suffix}.pth, "
                              f"G_ema{suffix}.pth and state_dict{suffix}.pth")
    if suffix and not suffix.startswith("_"):
        suffix = "_" + suffix       # their save_weights joins the suffix with '_': G_best0.pth
    files = {name: src / f"{name}{suffix}.pth" for name in ("G", "D", "G_ema", "state_dict")}
    for name in ("G", "D"):
        if not files[name].is_file():
            present = ", ".join(sorted(p.name for p in src.glob("*.pth"))) or "no .pth files"
            raise ConversionError(f"{files[name]} does not exist (the folder has {present}); "
                                  "pick the copy with --suffix, e.g. --suffix _best0")
    notes: list[str] = []
    g = _state_dict(load_safely(files["G"]), files["G"])
    d = _state_dict(load_safely(files["D"]), files["D"])
    if files["G_ema"].is_file():
        g_ema = _state_dict(load_safely(files["G_ema"]), files["G_ema"])
    else:
        g_ema = g
        notes.append(f"no {files['G_ema'].name} (trained without --ema): the EMA generator is a copy of G")

    _check_variants(g, files["G"].name)
    cfg = Config()
    cfg.data.path = ""          # the authors' data set is theirs; training from this folder names its own
    itr = None
    train_fields: dict[str, Any] = {}
    if files["state_dict"].is_file():
        state = load_safely(files["state_dict"], plain_data=True)
        if not isinstance(state, dict) or not isinstance(state.get("config"), dict):
            raise ConversionError(f"{files['state_dict'].name} has no 'config' dict; remove it to infer the "
                                  "architecture from the tensor shapes")
        model_fields, more = model_from_authors_config(state["config"])
        train_fields, more2 = train_from_authors_config(state["config"])
        notes += more + more2
        itr = state.get("itr")
        source = f"{files['state_dict'].name}'s config"
        their_config = _json_safe(state["config"])
    else:
        model_fields = model_from_shapes(g, d)
        notes.append(f"no {files['state_dict'].name}: architecture read from the tensor shapes; bn_eps=1e-5 and "
                     "sn_eps=1e-6 are the authors' ImageNet launch values (--set model.bn_eps=... to change)")
        source = "the tensor shapes"
        their_config = None
    for k, v in model_fields.items():
        setattr(cfg.model, k, v)
    for k, v in train_fields.items():
        setattr(cfg.train, k, v)
    overrides = list(overrides)
    try:
        for item in overrides:
            apply_override(cfg, item)
        validate(cfg)
    except ConfigError as e:
        raise ConversionError(f"the converted config is not valid: {e}") from None
    if overrides:
        source += " and --set " + " ".join(overrides)

    G, D, G_ema = _build(cfg, "G"), _build(cfg, "D"), _build(cfg, "G")
    model = _describe(cfg, source)
    eps = cfg.model.sn_eps
    for module, sd, name, key in ((G, g, files["G"].name, "g_attention"), (D, d, files["D"].name, "d_attention"),
                                  (G_ema, g_ema, files["G_ema"].name, "g_attention")):
        _check_attention(sd, module, name, key)
        slots = generator_slots(module) if module is not D else discriminator_slots(module)
        module.load_state_dict(convert_state(sd, slots, module, file=name, model=model, eps=eps))
    n = cfg.model.n_classes
    info = {"from": "biggan-pytorch (ajbrock/BigGAN-PyTorch, BigGAN.py)", "folder": str(src.resolve()),
            "files": [p.name for p in files.values() if p.is_file()], "authors_itr": _json_safe(itr),
            "architecture_from": source, "authors_config": their_config, "notes": notes}
    return Converted(cfg, G.eval(), D.eval(), G_ema.eval(), [str(i) for i in range(n)], info, notes)


# ---------------------------------------------------------------------------------------------
# Writing a run folder


def check_output_folder(out: Path) -> None:
    """A converted run goes into a new (or empty) folder: nothing of an earlier run is mixed in or replaced."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConversionError(f"{out} already exists and is not an empty folder; choose another --out or remove it")


def write_run(out: Path, converted: Converted) -> Path:
    """Write `out` as a smallgan run folder: config.json, recipe.toml, generator.safetensors (the EMA generator),
    checkpoints/step-0000000/ (G, D, EMA, fresh optimiser states) and converted.json (where it came from)."""
    out = Path(out)
    check_output_folder(out)
    cfg = dataclasses.replace(converted.cfg)
    cfg.train = dataclasses.replace(cfg.train, out_dir=str(out.parent), name=out.name)
    cfg.recipe = out.name
    G, D, G_ema = converted.G, converted.D, converted.G_ema
    t = cfg.train
    state = {
        # Adam as smallgan's trainer makes it at step 0, with the converted optimiser settings: the authors'
        # moments (G_optim.pth) are keyed by their parameter order and are not carried over.
        "g_opt": torch.optim.Adam(G.parameters(), lr=t.g_lr, betas=tuple(t.betas), eps=t.adam_eps).state_dict(),
        "d_opt": torch.optim.Adam(D.parameters(), lr=t.d_lr, betas=tuple(t.betas), eps=t.adam_eps).state_dict(),
        "g_scaler": {}, "d_scaler": {},      # a disabled GradScaler's state
        "counters": {"step": 0, "real_seen": 0}, "real_seen_by_rank": [0], "world": 1,
    }
    out.mkdir(parents=True, exist_ok=True)
    weights = {"G": G.state_dict(), "D": D.state_dict(), "G_ema": G_ema.state_dict()}
    save_checkpoint(out, 0, weights, state, cfg, keep=cfg.train.keep_ckpts, class_names=converted.class_names)
    export_generator(out / GENERATOR_FILE, G_ema, cfg, converted.class_names, 0)
    atomic_write_text(out / "config.json", cfg.to_json())
    atomic_write_text(out / "recipe.toml", config_to_toml(cfg))
    atomic_write_text(out / CONVERTED_FILE, json.dumps(converted.source, indent=2))
    return out


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)       # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def config_to_toml(cfg: Config) -> str:
    """The config as a recipe (``smallgan info --recipe DIR/recipe.toml``); reading it back gives `cfg`."""
    data = cfg.to_dict()
    lines = [f"recipe = {_toml_value(data.pop('recipe'))}"]
    for section, fields in data.items():
        lines += ["", f"[{section}]"] + [f"{k} = {_toml_value(v)}" for k, v in fields.items()]
    text = "\n".join(lines) + "\n"
    from smallgan.config import config_from_dict

    assert config_from_dict(tomllib.loads(text)) == cfg, "recipe.toml does not read back as the config"
    return text


# ---------------------------------------------------------------------------------------------
# hf-biggan-deep (huggingface/pytorch-pretrained-BigGAN): recognised, refused


HF_DIFFERENCE = (
    "its BatchNorms keep {n_stats} sets of statistics, one per truncation in [0, 1] (running_means of shape "
    "({n_stats}, C)), picked when sampling, and smallgan's biggan-deep keeps one set per layer; its output conv "
    "also makes ch channels of which the first 3 are kept, spectrally normalised over all ch"
)


def refuse_hf_biggan_deep(src: Path) -> NoReturn:
    """Check that `src` is a pytorch-pretrained-BigGAN generator, then refuse it with the reason."""
    src = Path(src)
    path = src / "pytorch_model.bin" if src.is_dir() else src
    sd = _state_dict(load_safely(path), path)
    stats = sd.get("generator.layers.0.bn_0.running_means")
    if "generator.gen_z.weight_orig" not in sd or stats is None:
        raise ConversionError(f"{path.name} is not a pytorch-pretrained-BigGAN generator "
                              "(no generator.gen_z.weight_orig / generator.layers.0.bn_0.running_means)")
    reason = HF_DIFFERENCE.format(n_stats=stats.shape[0])
    raise ConversionError(f"hf-biggan-deep: {path.name} cannot be converted exactly: {reason}; nothing was written")
