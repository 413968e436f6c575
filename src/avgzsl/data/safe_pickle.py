"""Restricted unpickling for the benchmark's `.pkl` features and pickled `.npy` text dictionaries.

`pickle.load` runs whatever a file asks for (`os.system`, `eval`, any class's constructor), and the
benchmark's files come from third-party downloads. The unpickler here resolves only an allow-list of
globals: what numpy needs to rebuild arrays, dtypes and scalars, plus the few builtins that plain
containers use in older protocols. Anything else raises `UnsafePickleError` from `find_class`, i.e.
before the forbidden object is even imported, so nothing from the file is ever executed.

Allow-listed numpy callables are no safe ground by themselves, so each resolves to a checking
stand-in; the allow-list and its stand-ins are in `data/pickle_allowlist.py`.

What a file may expand to is bounded (`read_limit`): the loaded structure is measured as if every
shared reference were expanded, as the reader's later conversions would, without expanding it.

`load_npy_safely` reads `.npy` files the same way: the header is parsed by `numpy.lib.format`
(a literal parser), plain arrays are read as raw bytes after the declared size was checked against
the file, and object arrays (what `np.save` writes for a dict) are unpickled with the restricted
unpickler; a 0-d object array comes back as its item.
"""
from __future__ import annotations

import io
import math
import os
import pickle
import struct
import sys
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy.lib import format as npy_format

from ..errors import DataError, UnsafePickleError
from .pickle_allowlist import _ALLOWED, _Dtype, _hashable, _Refused, _short, _what, allowed_globals
from .read_limits import MAX_READ_BYTES_ENV, MAX_READ_RATIO_ENV, format_bytes, read_limit

__all__ = ["RestrictedUnpickler", "safe_loads", "load_pickle_safely", "load_npy_safely", "allowed_globals",
           "read_limit", "format_bytes", "MAX_READ_BYTES_ENV", "MAX_READ_RATIO_ENV"]

MAX_NESTING = 64  # genuine files nest 2-4 levels (dict -> list -> array -> object items)


# What one reference to an atom costs once loaded (a pointer plus the object; str as numpy's
# 4 bytes per character, since names end up in arrays).
_ATOMS = {str: lambda s: 8 + 4 * len(s), bytes: lambda b: 8 + len(b), bytearray: lambda b: 8 + len(b),
          int: lambda i: 8 + i.bit_length() // 8, float: lambda x: 8, bool: lambda x: 8, complex: lambda x: 16,
          type(None): lambda x: 8}


