"""Restricted unpickling for the benchmark's `.pkl` features and pickled `.npy` text dictionaries.

`pickle.load` runs whatever a file asks for (`os.system`, `eval`, any class's constructor), and the
benchmark's files come from third-party downloads. The unpickler here resolves only an allow-list of
globals: what numpy needs to rebuild arrays, dtypes and scalars, plus the few builtins that plain
containers use in older protocols. Anything else raises `UnsafePickleError` from `find_class`, i.e.
before the forbidden object is even imported, so nothing from the file is ever executed.

`load_npy_safely` reads `.npy` files the same way: the header is parsed by `numpy.lib.format`
(a literal parser), plain arrays are read as raw bytes, and object arrays (what `np.save` writes for
a dict) are unpickled with the restricted unpickler; a 0-d object array comes back as its item.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy.lib import format as npy_format

from ..errors import DataError, UnsafePickleError

__all__ = ["RestrictedUnpickler", "safe_loads", "load_pickle_safely", "load_npy_safely", "allowed_globals"]


def _numpy_internals():
    """The numpy functions pickles refer to (numpy 2 moved numpy.core to numpy._core)."""
    try:
        from numpy._core import multiarray, numeric  # numpy >= 2 (and the 1.26 forward shim)
        _ = (multiarray._reconstruct, multiarray.scalar, numeric._frombuffer)
    except (ImportError, AttributeError):
        from numpy.core import multiarray, numeric  # numpy 1.x
    return multiarray._reconstruct, multiarray.scalar, numeric._frombuffer


class _Refused(pickle.UnpicklingError):
    """Raised by the allow-listed stand-ins below; reported as UnsafePickleError with the file name."""


class _Latin1Encode:
    """Stand-in for `_codecs.encode`, which protocol 0-2 pickles use to store `bytes` (as latin-1 text).

    Only the latin-1 codec is accepted: that is all a genuine pickle needs, and it keeps the
    encodings machinery (which imports codec modules by name) out of reach. A slotted instance rather
    than a function, so a BUILD opcode cannot rewrite its attributes.
    """

    __slots__ = ()

    def __call__(self, obj, encoding="utf-8", errors="strict"):
        if str(encoding).lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1", "iso8859-1"):
            raise _Refused(f"_codecs.encode with encoding {encoding!r}")
        return str(obj).encode("latin-1", errors)

    def __setstate__(self, state):
        raise _Refused("modifying an allow-listed callable (BUILD)")


class _GuardedArray(np.ndarray):
    """What `numpy.ndarray` resolves to. `_reconstruct(ndarray, ...)` builds arrays of this class at C
    level (no `__new__`), so genuine pickles load; but a REDUCE calling `numpy.ndarray(shape, dtype,
    buffer)` directly is refused, because with an object dtype that would turn raw bytes from the
    file into object pointers. Loaded arrays are turned back into plain ndarrays (`_unguard`).
    """

    def __new__(cls, *args, **kwargs):
        raise _Refused("calling numpy.ndarray directly (it could build object arrays from raw bytes)")


class _FromBuffer:
    """`numpy.core.numeric._frombuffer` behind a slotted callable, so BUILD cannot set attributes
    (e.g. `__defaults__`) on numpy's own function."""

    __slots__ = ()

    def __call__(self, buf, dtype, shape, order):
        return _FROMBUFFER(buf, dtype, shape, order)

    def __setstate__(self, state):
        raise _Refused("modifying an allow-listed callable (BUILD)")


def _build_allow_list() -> dict[tuple[str, str], Any]:
    reconstruct, scalar, _ = _numpy_internals()
    allowed: dict[tuple[str, str], Any] = {}
    # Every spelling numpy 1.x / 2.x pickles use maps to this numpy's objects; the deprecated
    # numpy.core modules are never imported.
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = reconstruct
        allowed[(mod, "scalar")] = scalar
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(mod, "_frombuffer")] = _FromBuffer()  # protocol 5 in-band arrays
    allowed[("numpy", "ndarray")] = _GuardedArray
    allowed[("numpy", "dtype")] = np.dtype
    # Containers and numbers without an opcode of their own in some protocol; `__builtin__` is the
    # Python 2 spelling (find_class sees it before fix_imports would map it).
    for mod in ("builtins", "__builtin__"):
        for name, obj in (("set", set), ("frozenset", frozenset), ("bytearray", bytearray),
                          ("complex", complex)):
            allowed[(mod, name)] = obj
    allowed[("_codecs", "encode")] = _Latin1Encode()
    return allowed


_FROMBUFFER = _numpy_internals()[2]
_ALLOWED = _build_allow_list()


