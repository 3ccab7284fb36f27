"""Array files read without executing code: NumPy ``.npz`` archives, and checkpoint archives
(a JSON header plus arrays in one ``.npz``, versioned and checksummed).

NumPy can store Python objects in ``.npz`` files by pickling them, and unpickling runs code.
Every ``.npz`` that chronograd reads goes through ``read_arrays`` (``allow_pickle=False``:
object arrays are refused with a clear message, never unpickled). Checkpoints are written by
``write_archive``: a header ``{"format", "version", "sha256", ...}`` stored as UTF-8 JSON bytes
beside the arrays, where ``sha256`` covers the header and every array (name, dtype, shape,
bytes). ``read_archive`` checks format, version and checksum before anything is used, so a
truncated, edited or foreign file is refused instead of resuming from wrong numbers.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
import zlib
from pathlib import Path

import numpy as np

from chronograd.errors import InputError
from chronograd.interop.files import atomic_write

_HEADER = "__header__"


def read_arrays(path, what: str = "array file") -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` file, loaded eagerly, without unpickling anything.

    Raises:
        InputError: missing file, not an npz archive (truncated, corrupt), or an array that
            holds Python objects (which could only be read by running pickled code).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such {what}")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise InputError(f"{path}: not a {what} (not an .npz archive"
                         + ("; it looks like a pickle, which chronograd never reads)"
                            if magic[:1] == b"\x80" else ")"))
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: np.asarray(data[name]) for name in data.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise InputError(f"{path}: an array in this {what} holds Python objects, which"
                             " chronograd does not read (unpickling can run code); store"
                             " plain numeric arrays") from None
        raise InputError(f"{path}: not a readable {what} ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, SyntaxError,
            UnicodeDecodeError, MemoryError) as exc:
        raise InputError(f"{path}: not a readable {what}; the file is truncated or"
                         f" corrupt ({type(exc).__name__}: {exc})") from None


def _digest(header: dict, arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(header, sort_keys=True, allow_nan=True).encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"\0{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def write_archive(path, header: dict, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` and the JSON-able ``header`` (which must name ``format`` and
    ``version``) to ``path`` atomically (a temporary file, then a rename)."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    for name, a in arrays.items():
        if a.dtype == object or name == _HEADER:
            raise TypeError(f"cannot store {name!r} ({a.dtype}) in a checkpoint archive")
    header = dict(header)
    header.pop("sha256", None)
    header["sha256"] = _digest(header, arrays)
    blob = np.frombuffer(json.dumps(header, allow_nan=True).encode(), np.uint8)
    atomic_write(path, lambda tmp: np.savez(tmp, **{_HEADER: blob}, **arrays),
                 suffix=".tmp.npz")


def read_archive(path, *, format: str, version: int, what: str) -> tuple[dict, dict]:
    """(header, arrays) of a file written by ``write_archive``, after checking that it is a
    ``format`` file of this ``version`` whose checksum matches its contents.

    Raises:
        InputError: naming the file and what is wrong (not an archive, another format or
            version, a checksum mismatch from truncation or editing).
    """
    arrays = read_arrays(path, what)
    raw = arrays.pop(_HEADER, None)
    if raw is None or raw.dtype != np.uint8 or raw.ndim != 1:
        raise InputError(f"{path}: not a {what} of this chronograd (no header); it was written"
                         " by an older version or by another program: start a new run")
    try:
        header = json.loads(raw.tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InputError(f"{path}: the {what}'s header is not valid JSON; the file is"
                         " corrupt") from None
    if not isinstance(header, dict) or header.get("format") != format:
        found = header.get("format") if isinstance(header, dict) else None
        raise InputError(f"{path}: not a {what} (format {found!r}, expected {format!r})")
    if header.get("version") != version:
        raise InputError(f"{path}: {what} version {header.get('version')!r} is not supported"
                         f" (this chronograd reads version {version}); start a new run")
    stored = header.pop("sha256", None)
    if stored != _digest(header, arrays):
        raise InputError(f"{path}: the {what}'s checksum does not match its contents; the"
                         " file was truncated or edited. Use an intact copy or start a new"
                         " run")
    return header, arrays
