"""The BigGAN authors' key layout -> smallgan's ``biggan`` modules, tensor by tensor.

:class:`Slot` lists say which of their layers becomes which of ours; :func:`convert_state` maps every tensor by
name and shape (and derives our spectral-norm vectors from their ``u0``), refusing leftovers, gaps and shape
mismatches by name. :func:`check_variants` and :func:`check_attention` refuse, from the keys alone, the
generator variants and attention placements smallgan does not model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from smallgan.convert.base import ConversionError




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


def check_attention(theirs: dict[str, Tensor], module: nn.Module, file: str, key: str) -> None:
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


def check_variants(g: dict[str, Tensor], file: str) -> None:
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