class _Measure:
    """Turn a loaded structure into plain numpy objects (guarded arrays -> ndarray views, dtype
    stand-ins -> dtypes) and measure it as if every shared reference were expanded, which is what
    later conversions (`np.asarray`, a list comprehension per video) do. Each object is visited once,
    so sharing costs nothing here; shared objects keep being shared in the result.
    """

    def __init__(self, source, limit: int, file_size: int):
        self.source, self.limit, self.file_size = source, limit, file_size
        self.seen: dict[int, tuple[Any, int, Any]] = {}  # id -> (result, expanded bytes, the object)
        self.path: set[int] = set()  # ids being visited: meeting one again is a cycle

    def __call__(self, obj, depth: int = 0) -> tuple[Any, int]:
        cost = _ATOMS.get(type(obj))
        if cost is not None:
            return obj, cost(obj)
        key = id(obj)
        hit = self.seen.get(key)
        if hit is not None:
            return hit[0], hit[1]
        if key in self.path:
            raise DataError(f"{self.source}: the pickle refers to itself (a reference cycle), which no "
                            f"feature or text file holds")
        if depth >= MAX_NESTING:
            raise DataError(f"{self.source}: corrupt pickle (nested deeper than {MAX_NESTING} levels)")
        self.path.add(key)
        new, size = self._visit(obj, depth + 1)
        self.path.discard(key)
        self._check(size)
        self.seen[key] = (new, size, obj)  # holding `obj` keeps its id from being reused meanwhile
        return new, size

    def _check(self, size: int) -> None:
        if size > self.limit:
            raise DataError(
                f"{self.source}: the pickle expands to more than {format_bytes(self.limit)} once read (the file "
                f"holds {format_bytes(self.file_size)}; shared references multiply it); if the file is genuine, "
                f"raise {MAX_READ_BYTES_ENV} or {MAX_READ_RATIO_ENV}")

    def _items(self, items, depth: int) -> tuple[list | None, int]:
        """(replaced items or None if none changed, expanded size) of a list/tuple/set."""
        size, out = 56, None
        for i, x in enumerate(items):
            cost = _ATOMS.get(type(x))
            if cost is not None:
                size += 8 + cost(x)
                continue
            nx, sx = self(x, depth)
            size += 8 + sx
            if size > self.limit:
                self._check(size)
            if nx is not x:
                if out is None:
                    out = list(items)
                out[i] = nx
        return out, size

    def _visit(self, obj, depth: int) -> tuple[Any, int]:
        t = type(obj)
        if t is list:
            out, size = self._items(obj, depth)
            return (obj if out is None else out), size
        if t is tuple or t is set or t is frozenset:
            out, size = self._items(list(obj) if t is not tuple else obj, depth)
            return (obj if out is None else t(out)), size
        if t is dict:
            keys, ksize = self._items(list(obj), depth)
            values, vsize = self._items(list(obj.values()), depth)
            if keys is None and values is None:
                return obj, ksize + vsize
            return dict(zip(keys or list(obj), values or list(obj.values()))), ksize + vsize
        if t is _Dtype:
            return obj.dtype, 64
        if isinstance(obj, np.ndarray):
            arr = obj.view(np.ndarray) if t is not np.ndarray else obj
            size = 112 + arr.nbytes
            if arr.dtype.kind == "U" and arr.size and arr.dtype.itemsize:
                # Raw UCS4 from the file: a code point beyond U+10FFFF makes every later read of the
                # array fail (SystemError from tolist()).
                codes = np.ascontiguousarray(arr).view(np.dtype("u4").newbyteorder(arr.dtype.byteorder))
                if codes.size and int(codes.max()) > 0x10FFFF:
                    raise DataError(f"{self.source}: corrupt pickle (a text array holds a character beyond U+10FFFF)")
            if arr.dtype.hasobject:  # only dtype('O') gets here: e.g. ragged per-video arrays
                for i, x in enumerate(arr.flat):
                    nx, sx = self(x, depth)
                    size += sx
                    if size > self.limit:
                        self._check(size)
                    if nx is not x:
                        arr[np.unravel_index(i, arr.shape)] = nx
            return arr, size
        if isinstance(obj, np.generic):
            return obj, 16 + obj.nbytes
        if t is np.dtype or isinstance(obj, np.dtype):
            return obj, 64
        raise UnsafePickleError(f"{self.source}: refused a pickle holding a {t.__module__}.{t.__qualname__} "
                                f"object (only numpy arrays and plain containers are allowed)")


