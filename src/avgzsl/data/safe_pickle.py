"""Restricted unpickling for the benchmark's `.pkl` features and pickled `.npy` text dictionaries.

`pickle.load` runs whatever a file asks for (`os.system`, `eval`, any class's constructor), and the
benchmark's files come from third-party downloads. The unpickler here resolves only an allow-list of
globals: what numpy needs to rebuild arrays, dtypes and scalars, plus the few builtins that plain
containers use in older protocols. Anything else raises `UnsafePickleError` from `find_class`, i.e.
before the forbidden object is even imported, so nothing from the file is ever executed.

Allow-listed numpy callables are no safe ground by themselves: a dtype's BUILD state sets its flags,
fields and sub-array verbatim, so a forged state can make numpy read raw file bytes as object
pointers. `numpy.dtype` therefore resolves to a factory that accepts only plain kinds and a state
equal to the one numpy writes for that kind, and every array, buffer and scalar is built from a dtype
it made; anything else is refused before an array exists.

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
import re
import reprlib
import struct
import sys
import warnings
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy.lib import format as npy_format

from ..errors import ConfigError, DataError, UnsafePickleError

__all__ = ["RestrictedUnpickler", "safe_loads", "load_pickle_safely", "load_npy_safely", "allowed_globals",
           "read_limit", "format_bytes", "MAX_READ_BYTES_ENV", "MAX_READ_RATIO_ENV"]

# A file may expand to RATIO times its size when read (at least FLOOR, at most the absolute cap). A
# genuine feature pickle or HDF5 file expands about 1-8x (array bytes are stored as they are; a short
# int or None costs 1-2 file bytes and 8 once loaded); a file built from shared references expands
# without bound.
MAX_READ_BYTES_ENV = "AVGZSL_MAX_READ_BYTES"
MAX_READ_RATIO_ENV = "AVGZSL_MAX_READ_RATIO"
DEFAULT_MAX_READ_BYTES = 16 << 30
DEFAULT_READ_RATIO = 64
READ_FLOOR = 64 << 20
MAX_NESTING = 64  # genuine files nest 2-4 levels (dict -> list -> array -> object items)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB' (for messages)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024:
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def _env_limit(name: str, default: float, unit: str) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    m = re.fullmatch(r"(\d+(?:\.\d*)?)\s*([KMGT]?)(?:i?B)?", text, re.I) if unit == "bytes" else \
        re.fullmatch(r"(\d+(?:\.\d*)?)()", text)
    if m is None or float(m.group(1)) <= 0:
        example = "17179869184 or 16G" if unit == "bytes" else "64"
        raise ConfigError(f"{name}={text!r}: expected a positive number of {unit} (e.g. {example})")
    return float(m.group(1)) * _UNITS[m.group(2).upper()]


def read_limit(file_size: int) -> int:
    """The most bytes a file of `file_size` bytes may expand to when it is read: `$AVGZSL_MAX_READ_RATIO`
    (default 64) times its size, at least 64 MiB, at most `$AVGZSL_MAX_READ_BYTES` (default 16 GiB; K/M/G/T
    suffixes allowed). Bad values raise ConfigError."""
    cap = _env_limit(MAX_READ_BYTES_ENV, DEFAULT_MAX_READ_BYTES, "bytes")
    ratio = _env_limit(MAX_READ_RATIO_ENV, DEFAULT_READ_RATIO, "times the file size")
    return int(min(cap, max(READ_FLOOR, ratio * file_size)))


def _numpy_internals():
    """The numpy functions pickles refer to (numpy 2 moved numpy.core to numpy._core)."""
    try:
        from numpy._core import multiarray, numeric  # numpy >= 2 (and the 1.26 forward shim)
        _ = (multiarray._reconstruct, multiarray.scalar, numeric._frombuffer)
    except (ImportError, AttributeError):
        from numpy.core import multiarray, numeric  # numpy 1.x
    return multiarray._reconstruct, multiarray.scalar, numeric._frombuffer


_RECONSTRUCT, _SCALAR, _FROMBUFFER = _numpy_internals()


class _Refused(pickle.UnpicklingError):
    """Raised by the allow-listed stand-ins below; reported as UnsafePickleError with the file name."""


class _Callable:
    """Base of the allow-listed stand-ins: slotted, so a BUILD opcode cannot rewrite their attributes."""

    __slots__ = ()

    def __setstate__(self, state):
        raise _Refused("modifying an allow-listed callable (BUILD)")


class _Latin1Encode(_Callable):
    """Stand-in for `_codecs.encode`, which protocol 0-2 pickles use to store `bytes` (as latin-1 text).

    Only the latin-1 codec is accepted: that is all a genuine pickle needs, and it keeps the
    encodings machinery (which imports codec modules by name) out of reach.
    """

    __slots__ = ()

    def __call__(self, obj, encoding="utf-8", errors="strict"):
        # str() of anything but text could expand a shared structure without bound
        if type(obj) is not str or type(encoding) is not str or type(errors) is not str:
            raise _Refused(f"_codecs.encode of {type(obj).__name__} (only text)")
        if encoding.lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1", "iso8859-1"):
            raise _Refused(f"_codecs.encode with encoding {_short(encoding)}")
        return obj.encode("latin-1", errors)


# Kinds a feature or text file needs: bool, ints, floats, complex, bytes, str, and object (ragged
# per-video arrays, np.save's dict). Structured, sub-array, void and datetime dtypes are refused:
# their pickled state carries nested dtypes, offsets and flags that numpy trusts.
_PLAIN_KINDS = "biufcSUO"
# NPY_ITEM_REFCOUNT | NPY_LIST_PICKLE | NPY_ITEM_IS_POINTER: the bits that make numpy treat items as
# objects; a plain kind may differ from what numpy writes in harmless bits only (the state's flags are
# checked, never applied).
_OBJECT_FLAGS = 0x07


class _Dtype:
    """What `numpy.dtype(...)` gives a pickle: a stand-in holding a dtype this module built. BUILD
    states are compared with the one numpy writes for that dtype and never handed to numpy, so no
    forged field, flag or item size reaches an array."""

    __slots__ = ("dtype",)

    def __init__(self, dtype: np.dtype):
        self.dtype = dtype

    def __setstate__(self, state):
        self.dtype = _dtype_from_state(self.dtype, state)


def _dtype_from_state(dt: np.dtype, state) -> np.dtype:
    if not isinstance(state, tuple) or len(state) != 8 or type(state[0]) is not int or state[0] != 3:
        raise _Refused(f"a numpy.dtype('{dt.str}') with a BUILD state numpy does not write ({_short(state)})")
    endian = state[1]
    if endian in ("<", ">") and dt.byteorder != "|":
        dt = dt.newbyteorder(endian)
    want = dt.__reduce__()[2]
    flags = state[7]
    plain = tuple(state[1:7]) == tuple(want[1:7]) and type(flags) is int and (
        flags == want[7] or (dt.kind != "O" and not flags & _OBJECT_FLAGS))
    if not plain:
        raise _Refused(f"a numpy.dtype('{dt.str}') with a forged BUILD state {_short(state)} (numpy writes {want})")
    return dt


def _clip(text: str, n: int = 200) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxtuple, _REPR.maxstring, _REPR.maxother = 3, 10, 60, 60


def _short(obj, n: int = 120) -> str:
    """A bounded repr for messages: repr() of a structure built from shared references is exponential."""
    return _clip(_REPR.repr(obj), n)


def _what(e: BaseException) -> str:
    """'Type: first line of the message', for a one-line error."""
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {_clip(lines[0])}" if lines else type(e).__name__


class _DtypeFactory(_Callable):
    """Stand-in for `numpy.dtype`: only plain type strings, as numpy pickles them ('f4', 'U5', 'O8')."""

    __slots__ = ()

    def __call__(self, obj, align=False, copy=False):
        if type(obj) is bytes:
            obj = obj.decode("latin-1")
        if type(obj) is not str or len(obj) > 16 or type(align) not in (bool, int) or type(copy) not in (bool, int):
            raise _Refused(f"numpy.dtype({_short(obj, 60)}, ...): only plain type strings are allowed")
        try:
            with warnings.catch_warnings():  # old aliases ('a5') warn; the file is refused or loads quietly
                warnings.simplefilter("ignore")
                dt = np.dtype(obj)
        except Exception as e:  # noqa: BLE001 - numpy's parser rejected the string: not a genuine pickle
            raise _Refused(f"numpy.dtype({obj!r}) ({type(e).__name__})") from None
        if dt.kind not in _PLAIN_KINDS or dt.fields is not None or dt.subdtype is not None \
                or dt.metadata is not None or (dt.kind == "O" and dt != np.dtype(object)):
            raise _Refused(f"numpy.dtype({obj!r}): only plain numeric, bool, bytes, str and object dtypes "
                           f"are allowed (no fields, sub-arrays or metadata)")
        return _Dtype(dt)


def _dtype_of(obj, what: str) -> np.dtype:
    if type(obj) is _Dtype:
        return obj.dtype
    raise _Refused(f"{what} whose dtype is not a pickled numpy.dtype ({type(obj).__name__})")


class _GuardedArray(np.ndarray):
    """What `numpy.ndarray` resolves to. `_reconstruct(ndarray, ...)` builds arrays of this class at C
    level (no `__new__`), so genuine pickles load; but a REDUCE calling `numpy.ndarray(shape, dtype,
    buffer)` directly is refused, because with an object dtype that would turn raw bytes from the
    file into object pointers. BUILD swaps the dtype stand-in for its checked dtype before numpy sees
    the state. Loaded arrays are turned back into plain ndarrays (`_Measure`).
    """

    def __new__(cls, *args, **kwargs):
        raise _Refused("calling numpy.ndarray directly (it could build object arrays from raw bytes)")

    def __setstate__(self, state):
        # (version, shape, dtype, fortran, data), or the older (shape, dtype, fortran, data)
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Refused(f"an ndarray BUILD state numpy does not write ({_short(state)})")
        if self.__dict__.get("_built"):  # numpy would replace data other objects may already hold
            raise _Refused("a second BUILD of one array")
        i = len(state) - 3
        shape, dtype, data = state[i - 1], _dtype_of(state[i], "an array"), state[-1]
        if type(shape) is not tuple or not all(type(n) is int and n >= 0 for n in shape):
            raise pickle.UnpicklingError(f"an array of shape {_short(shape)}")
        # numpy copies an object array's items from the list without checking its length
        if dtype.hasobject and (type(data) is not list or len(data) != math.prod(shape)):
            raise pickle.UnpicklingError(f"an object array of shape {shape} with "
                                         f"{len(data) if type(data) is list else type(data).__name__} items")
        np.ndarray.__setstate__(self, state[:i] + (dtype,) + state[i + 1:])
        self.__dict__["_built"] = True


class _Reconstruct(_Callable):
    """Stand-in for `_reconstruct`, which numpy calls as `_reconstruct(ndarray, (0,), b'b')`: the real
    shape and dtype come with BUILD. Anything bigger would allocate before any check could run."""

    __slots__ = ()

    def __call__(self, subtype, shape, dtype):
        if subtype is not _GuardedArray:
            raise _Refused(f"numpy _reconstruct of {_short(subtype, 60)} (only numpy.ndarray)")
        if not (type(shape) is tuple and all(type(n) is int and 0 <= n <= 16 for n in shape) and len(shape) <= 32):
            raise _Refused(f"numpy _reconstruct with the placeholder shape {_short(shape, 60)}")
        if type(dtype) is _Dtype:
            dtype = dtype.dtype
        elif not (type(dtype) in (bytes, str) and dtype in ("b", b"b")):
            raise _Refused(f"numpy _reconstruct with the placeholder dtype {_short(dtype, 60)}")
        return _RECONSTRUCT(subtype, shape, dtype)


class _Scalar(_Callable):
    """Stand-in for numpy's `scalar(dtype, data)`: the dtype must be one `_DtypeFactory` built."""

    __slots__ = ()

    def __call__(self, dtype, *data):
        return _SCALAR(_dtype_of(dtype, "a numpy scalar"), *data)


