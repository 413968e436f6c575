"""The allow-list of the restricted unpickler (`data/safe_pickle.py`): the globals a pickle may name.

Every entry is a stand-in, not the real callable. Allow-listed numpy callables are no safe ground by
themselves: a dtype's BUILD state sets its flags, fields and sub-array verbatim, so a forged state
can make numpy read raw file bytes as object pointers. `numpy.dtype` therefore resolves to a factory
that accepts only plain kinds and a state equal to the one numpy writes for that kind, and every
array, buffer and scalar is built from a dtype it made; anything else is refused (`_Refused`) before
an array exists. Set and dict keys are checked to hash in bounded time (`_hashable`).
"""
from __future__ import annotations

import math
import pickle
import reprlib
import warnings
from typing import Any

import numpy as np


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