class RestrictedUnpickler(pickle._Unpickler):
    """An Unpickler that resolves only allow-listed globals; `source` names the file in errors.

    The pure-Python unpickler, not the C one: the C unpickler keeps its memo in an array that a single
    5-byte LONG_BINPUT (or a protocol-0 PUT) with a large index grows to gigabytes, zero-filled, before
    anything else can check the file. Here the memo is a dict. (It costs ~15 us per video of a feature
    pickle, and only on the first read: later loads come from the cache.)
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file: BinaryIO, *, source: str | Path = "<pickle>", size: int | None = None):
        # latin1 lets Python 2 pickles of numpy arrays (raw `str` buffers) load, as numpy itself does.
        super().__init__(file, encoding="latin1")
        self.source = str(source)
        self.size = sys.maxsize if size is None else size  # no object can be longer than the file

    def load_bytearray8(self):
        # pickle's own version zero-fills the declared length before reading: 8 bytes can ask for 2**63
        (n,) = struct.unpack("<Q", self.read(8))
        if n > self.size:
            raise pickle.UnpicklingError(f"BYTEARRAY8 of {n} bytes in a file of {self.size}")
        b = bytearray(n)
        self.readinto(b)
        self.append(b)
    dispatch[pickle.BYTEARRAY8[0]] = load_bytearray8

    # The opcodes that hash file-made objects (dict keys, set elements), with the keys checked first,
    # and that store into their target only when it is a dict or set (pickle's own would hand any
    # object, e.g. an array, a key and a value to convert).
    def _target(self, kind):
        target = self.stack[-1]
        if type(target) is not kind:
            raise pickle.UnpicklingError(f"adding items to a {type(target).__name__}, not a {kind.__name__}")
        return target

    def load_dict(self):
        items = self.pop_mark()
        self.append(dict(zip(_hashable(items[::2], "dict key"), items[1::2])))
    dispatch[pickle.DICT[0]] = load_dict

    def load_setitem(self):
        value = self.stack.pop()
        key = self.stack.pop()
        self._target(dict)[_hashable((key,), "dict key")[0]] = value
    dispatch[pickle.SETITEM[0]] = load_setitem

    def load_setitems(self):
        items = self.pop_mark()
        target = self._target(dict)
        for key, value in zip(_hashable(items[::2], "dict key"), items[1::2]):
            target[key] = value
    dispatch[pickle.SETITEMS[0]] = load_setitems

    def load_additems(self):
        items = self.pop_mark()
        self._target(set).update(_hashable(items, "set element"))
    dispatch[pickle.ADDITEMS[0]] = load_additems

    def load_frozenset(self):
        items = self.pop_mark()  # before looking up self.append: pop_mark rebinds it
        self.append(frozenset(_hashable(items, "set element")))
    dispatch[pickle.FROZENSET[0]] = load_frozenset

    def find_class(self, module: str, name: str) -> Any:
        obj = _ALLOWED.get((module, name))
        if obj is None:
            what = f"{module}.{name}"
            what = what if what.isprintable() and len(what) <= 200 else _short(what)  # one line
            raise UnsafePickleError(
                f"{self.source}: refused to unpickle forbidden global '{what}' (only numpy "
                f"arrays and plain containers are allowed); nothing from the file was executed")
        return obj

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self.source}: refused a persistent-id reference in the pickle")


def _unpickle(fp: BinaryIO, source: str | Path, file_size: int) -> Any:
    limit = read_limit(file_size)
    try:
        obj = RestrictedUnpickler(fp, source=source, size=file_size).load()
        return _Measure(source, limit, file_size)(obj)[0]
    except DataError:  # UnsafePickleError included: already names the file
        raise
    except _Refused as e:
        raise UnsafePickleError(f"{source}: refused {e}; nothing from the file was executed") from e
    except RecursionError as e:
        raise DataError(f"{source}: corrupt pickle (nesting too deep)") from e
    except Exception as e:  # noqa: BLE001 - any failure inside a corrupt pickle is a data problem
        raise DataError(f"{source}: truncated or corrupt pickle ({_what(e)})") from e


def safe_loads(data: bytes, *, source: str | Path = "<bytes>") -> Any:
    """Unpickle `data` with the allow-list."""
    return _unpickle(io.BytesIO(data), source, len(data))


def load_pickle_safely(path: str | Path) -> Any:
    """Unpickle the file at `path` with the allow-list. Missing/unreadable file -> DataError."""
    path = Path(path)
    try:
        with open(path, "rb") as fp:
            return _unpickle(fp, path, os.fstat(fp.fileno()).st_size)
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
    except Exception as e:  # noqa: BLE001 - numpy's header parser also raises tokenize and syntax errors
        raise DataError(f"{path}: not a valid .npy file ({_what(e)})") from e


def load_npy_safely(path: str | Path, *, allow_pickle: bool = True) -> Any:
    """Read an `.npy` file without `allow_pickle`'s risks.

    Plain dtypes: the array. Object dtype: the payload is unpickled with the allow-list; a 0-d object
    array (`np.save` of a dict) returns its item (the dict), others return the object array.
    `allow_pickle=False` refuses object payloads (a DataError) instead.
    """
    path = Path(path)
    try:
        fp = open(path, "rb")
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from e
    with fp:
        shape, fortran_order, dtype = _read_npy_header(fp, path)
        held = os.fstat(fp.fileno()).st_size - fp.tell()
        if dtype.hasobject:
            if not allow_pickle:
                raise DataError(f"{path}: holds pickled Python objects (dtype {dtype}); expected a plain numeric array")
            arr = _unpickle(fp, path, held)
            if not isinstance(arr, np.ndarray):
                raise DataError(f"{path}: object .npy payload is a {type(arr).__name__}, not an array")
            if arr.shape != tuple(shape):
                raise DataError(f"{path}: object array has shape {arr.shape}, header says {tuple(shape)}")
            return arr.item() if arr.ndim == 0 else arr
        if any(n < 0 for n in shape):
            raise DataError(f"{path}: not a valid .npy file (negative dimension in shape {tuple(shape)})")
        # Python ints: numpy's int64 product wraps around for shapes like (2**40, 2**40).
        count = math.prod(shape)
        nbytes = count * dtype.itemsize
        if nbytes > held:
            raise DataError(f"{path}: truncated .npy file: the header declares {nbytes} bytes but the file "
                            f"holds {held} (shape {tuple(shape)}, {dtype})")
        limit = read_limit(held)
        if nbytes > limit:
            raise DataError(f"{path}: the header declares {format_bytes(nbytes)} of data, more than the read "
                            f"limit of {format_bytes(limit)} ({MAX_READ_BYTES_ENV}, {MAX_READ_RATIO_ENV})")
        raw = fp.read(nbytes)
        if len(raw) != nbytes:  # the file shrank while being read
            raise DataError(f"{path}: truncated .npy file ({len(raw)} of {nbytes} data bytes)")
        arr = np.frombuffer(raw, dtype=dtype, count=count)
        return arr.reshape(shape, order="F" if fortran_order else "C").copy()
