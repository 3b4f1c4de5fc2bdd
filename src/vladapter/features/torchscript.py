"""The tensors of a TorchScript archive, read without running anything from it.

OpenAI's ``clip`` package ships its weights (``RN101.pt``, ``ViT-B-32.pt``) as TorchScript
archives. ``torch.jit.load`` compiles and runs the archive's code, and ``torch.load(weights_only=True)``
refuses such archives. But the weights themselves are plain: the archive's ``data.pkl`` is a
pickle of module objects (``__torch__.<class>`` instances whose state is a dict of attributes:
parameters, buffers, submodules) whose tensors live in ``data/<key>`` members of the zip.

:func:`read_torchscript_state` unpickles ``data.pkl`` with a restricted unpickler that builds
no object of the archive's classes and calls no function but tensor rebuilding: a
``__torch__.*`` class becomes an inert record of its attributes, tensors are rebuilt from the
raw storage bytes, ``collections.OrderedDict`` is the only other global allowed, and anything
else in the pickle is refused. The result is the state dict the model would have
(``visual.conv1.weight`` ...), with the module hierarchy as dotted names.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from vladapter.errors import ConfigError

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}


class _Record:
    """An inert stand-in for an instance of an archive class: only its attributes are kept."""

    qualname = ""

    def __setstate__(self, state):
        self.state = state


class _Storage:
    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


def is_torchscript(path: str | Path) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip holding ``<name>/code/`` and ``<name>/data.pkl``)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    return any("/code/" in n for n in names) and any(n.endswith("/data.pkl") for n in names)


def read_torchscript_state(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of the module pickled in the TorchScript archive ``path``, by dotted name."""
    path = Path(path)
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        data = next(n for n in names if n.endswith("/data.pkl"))
        root = data[: -len("data.pkl")]
        order = z.read(root + "byteorder").decode().strip() if root + "byteorder" in names else "little"
        if order != "little":
            raise ConfigError(f"{path}: a {order}-endian TorchScript archive; convert it on the machine that wrote it")
        records: dict[str, type] = {}

        class Unpickler(pickle.Unpickler):
            def find_class(self, module, name):
                if module.startswith("__torch__"):
                    qualname = f"{module}.{name}"
                    if qualname not in records:
                        records[qualname] = type(name, (_Record,), {"qualname": qualname})
                    return records[qualname]
                if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                    return _rebuild
                if (module, name) == ("collections", "OrderedDict"):
                    from collections import OrderedDict

                    return OrderedDict
                if module == "torch" and name in _STORAGE_DTYPES:
                    return _STORAGE_DTYPES[name]
                raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a weights file")

            def persistent_load(self, pid):
                kind, dtype, key, _location, numel = pid
                if kind != "storage" or not isinstance(dtype, torch.dtype):
                    raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
                raw = bytearray(z.read(f"{root}data/{key}"))
                storage = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
                if storage.numel() != numel:
                    raise pickle.UnpicklingError(f"storage {key}: {storage.numel()} elements, expected {numel}")
                return storage

        try:
            obj = Unpickler(__import__("io").BytesIO(z.read(data))).load()
        except (pickle.UnpicklingError, ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"{path}: cannot read its weights without running its code ({e})") from None
    state: dict[str, torch.Tensor] = {}
    _collect(obj, "", state)
    if not state:
        raise ConfigError(f"{path}: the TorchScript archive holds no tensors")
    return state


def _rebuild(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    return storage.as_strided(tuple(size), tuple(stride), offset).clone()


def _collect(obj, prefix: str, out: dict) -> None:
    if isinstance(obj, torch.Tensor):
        out[prefix.rstrip(".")] = obj
    elif isinstance(obj, _Record) and isinstance(getattr(obj, "state", None), dict):
        for name, value in obj.state.items():
            if isinstance(name, str) and not name.startswith("_"):
                _collect(value, f"{prefix}{name}.", out)
