"""Device-dependent choices, in one place: what differs between a CPU, an older GPU and a recent one.

- **Mixed precision** (:func:`choose_precision`): ``train.precision = "auto"`` (the default) takes the mixed
  precision Accelerate is configured for (``accelerate launch --mixed_precision``, ``accelerate config``; both
  reach the process as ``ACCELERATE_MIXED_PRECISION``, and a plain ``python -m smallgan.train`` or ``torchrun``
  reads Accelerate's default config file), else bf16 on a GPU with native bf16 (Ampere and newer), fp16 on an
  older GPU (T4, V100) and no mixed precision on a CPU. An explicit no / fp16 / bf16 wins. Emulated bf16 (a GPU
  without bf16 units, where PyTorch still accepts bf16 tensors) is refused: it runs, many times slower.
  :func:`resolve_precision` is the rule itself, pure; :func:`choose_precision` feeds it the device's answers.
- **Fused Adam** (:func:`fused_adam_supported`): asked of the installed PyTorch for the training device.
- **torch.compile** (:func:`compiler_unavailable`): Triton on CUDA, a C++ compiler on the CPU.
- **Sampling device** (:func:`resolve_device`): ``auto`` = the GPU when there is one.
- **CPU training under a launcher** (:func:`accelerate_cpu`): `accelerate launch --cpu`, or processes without a
  GPU, which Accelerate joins on the CPU only when told to.

Elsewhere, by their nature: SyncBatchNorm is used only with several CUDA processes (training/loop.py), a dataset
kept on the CPU is pinned only when the device is a GPU (training/batches.py), and KID leaves float64 off on
MPS (metrics/kid.py).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from smallgan.config import ConfigError
from smallgan.errors import SmallganError

ACCELERATE_ENV = "ACCELERATE_MIXED_PRECISION"
MIXED_PRECISIONS = ("no", "fp16", "bf16")   # what a run can use; train.precision also takes "auto"


# ---------------------------------------------------------------------------------------------------------------
# Mixed precision


def resolve_precision(requested: str, accelerate: str | None, cuda_available: bool, native_bf16: bool, *,
                      source: str = ACCELERATE_ENV) -> str:
    """The mixed precision a run uses (no | fp16 | bf16), from what was asked and what the device offers.

    ``requested``: train.precision (auto | no | fp16 | bf16). ``accelerate``: the mixed precision Accelerate is
    configured for, None when nothing configures one; ``source`` says where it came from (for messages).
    ``cuda_available``: training runs on a CUDA GPU. ``native_bf16``: that GPU computes in bf16 natively.
    Raises :class:`ConfigError` (one line) for a precision this device cannot run, or runs only emulated.
    """
    requested = requested.strip().lower()
    if requested == "auto":
        if accelerate is not None:
            value = accelerate.strip().lower()
            if value not in MIXED_PRECISIONS:
                raise ConfigError(
                    f"Accelerate is configured for mixed precision {value!r} ({source}), which smallgan does not "
                    f"support; pass --precision bf16, fp16 or no (train.precision)"
                )
            where = f"train.precision=auto took {value} from Accelerate ({source})"
        elif not cuda_available:
            return "no"
        else:
            return "bf16" if native_bf16 else "fp16"
    elif requested in MIXED_PRECISIONS:
        value, where = requested, f"train.precision={requested}"
    else:
        raise ConfigError(f"train.precision must be one of auto, {', '.join(MIXED_PRECISIONS)}, got {requested!r}")
    if value == "fp16" and not cuda_available:
        raise ConfigError(f"{where}, but fp16 needs a CUDA GPU (none found); use train.precision=bf16 or no")
    if value == "bf16" and cuda_available and not native_bf16:
        raise ConfigError(
            f"{where}, but this GPU has no native bf16 (PyTorch would emulate it, many times slower); "
            "use train.precision=fp16 (--precision fp16)"
        )
    return value


def accelerate_config_file() -> Path | None:
    """Accelerate's default config file (written by `accelerate config`), when there is one."""
    try:
        from accelerate.commands.config.config_args import default_config_file
    except Exception:  # noqa: BLE001 - an accelerate without this module simply has no config file for us
        return None
    path = Path(default_config_file)
    return path if path.is_file() else None


def accelerate_mixed_precision(environ: Mapping[str, str] | None = None,
                               config_file: Path | None | bool = True) -> tuple[str, str] | None:
    """(value, where it came from) of the mixed precision Accelerate is configured for, or None.

    ``accelerate launch`` exports ``ACCELERATE_MIXED_PRECISION`` from its ``--mixed_precision`` flag, else from
    its config file, else "no"; that last "no" (no config file) counts as nothing configured. Without it (``python -m smallgan.train``, ``torchrun``), Accelerate's default
    config file is read when there is one (``config_file=True``; a path reads that file, None or False none).
    An unreadable config file counts as no configuration.
    """
    environ = os.environ if environ is None else environ
    value = environ.get(ACCELERATE_ENV, "").strip().lower()
    path = accelerate_config_file() if config_file is True else (config_file or None)
    # `accelerate launch` with neither --mixed_precision nor a config file exports "no" as its own default (and
    # warns that it did): that is nothing configured, not a request for fp32, which `--precision no` makes.
    if value and not (value == "no" and path is None):
        return value, f"{ACCELERATE_ENV}={value}"
    if path is None:
        return None
    try:
        import yaml  # a dependency of accelerate; a JSON config file is valid YAML too

        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except Exception:  # noqa: BLE001 - a broken config file is Accelerate's problem to report, not ours
        return None
    if not isinstance(data, dict):
        return None
    value = data.get("mixed_precision")
    if value is None and data.get("fp16"):   # the old format, as Accelerate reads it
        value = "fp16"
    if not value:
        return None
    value = str(value).strip().lower()
    return value, f"mixed_precision: {value} in {path}"


