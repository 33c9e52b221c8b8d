"""``biggan-pytorch``: a folder of the BigGAN authors' checkpoints -> a :class:`Converted` model.

Reads ``G.pth``, ``D.pth``, ``G_ema.pth`` and ``state_dict.pth`` (with a ``--suffix``), settles the architecture
(from their config or the tensor shapes, then ``--set`` overrides), builds smallgan's modules and loads the
mapped tensors. Nothing is written here (see :mod:`smallgan.convert.run_folder`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from smallgan.config import Config, ConfigError, config_from_dict, with_overrides
from smallgan.convert.base import ConversionError, Converted
from smallgan.convert.biggan_pytorch_arch import model_from_authors_config, model_from_shapes, train_from_authors_config
from smallgan.convert.biggan_pytorch_keys import (
    check_attention,
    check_variants,
    convert_state,
    discriminator_slots,
    generator_slots,
)
from smallgan.convert.safe_load import as_state_dict, load_safely


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


def _checkpoint_files(src: Path, suffix: str) -> dict[str, Path]:
    """G, D, G_ema and state_dict files of one copy (`suffix`) in `src`; G and D must exist."""
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
    return files


@dataclass
class _Settled:
    """The converted run's config, where its architecture came from, and what their state_dict file said."""

    cfg: Config
    source: str
    their_config: Any = None
    itr: Any = None


def _settle_config(files: dict[str, Path], g: dict, d: dict, overrides: list[str], notes: list[str]) -> _Settled:
    """The architecture from their config (or the tensor shapes), then the --set overrides; appends notes."""
    train_fields: dict[str, Any] = {}
    their_config = itr = None
    if files["state_dict"].is_file():
        state = load_safely(files["state_dict"], plain_data=True)
        if not isinstance(state, dict) or not isinstance(state.get("config"), dict):
            raise ConversionError(f"{files['state_dict'].name} has no 'config' dict; remove it to infer the "
                                  "architecture from the tensor shapes")
        model_fields, more = model_from_authors_config(state["config"])
        train_fields, more2 = train_from_authors_config(state["config"])
        notes += more + more2
        their_config, itr = _json_safe(state["config"]), state.get("itr")
        source = f"{files['state_dict'].name}'s config"
    else:
        model_fields = model_from_shapes(g, d)
        notes.append(f"no {files['state_dict'].name}: architecture read from the tensor shapes; bn_eps=1e-5 and "
                     "sn_eps=1e-6 are the authors' ImageNet launch values (--set model.bn_eps=... to change)")
        source = "the tensor shapes"
    try:
        # Through the config's own reader, as a recipe: their per-iteration ema_decay / ema_start become
        # train.ema_halflife_kimg / ema_start_kimg at their batch and D steps (real fields, kept by recipe.toml).
        # data.path: the authors' data set is theirs; training from this folder names its own.
        cfg = with_overrides(config_from_dict({"data": {"path": ""}, "model": model_fields, "train": train_fields}),
                             overrides)
    except ConfigError as e:
        raise ConversionError(f"the converted config is not valid: {e}") from None
    return _Settled(cfg, source + (" and --set " + " ".join(overrides) if overrides else ""), their_config, itr)


def convert_biggan_pytorch(src: Path, suffix: str = "", overrides: Iterable[str] = ()) -> Converted:
    """Read and map an authors' checkpoint folder; nothing is written (see :func:`write_run`)."""
    files = _checkpoint_files(Path(src), suffix)
    notes: list[str] = []
    g = as_state_dict(load_safely(files["G"]), files["G"])
    d = as_state_dict(load_safely(files["D"]), files["D"])
    if files["G_ema"].is_file():
        g_ema = as_state_dict(load_safely(files["G_ema"]), files["G_ema"])
    else:
        g_ema = g
        notes.append(f"no {files['G_ema'].name} (trained without --ema): the EMA generator is a copy of G")
    check_variants(g, files["G"].name)
    settled = _settle_config(files, g, d, list(overrides), notes)
    cfg = settled.cfg

    G, D, G_ema = _build(cfg, "G"), _build(cfg, "D"), _build(cfg, "G")
    model = _describe(cfg, settled.source)
    eps = cfg.model.sn_eps
    for module, sd, name, key in ((G, g, files["G"].name, "g_attention"), (D, d, files["D"].name, "d_attention"),
                                  (G_ema, g_ema, files["G_ema"].name, "g_attention")):
        check_attention(sd, module, name, key)
        slots = generator_slots(module) if module is not D else discriminator_slots(module)
        module.load_state_dict(convert_state(sd, slots, module, file=name, model=model, eps=eps))
    n = cfg.model.n_classes
    info = {"from": "biggan-pytorch (ajbrock/BigGAN-PyTorch, BigGAN.py)", "folder": str(Path(src).resolve()),
            "files": [p.name for p in files.values() if p.is_file()], "authors_itr": _json_safe(settled.itr),
            "architecture_from": settled.source, "authors_config": settled.their_config, "notes": notes}
    return Converted(cfg, G.eval(), D.eval(), G_ema.eval(), [str(i) for i in range(n)], info, notes)
