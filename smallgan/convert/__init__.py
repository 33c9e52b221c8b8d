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

Layout (one role each):

- :mod:`.base`: :class:`ConversionError` and :class:`Converted`, shared by every converter.
- :mod:`.safe_load`: the restricted reader of ``.pth`` files (weights-only, plus a plain-data reader for the
  authors' ``state_dict.pth``).
- :mod:`.biggan_pytorch_arch`: the authors' training config (or tensor shapes) -> smallgan's Model/TrainConfig.
- :mod:`.biggan_pytorch_keys`: the authors' key layout -> smallgan's, tensor by tensor, and the key-based refusals.
- :mod:`.biggan_pytorch`: :func:`convert_biggan_pytorch`, which reads a folder of their checkpoints.
- :mod:`.run_folder`: :func:`write_run`, which writes a converted model as a smallgan run folder.
- :mod:`.hf_biggan_deep`: the recognised-and-refused Hugging Face layout.
"""

from smallgan.convert.base import ConversionError, Converted
from smallgan.convert.biggan_pytorch import convert_biggan_pytorch
from smallgan.convert.biggan_pytorch_arch import (
    G_BLOCKS_TO_RESOLUTION,
    model_from_authors_config,
    model_from_shapes,
    train_from_authors_config,
)
from smallgan.convert.biggan_pytorch_keys import (
    Slot,
    convert_state,
    discriminator_slots,
    generator_slots,
    spectral_norm_vectors,
)
from smallgan.convert.hf_biggan_deep import HF_DIFFERENCE, refuse_hf_biggan_deep
from smallgan.convert.run_folder import CONVERTED_FILE, check_output_folder, config_to_toml, write_run
from smallgan.convert.safe_load import load_safely

__all__ = [
    "CONVERTED_FILE", "G_BLOCKS_TO_RESOLUTION", "HF_DIFFERENCE", "ConversionError", "Converted", "Slot",
    "check_output_folder", "config_to_toml", "convert_biggan_pytorch", "convert_state", "discriminator_slots",
    "generator_slots", "load_safely", "model_from_authors_config", "model_from_shapes", "refuse_hf_biggan_deep",
    "spectral_norm_vectors", "train_from_authors_config", "write_run",
]