class _FromBuffer(_Callable):
    """`numpy.core.numeric._frombuffer` (protocol 5 in-band arrays) with a checked dtype."""

    __slots__ = ()

    def __call__(self, buf, dtype, shape, order):
        return _FROMBUFFER(buf, _dtype_of(dtype, "a buffer array"), shape, order)


MAX_KEY_NODES = 10_000  # a tuple key of genuine data holds a handful of atoms


def _hashable(items, what: str):
    """`items`, once each is known to hash in bounded time. Tuples do not cache their hash, so a tuple
    built from shared references (t = (t0, t0), t0 = (t1, t1), ...) hashes in 2**depth steps: as a dict
    key or set element it would hang the unpickler itself."""
    for item in items:
        if type(item) is not tuple:
            continue
        stack, seen = [item], 0
        while stack:
            x = stack.pop()
            seen += 1
            if seen > MAX_KEY_NODES:
                raise _Refused(f"a {what} that is a tuple of more than {MAX_KEY_NODES} nested items")
            stack.extend(y for y in x if type(y) is tuple)
    return items


class _SetOf(_Callable):
    """Stand-in for `set` / `frozenset` (protocol 0-3 pickles call them with a list)."""

    __slots__ = ("kind",)

    def __init__(self, kind):
        self.kind = kind

    def __call__(self, *args):
        if len(args) > 1 or (args and type(args[0]) not in (list, tuple)):
            raise _Refused(f"{self.kind.__name__}() of {_short(args)} (only a list of items)")
        return self.kind(_hashable(args[0], "set element") if args else ())