def _unguard(obj: Any) -> Any:
    """Replace every `_GuardedArray` in a loaded structure by a plain ndarray view (no copy)."""
    if isinstance(obj, np.ndarray):
        if type(obj) is _GuardedArray:
            obj = obj.view(np.ndarray)
        if obj.dtype == object:  # e.g. a ragged list of per-video arrays, or np.save's 0-d dict
            for idx in np.ndindex(obj.shape):
                item = obj[idx]
                if isinstance(item, _CONTAINERS):
                    obj[idx] = _unguard(item)
        return obj
    # Only descend into what can hold arrays (a call per video-name string would cost ~1 us each).
    if isinstance(obj, list):
        return [_unguard(x) if isinstance(x, _CONTAINERS) else x for x in obj]
    if isinstance(obj, tuple):
        return tuple(_unguard(x) if isinstance(x, _CONTAINERS) else x for x in obj)
    if isinstance(obj, dict):
        return {k: _unguard(v) if isinstance(v, _CONTAINERS) else v for k, v in obj.items()}
    return obj


_CONTAINERS = (np.ndarray, list, tuple, dict)


def allowed_globals() -> list[str]:
    """The `module.name` globals a pickle may refer to (for docs and error messages)."""
    return sorted(f"{m}.{n}" for m, n in _ALLOWED)


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only allow-listed globals; `source` names the file in errors."""

    def __init__(self, file: BinaryIO, *, source: str | Path = "<pickle>"):
        # latin1 lets Python 2 pickles of numpy arrays (raw `str` buffers) load, as numpy itself does.
        super().__init__(file, encoding="latin1")
        self.source = str(source)

    def find_class(self, module: str, name: str) -> Any:
        obj = _ALLOWED.get((module, name))
        if obj is None:
            raise UnsafePickleError(
                f"{self.source}: refused to unpickle forbidden global '{module}.{name}' (only numpy "
                f"arrays and plain containers are allowed); nothing from the file was executed")
        return obj

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self.source}: refused a persistent-id reference in the pickle")


def _unpickle(fp: BinaryIO, source: str | Path) -> Any:
    try:
        return _unguard(RestrictedUnpickler(fp, source=source).load())
    except DataError:  # UnsafePickleError included: already names the file
        raise
    except _Refused as e:
        raise UnsafePickleError(f"{source}: refused {e}; nothing from the file was executed") from e
    except RecursionError as e:
        raise DataError(f"{source}: corrupt pickle (nesting too deep)") from e
    except Exception as e:  # noqa: BLE001 - any failure inside a corrupt pickle is a data problem
        raise DataError(f"{source}: truncated or corrupt pickle ({type(e).__name__}: {e})") from e


def safe_loads(data: bytes, *, source: str | Path = "<bytes>") -> Any:
    """Unpickle `data` with the allow-list."""
    return _unpickle(io.BytesIO(data), source)


def load_pickle_safely(path: str | Path) -> Any:
    """Unpickle the file at `path` with the allow-list. Missing/unreadable file -> DataError."""
    path = Path(path)
    try:
        with open(path, "rb") as fp:
            return _unpickle(fp, path)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from e


def _read_npy_header(fp: BinaryIO, path: Path):
    try:
        version = npy_format.read_magic(fp)
        if version == (1, 0):
            return npy_format.read_array_header_1_0(fp)
        if version == (2, 0):
            return npy_format.read_array_header_2_0(fp)
        if version == (3, 0) and hasattr(npy_format, "_read_array_header"):
            # 3.0 differs from 2.0 only in allowing a utf-8 header; numpy exposes no public reader
            return npy_format._read_array_header(fp, version=(3, 0))
        raise ValueError(f"unsupported .npy format version {version}")
    except ValueError as e:
        raise DataError(f"{path}: not a valid .npy file ({e})") from e


def load_npy_safely(path: str | Path) -> Any:
    """Read an `.npy` file without `allow_pickle`'s risks.

    Plain dtypes: the array. Object dtype: the payload is unpickled with the allow-list; a 0-d object
    array (`np.save` of a dict) returns its item (the dict), others return the object array.
    """
    path = Path(path)
    try:
        fp = open(path, "rb")
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from e
    with fp:
        shape, fortran_order, dtype = _read_npy_header(fp, path)
        if dtype.hasobject:
            arr = _unpickle(fp, path)
            if not isinstance(arr, np.ndarray):
                raise DataError(f"{path}: object .npy payload is a {type(arr).__name__}, not an array")
            if arr.shape != tuple(shape):
                raise DataError(f"{path}: object array has shape {arr.shape}, header says {tuple(shape)}")
            return arr.item() if arr.ndim == 0 else arr
        count = int(np.prod(shape, dtype=np.int64))
        raw = fp.read(count * dtype.itemsize)
        if len(raw) != count * dtype.itemsize:
            raise DataError(f"{path}: truncated .npy file ({len(raw)} of {count * dtype.itemsize} data bytes)")
        arr = np.frombuffer(raw, dtype=dtype, count=count)
        return arr.reshape(shape, order="F" if fortran_order else "C").copy()