def native_bf16(device: torch.device | None = None) -> bool:
    """The CUDA GPU computes in bf16 natively (compute capability 8.0+: A100, RTX 30xx, H100; not T4 or V100).

    ``torch.cuda.is_bf16_supported()`` alone also says yes where bf16 is only emulated.
    """
    if not torch.cuda.is_available():
        return False
    if device is not None and device.type == "cuda" and device.index is not None:
        with torch.cuda.device(device):
            return torch.cuda.is_bf16_supported(including_emulation=False)
    return torch.cuda.is_bf16_supported(including_emulation=False)


@dataclass(frozen=True)
class PrecisionChoice:
    value: str                 # no | fp16 | bf16
    why: str                   # for the log line, e.g. "auto: native bf16 on NVIDIA A100-SXM4-40GB"
    note: str | None = None    # something the user may not expect, said once


def choose_precision(requested: str, device: torch.device, environ: Mapping[str, str] | None = None) -> PrecisionChoice:
    """The mixed precision of a run on `device`: :func:`resolve_precision` with this machine's answers."""
    auto = requested.strip().lower() == "auto"
    cuda = device.type == "cuda"
    configured = accelerate_mixed_precision(environ) if auto else None
    native = native_bf16(device) if cuda else False
    value = resolve_precision(requested, configured[0] if configured else None, cuda, native,
                              source=configured[1] if configured else ACCELERATE_ENV)
    if not auto:
        return PrecisionChoice(value, "train.precision")
    if configured is not None:
        note = None
        if value == "no" and cuda:
            note = (f"training in fp32 as Accelerate is configured ({configured[1]}); for mixed precision pass "
                    "--precision bf16 (fp16 on GPUs without native bf16) or accelerate launch --mixed_precision bf16")
        return PrecisionChoice(value, f"auto: from Accelerate, {configured[1]}", note)
    if not cuda:
        return PrecisionChoice(value, f"auto: no mixed precision on {device.type}")
    name = torch.cuda.get_device_name(device)
    return PrecisionChoice(value, f"auto: native bf16 on {name}" if native else f"auto: {name} has no native bf16")


# ---------------------------------------------------------------------------------------------------------------
# Other device-dependent choices


def accelerate_cpu(environ: Mapping[str, str] | None = None) -> bool:
    """Accelerate must run on the CPU: `accelerate launch --cpu` (ACCELERATE_USE_CPU), or several processes and
    no GPU (without cpu=True, Accelerate does not join a torchrun launch on the CPU)."""
    environ = os.environ if environ is None else environ
    if environ.get("ACCELERATE_USE_CPU", "").strip().lower() in ("1", "true", "yes", "y", "on", "t"):
        return True
    return not torch.cuda.is_available() and int(environ.get("WORLD_SIZE", "1")) > 1


@functools.lru_cache(maxsize=None)
def _fused_adam_on(device_type: str) -> bool:
    try:   # one step on a one-element parameter: recent PyTorch checks the device at the first step, not before
        param = torch.zeros(1, device=device_type, requires_grad=True)
        param.grad = torch.zeros_like(param)
        torch.optim.Adam([param], fused=True).step()
    except (RuntimeError, ValueError, TypeError, NotImplementedError):
        return False
    return True


def fused_adam_supported(device: torch.device) -> bool:
    """This PyTorch has a fused Adam kernel for `device` (CUDA; CPU since torch 2.4): asked, not inferred from
    the version. The training step skips a non-finite step on the device with it; without it, one host sync."""
    return _fused_adam_on(device.type)


def compiler_unavailable(device: torch.device) -> str | None:
    """Why torch.compile cannot work here, or None when it can."""
    try:
        import torch._dynamo

        if not torch._dynamo.is_dynamo_supported():
            return "torch.compile does not support this Python version"
    except ImportError:
        return "this PyTorch build has no torch.compile"
    if device.type == "cuda" and importlib.util.find_spec("triton") is None:
        return "Triton is not installed"
    if device.type == "cpu" and not shutil.which(os.environ.get("CXX", "g++")) and not shutil.which("c++"):
        return "no C++ compiler found (install g++)"
    return None


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Where to sample: None or "auto" = the GPU when there is one, else the CPU."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise SmallganError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SmallganError(f"device {device} was asked for but no CUDA GPU is available; use --device cpu")
    return dev
