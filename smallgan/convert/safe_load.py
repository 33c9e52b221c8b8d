"""Reading ``.pth`` files without running code.

``torch.load(weights_only=True)`` for every file; for the authors' ``state_dict.pth`` (whose config holds
``nn.ReLU`` modules and numpy scalars) a restricted unpickler that builds plain data and inert placeholders only.
A file that would run code when unpickled is refused, naming what it holds.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from smallgan.convert.base import ConversionError


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


def as_state_dict(obj: Any, path: Path) -> dict[str, Tensor]:
    """`obj` (what :func:`load_safely` read from `path`) as a state dict, or a refusal naming the file."""
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        raise ConversionError(f"{path.name} is not a state dict (a mapping of names to tensors)")
    return dict(obj)
