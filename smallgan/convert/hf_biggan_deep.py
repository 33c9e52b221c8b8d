"""``hf-biggan-deep`` (huggingface/pytorch-pretrained-BigGAN): recognised and refused, with the reason."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

from smallgan.convert.base import ConversionError
from smallgan.convert.safe_load import as_state_dict, load_safely


HF_DIFFERENCE = (
    "its BatchNorms keep {n_stats} sets of statistics, one per truncation in [0, 1] (running_means of shape "
    "({n_stats}, C)), picked when sampling, and smallgan's biggan-deep keeps one set per layer; its output conv "
    "also makes ch channels of which the first 3 are kept, spectrally normalised over all ch"
)


def refuse_hf_biggan_deep(src: Path) -> NoReturn:
    """Check that `src` is a pytorch-pretrained-BigGAN generator, then refuse it with the reason."""
    src = Path(src)
    path = src / "pytorch_model.bin" if src.is_dir() else src
    sd = as_state_dict(load_safely(path), path)
    stats = sd.get("generator.layers.0.bn_0.running_means")
    if "generator.gen_z.weight_orig" not in sd or stats is None:
        raise ConversionError(f"{path.name} is not a pytorch-pretrained-BigGAN generator "
                              "(no generator.gen_z.weight_orig / generator.layers.0.bn_0.running_means)")
    reason = HF_DIFFERENCE.format(n_stats=stats.shape[0])
    raise ConversionError(f"hf-biggan-deep: {path.name} cannot be converted exactly: {reason}; nothing was written")
