"""Read a PyTorch ``.pt`` archive without PyTorch and without running pickled code.

A ``torch.save`` file is a zip archive: ``<prefix>/data.pkl`` (a pickle of the object tree) and
one raw little-endian buffer per tensor storage (``<prefix>/data/<key>``). The pickle refers to
classes by name; :class:`_RestrictedUnpickler` resolves a fixed list of names to harmless
stand-ins written here (the same defence as ``torch.load(weights_only=True)``) and refuses
every other name, so a crafted file cannot import or call anything. Tensors come back as NumPy
arrays; pydantic models and dict subclasses come back as plain dicts.
"""

from __future__ import annotations

import codecs
import collections
import io
import pickle
import zipfile
from pathlib import Path

import numpy as np

from chronograd.errors import InputError

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _Storage:
    def __init__(self, dtype):
        self.dtype = dtype


class _Record(dict):
    """A pickled object's state (pydantic model, lightning AttributeDict) as a plain dict."""

    def __setstate__(self, state):
        if isinstance(state, dict) and isinstance(state.get("__dict__"), dict):
            state = state["__dict__"]
        if isinstance(state, dict):
            self.update(state)


class _Marker(str):
    """A class that is only *named* in the file (an activation, an enum), kept as its name."""


class _DType:
    def __init__(self, name, *_):
        self.dtype = np.dtype(str(name))
        if self.dtype.kind not in "biuf":
            raise pickle.UnpicklingError(f"numpy dtype {name!r} is not allowed")

    def __setstate__(self, state):
        pass


def _rebuild_tensor(storage, offset, size, stride, *_):
    flat = storage
    count = int(np.prod(size)) if len(size) else 1
    if not len(size):
        return flat[offset]
    itemsize = flat.dtype.itemsize
    end = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) + 1
    if count and (offset < 0 or end > flat.size):
        raise pickle.UnpicklingError("tensor extends past its storage")
    view = np.lib.stride_tricks.as_strided(
        flat[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride))
    return np.array(view)


def _numpy_scalar(dtype, data=b""):
    if not isinstance(dtype, _DType) or not isinstance(data, bytes | bytearray):
        raise pickle.UnpicklingError("malformed numpy scalar")
    return np.frombuffer(bytes(data), dtype=dtype.dtype, count=1)[0].item()


def _encode(text, encoding="latin1"):
    if encoding != "latin1" or not isinstance(text, str):
        raise pickle.UnpicklingError("only latin1 byte strings are allowed")
    return codecs.encode(text, "latin1")


def _activation(value):
    return _Marker(value)


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("__builtin__", "set"): set,
    ("builtins", "set"): set,
    ("_codecs", "encode"): _encode,
    ("numpy", "dtype"): _DType,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("pytorch_lightning.utilities.parsing", "AttributeDict"): _Record,
    ("lightning_fabric.utilities.data", "AttributeDict"): _Record,
    ("openff.nagl.lookups", "AtomPropertiesLookupTableEntry"): _Record,
    ("openff.nagl.lookups", "PropertyProvenance"): _Record,
    ("openff.nagl.nn.activation", "ActivationFunction"): _activation,
    ("torch.nn.modules.activation", "ReLU"): _Marker("ReLU"),
    ("torch.nn.modules.activation", "Sigmoid"): _Marker("Sigmoid"),
    ("torch.nn.modules.activation", "Tanh"): _Marker("Tanh"),
    ("torch.nn.modules.activation", "LeakyReLU"): _Marker("LeakyReLU"),
    ("torch.nn.modules.activation", "ELU"): _Marker("ELU"),
    ("torch.nn.modules.activation", "GELU"): _Marker("GELU"),
    ("torch.nn.modules.linear", "Identity"): _Marker("Identity"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str):
        super().__init__(io.BytesIO(data))
        self._archive, self._prefix, self._storages = archive, prefix, {}

    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _Storage(_STORAGE_DTYPES[name])
        raise pickle.UnpicklingError(f"{module}.{name} is not an allowed class")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
                and isinstance(pid[1], _Storage)):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.80}")
        key = str(pid[2])
        if key not in self._storages:
            try:
                raw = self._archive.read(f"{self._prefix}/data/{key}")
            except KeyError as err:
                raise pickle.UnpicklingError(f"storage {key} is missing") from err
            dtype = np.dtype(pid[1].dtype).newbyteorder("<")
            if len(raw) % dtype.itemsize:
                raise pickle.UnpicklingError(f"storage {key} has a partial element")
            self._storages[key] = np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))
        return self._storages[key]


def read_torch_archive(path) -> object:
    """The object tree saved by ``torch.save`` at ``path``, with tensors as NumPy arrays.

    Raises InputError naming the file when it is not a readable archive or refers to a class
    outside the allowed list (nothing from the file is imported or executed)."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
            if len(pickles) != 1:
                raise InputError(f"{path}: not a PyTorch archive (expected one data.pkl)")
            prefix = pickles[0][: -len("/data.pkl")]
            unpickler = _RestrictedUnpickler(archive.read(pickles[0]), archive, prefix)
            return unpickler.load()
    except (zipfile.BadZipFile, pickle.UnpicklingError, EOFError, ValueError, TypeError,
            AttributeError, IndexError, KeyError, OSError) as err:
        raise InputError(f"{path}: cannot read model weights ({err}); the file is corrupt or "
                         "not a NAGL model: reinstall openff-nagl-models") from err