class _ByteArray(_Callable):
    """Stand-in for `bytearray`, which protocol 0-4 pickles call with bytes or latin-1 text. An int
    would allocate that many zero bytes (`bytearray(10**12)`), so it is refused."""

    __slots__ = ()

    def __call__(self, *args):
        if args and type(args[0]) not in (bytes, str, bytearray):
            raise _Refused(f"bytearray({type(args[0]).__name__}) (only bytes or text)")
        return bytearray(*args)


def _build_allow_list() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {}
    # Every spelling numpy 1.x / 2.x pickles use maps to this numpy's objects; the deprecated
    # numpy.core modules are never imported.
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = _Reconstruct()
        allowed[(mod, "scalar")] = _Scalar()
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(mod, "_frombuffer")] = _FromBuffer()
    allowed[("numpy", "ndarray")] = _GuardedArray
    allowed[("numpy", "dtype")] = _DtypeFactory()
    # Containers and numbers without an opcode of their own in some protocol; `__builtin__` is the
    # Python 2 spelling (find_class sees it before fix_imports would map it).
    for mod in ("builtins", "__builtin__"):
        for name, obj in (("set", _SetOf(set)), ("frozenset", _SetOf(frozenset)), ("bytearray", _ByteArray()),
                          ("complex", complex)):
            allowed[(mod, name)] = obj
    allowed[("_codecs", "encode")] = _Latin1Encode()
    return allowed


_ALLOWED = _build_allow_list()


def allowed_globals() -> list[str]:
    """The `module.name` globals a pickle may refer to (for docs and error messages)."""
    return sorted(f"{m}.{n}" for m, n in _ALLOWED)


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
