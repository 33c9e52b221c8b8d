"""The BigGAN authors' architecture settings -> smallgan's ModelConfig / TrainConfig fields.

From their training config (``state_dict.pth``'s ``config``), or, without it, from the tensor shapes of their
G and D state dicts. Variants smallgan's ``biggan`` cannot represent exactly are refused by setting name.
"""

from __future__ import annotations

import re
from typing import Any, NoReturn

from torch import Tensor

from smallgan.convert.base import ConversionError


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
    unused = [f"{key}={c[key]!r} ({why})" for key, why in NOT_CARRIED.items()
              if key in c and not (key in SAME_AS and c[key] == c.get(SAME_AS[key]))]
    notes = [f"read from the authors' config, not used: {'; '.join(unused)}"] if unused else []
    return t, notes


# Training settings of the authors' config that the converted run does not carry over, and why; one note lists
# those a checkpoint's config holds. (Their data, path, logging and sampling options concern their machine.)
NOT_CARRIED = {
    "D_B1": "one pair of Adam betas for G and D: G's", "D_B2": "one pair of Adam betas for G and D: G's",
    "num_D_accumulations": "D and G see the same train.batch",
    "ema": "smallgan always keeps an EMA of G", "use_ema": "smallgan samples from the EMA",
    "G_eval_mode": "smallgan always samples in eval mode", "D_ortho": "smallgan regularises G only",
    "G_init": "weights come from the checkpoint", "D_init": "weights come from the checkpoint",
    "G_fp16": "train.precision", "D_fp16": "train.precision", "G_mixed_precision": "train.precision",
    "D_mixed_precision": "train.precision", "split_D": "D's real and fake forwards are smallgan's choice",
    "num_epochs": "train.max_kimg", "seed": "train.seed",
}
SAME_AS = {"D_B1": "G_B1", "D_B2": "G_B2", "num_D_accumulations": "num_G_accumulations"}  # unused only if they differ


