"""The restricted unpickler: numpy arrays and plain containers load; anything that could run code
is refused with UnsafePickleError before it is imported, for .pkl features and pickled .npy text."""
from __future__ import annotations

import base64
import collections
import functools
import os
import pickle
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
from numpy.lib import format as npy_format

from _layout import make_dataset, write_pkl
from avgzsl.data import load_benchmark
from avgzsl.data.safe_pickle import load_npy_safely, load_pickle_safely, safe_loads
from avgzsl.errors import ConfigError, DataError, UnsafePickleError


class Evil:
    """Unpickling this with plain pickle would run `touch <marker>`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class Plain:
    """An ordinary class: harmless here, but classes are not on the allow-list."""

    def __init__(self):
        self.x = 1


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_numpy_and_containers_round_trip(protocol):
    obj = {
        "features": [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(4, np.float16)],
        "stacked": np.linspace(0, 1, 12).reshape(3, 4),
        "ragged": np.array([np.zeros(2), np.ones(3)], dtype=object),
        "video_names": np.array(["a", "bb"]), "bytes_names": [b"x", b"yz"],
        "fps": np.float32(25.0), "n": np.int64(3), "flag": True, "none": None,
        "set": {1, 2}, "frozen": frozenset({"a"}), "buf": bytearray(b"ab"), "c": 1 + 2j,
        "tuple": (1, 2.5, "s", b"b"),
    }
    got = safe_loads(pickle.dumps(obj, protocol=protocol))
    assert got.keys() == obj.keys()
    for key in ("features",):
        for a, b in zip(got[key], obj[key]):
            assert a.dtype == b.dtype and np.array_equal(a, b)
    assert np.array_equal(got["stacked"], obj["stacked"])
    assert [list(x) for x in got["ragged"]] == [[0, 0], [1, 1, 1]]
    assert got["video_names"].tolist() == ["a", "bb"] and got["bytes_names"] == [b"x", b"yz"]
    assert got["fps"] == np.float32(25.0) and got["n"] == 3
    for key in ("flag", "none", "set", "frozen", "buf", "c", "tuple"):
        assert got[key] == obj[key]


@pytest.mark.parametrize("payload, forbidden", [
    (lambda m: Evil(m), "system"),
    (lambda m: functools.partial(print, 1), "functools.partial"),
    (lambda m: collections.OrderedDict(a=1), "collections.OrderedDict"),
    (lambda m: Plain(), "Plain"),
    (lambda m: subprocess.Popen, "subprocess.Popen"),
    (lambda m: eval, "builtins.eval"),
])
def test_forbidden_globals_are_refused(tmp_path, payload, forbidden):
    marker = tmp_path / "MARKER"
    path = tmp_path / "x.pkl"
    # protocol 4 keeps Python 3 module names (protocol 2 would write e.g. __builtin__.eval)
    path.write_bytes(pickle.dumps({"features": payload(marker)}, protocol=4))
    with pytest.raises(UnsafePickleError) as e:
        load_pickle_safely(path)
    assert str(path) in str(e.value) and forbidden in str(e.value)
    assert not marker.exists()


def test_hand_written_protocol0_system_call_is_refused(tmp_path):
    marker = tmp_path / "MARKER"
    data = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()
    with pytest.raises(UnsafePickleError, match=r"os\.system"):
        safe_loads(data, source="hand.pkl")
    assert not marker.exists()


def test_dotted_name_and_codec_tricks_are_refused():
    # protocol 4 lets STACK_GLOBAL name "ndarray.__new__"-style attribute paths: not allowed
    name = b"ndarray.__new__"
    data = b"\x80\x04\x8c\x05numpy\x8c" + bytes([len(name)]) + name + b"\x93."
    with pytest.raises(UnsafePickleError, match="ndarray.__new__"):
        safe_loads(data)
    # _codecs.encode is allowed only as protocol-2 bytes use it (latin-1)
    data = b"c_codecs\nencode\n(Vabc\nVrot13\ntR."
    with pytest.raises(UnsafePickleError, match="rot13"):
        safe_loads(data)


def test_direct_ndarray_call_cannot_forge_object_pointers():
    # numpy.ndarray((1,), dtype("O8"), b"AAAAAAAA") would read 8 file bytes as an object pointer.
    data = (b"\x80\x04\x8c\x05numpy\x8c\x07ndarray\x93K\x01\x85\x8c\x05numpy\x8c\x05dtype\x93"
            b"\x8c\x02O8\x89\x88\x87RC\x08AAAAAAAA\x87R.")
    with pytest.raises(UnsafePickleError, match="calling numpy.ndarray directly"):
        safe_loads(data, source="forged.pkl")


def test_loaded_arrays_are_plain_ndarrays():
    obj = {"list": [np.ones(2)], "ragged": np.array([np.zeros(2), {"x": np.arange(3)}], dtype=object)}
    got = safe_loads(pickle.dumps(obj, protocol=5))
    assert type(got["list"][0]) is np.ndarray and type(got["ragged"]) is np.ndarray
    assert type(got["ragged"][0]) is np.ndarray and type(got["ragged"][1]["x"]) is np.ndarray
    assert got["ragged"][1]["x"].tolist() == [0, 1, 2]


def test_malicious_feature_pickle_through_loader(tmp_path):
    lay = make_dataset(tmp_path)
    marker = tmp_path / "MARKER"
    target = lay.file("video", "stage_1_train", "BMX")
    write_pkl(target, [Evil(marker)], ["v"], [25.0])
    with pytest.raises(UnsafePickleError) as e:
        load_benchmark(lay.root, cache_dir=tmp_path / "cache")
    assert str(target) in str(e.value) and "system" in str(e.value)
    assert not marker.exists()
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_malicious_text_npy_through_loader(tmp_path):
    lay = make_dataset(tmp_path)
    marker = tmp_path / "MARKER"
    text_file = lay.text_file()
    np.save(text_file, {"archery": Evil(marker)}, allow_pickle=True)
    with pytest.raises(UnsafePickleError) as e:
        load_benchmark(lay.root, cache=False)
    assert str(text_file) in str(e.value)
    assert not marker.exists()
    with pytest.raises(UnsafePickleError):
        load_npy_safely(text_file)
    assert not marker.exists()


def test_npy_dict_and_plain_arrays(tmp_path):
    d = {"a": np.arange(3, dtype=np.float32), "b": np.ones(3, np.float64)}
    np.save(tmp_path / "d.npy", d, allow_pickle=True)
    got = load_npy_safely(tmp_path / "d.npy")
    assert got.keys() == d.keys() and np.array_equal(got["a"], d["a"]) and got["b"].dtype == np.float64
    arr = np.asfortranarray(np.arange(12, dtype=np.float16).reshape(3, 4))
    np.save(tmp_path / "a.npy", arr)
    got = load_npy_safely(tmp_path / "a.npy")
    assert got.dtype == np.float16 and np.array_equal(got, arr)
    got[0, 0] = 5  # a writable copy, not a view of a read buffer


def test_truncated_inputs_are_data_errors_naming_the_file(tmp_path):
    good = pickle.dumps({"features": [np.ones(8)], "video_names": ["v"]}, protocol=4)
    p = tmp_path / "t.pkl"
    p.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="truncated or corrupt pickle") as e:
        load_pickle_safely(p)
    assert not isinstance(e.value, UnsafePickleError) and str(p) in str(e.value)

    np.save(tmp_path / "t.npy", np.ones((10, 10)))
    raw = (tmp_path / "t.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(raw[:-40])
    with pytest.raises(DataError, match=r"t\.npy: truncated \.npy"):
        load_npy_safely(tmp_path / "t.npy")

    np.save(tmp_path / "d.npy", {"a": np.ones(3)}, allow_pickle=True)
    raw = (tmp_path / "d.npy").read_bytes()
    (tmp_path / "d.npy").write_bytes(raw[:-20])
    with pytest.raises(DataError, match=r"d\.npy: truncated or corrupt pickle"):
        load_npy_safely(tmp_path / "d.npy")

    (tmp_path / "junk.npy").write_bytes(b"not an npy file at all")
    with pytest.raises(DataError, match=r"junk\.npy: not a valid \.npy"):
        load_npy_safely(tmp_path / "junk.npy")


# ---- Reliability II: forged dtypes, numpy 1.x pickles, resource bombs ---------------------------------
# numpy.dtype is allow-listed, and a dtype's BUILD state sets its flags, fields and sub-array as given: a
# state declaring an object field, or clearing the object dtype's pickle-as-a-list flag, makes
# ndarray.__setstate__ copy raw file bytes where numpy then expects object pointers, and reading the
# array dereferences them. So these read in a child process: a crash is a failed test, not a dead pytest.

CHILD = r"""
import re
import sys
import numpy as np
from avgzsl.data.safe_pickle import load_npy_safely, load_pickle_safely
from avgzsl.errors import DataError

def touch(obj):  # read everything, as the benchmark reader would
    if isinstance(obj, np.ndarray):
        obj.tolist(); repr(obj)
        if obj.dtype == object:
            for x in obj.flat:
                touch(x)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            touch(k); touch(v)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for x in obj:
            touch(x)
    else:
        repr(obj)

path = sys.argv[1]
try:
    obj = (load_npy_safely if path.endswith(".npy") else load_pickle_safely)(path)
    touch(obj)
    print("LOADED")
except DataError as e:
    print(type(e).__name__, e)
# VmHWM is this process image's own peak; ru_maxrss would carry the parent's peak over fork + exec
hwm_kb = int(re.search(r"VmHWM:\s+(\d+)", open("/proc/self/status").read()).group(1))
print("MAXRSS_MB", hwm_kb // 1024)
"""


def run_child(path, timeout=60, memory_mb=None):
    """(exit code, output) of reading `path` in a fresh interpreter, optionally under an address-space cap."""
    pre = ""
    if memory_mb:
        pre = (f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({memory_mb << 20}, {memory_mb << 20}))\n")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", pre + CHILD, str(path)], capture_output=True, text=True,
                          timeout=timeout, env=env)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def short(text: str, protocol: int) -> bytes:
    """How `pickle.dumps(protocol)` writes a short str."""
    b = text.encode()
    if protocol >= 4:
        return b"\x8c" + bytes([len(b)]) + b
    return b"X" + len(b).to_bytes(4, "little") + b


def patch(raw: bytes, *pairs) -> bytes:
    for old, new in pairs:
        assert raw.count(old) == 1, (old, raw)
        raw = raw.replace(old, new)
    return raw


def as_object_dtype(raw: bytes, protocol: int = 4) -> bytes:
    """Turn the one float64 dtype of a pickle into an object dtype whose state keeps flags 0."""
    if protocol >= 4 and short("f8", 4) not in raw:
        protocol = 3  # np.save of numpy < 2
    return patch(raw, (short("f8", protocol), short("O8", protocol)), (short("<", protocol), short("|", protocol)))


FLAGS_0 = b"J\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t"  # ..., elsize -1, alignment -1, flags 0)
FORGED = {
    "object dtype with flags 0": lambda: as_object_dtype(pickle.dumps({"features": [np.array([1.0, 2.0])]}, 4)),
    "float dtype flagged as holding objects": lambda: patch(
        pickle.dumps({"features": [np.array([1.0, 2.0])]}, 4), (FLAGS_0, FLAGS_0.replace(b"K\x00t", b"K\x01t"))),
    "struct with an object field": lambda: as_object_dtype(pickle.dumps(np.zeros(2, [("a", "<f8")]), 4)),
    "sub-array of objects": lambda: as_object_dtype(pickle.dumps(np.zeros(2, ("<f8", (1,))), 4)),
    "protocol-5 buffer as objects": lambda: as_object_dtype(pickle.dumps(np.array([1.0, 2.0]), 5)),
    "scalar with an object dtype": lambda: as_object_dtype(pickle.dumps(np.float64(1.5), 4)),
    "unicode dtype with a forged item size": lambda: patch(
        pickle.dumps(np.array(["abcd", "efgh"]), 4), (b"K\x10K\x04K\x08t", b"K\x20K\x04K\x08t")),
}


@pytest.mark.parametrize("forge", FORGED.values(), ids=list(FORGED))
def test_forged_dtype_states_are_refused_before_any_array_is_built(tmp_path, forge):
    path = tmp_path / "forged.pkl"
    path.write_bytes(forge())
    code, out = run_child(path)
    assert code == 0, f"the reader crashed (exit {code}): {out[-2000:]}"
    assert out.startswith("UnsafePickleError") and str(path) in out and "dtype" in out, out


def test_forged_dtype_in_a_pickled_npy_text_dict_is_refused(tmp_path):
    path = tmp_path / "word_embeddings_ucf_normed.npy"
    np.save(path, {"archery": np.array([1.0, 2.0])}, allow_pickle=True)
    path.write_bytes(as_object_dtype(path.read_bytes()))
    code, out = run_child(path)
    assert code == 0, f"the reader crashed (exit {code}): {out[-2000:]}"
    assert out.startswith("UnsafePickleError") and str(path) in out and "dtype" in out, out


def test_plain_dtypes_of_every_kind_still_load():
    kinds = ["?", "i1", "u2", "<i4", ">i4", "<u8", "f2", "<f4", ">f8", "c8", "c16", "S0", "S5", "<U3", ">U7"]
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        obj = {k: np.zeros(3, k) for k in kinds} | {"scalars": [np.dtype(k).type(1) for k in kinds if k != "S0"]}
        obj["dtypes"] = [np.dtype(k) for k in kinds]
        data = pickle.dumps(obj, protocol=protocol)
        got, want = safe_loads(data), pickle.loads(data)  # numpy's own reading of our own data
        for k in kinds:
            assert got[k].dtype == want[k].dtype and got[k].tolist() == obj[k].tolist()
        assert got["dtypes"] == want["dtypes"] and [type(d) for d in got["dtypes"]] == [type(d) for d in want["dtypes"]]
        assert [type(s) for s in got["scalars"]] == [type(s) for s in obj["scalars"]]


# What numpy 1.26 wrote (protocols 0, 2, 5 and np.save of a dict), zlib-compressed and base64-encoded:
# {"features": [arange(6, f4).reshape(2, 3), ones(3, f2)], "ragged": object array [zeros(2), ones(3)],
#  "video_names": array(["a", "bb"]), "bnames": array([b"x"]), "fps": float64(25), "n": int64(3),
#  "flags": array([True]), "c": array([1+2j], c8), "big": array([1, 2], ">i4"), "names": ["v1", "v2"]}
NUMPY1 = {
    "pickle0": (
        "eNqtVs1q20AQpu1tnsSXhp39F4QmV19SaKlOhSDLsjA4ziLJoYEe8ih9xD5CZ1arsrLjkNAGbI+0szvft9/8ZLEOAspNUw2HrukhICx2"
        "QUK9P9yFx4v6vmsu7g67YVt1XfUIt11T3+/7oTvUAwQFi9EP9utxPWhYLAUMwUB9W9+vm7qHZs8GBAuLcgXBQbmrhu0eIXhyLOBLQN6B"
        "yJak/QRhKWGp+KVKSGA9PAY6BClAudFkGFgKQR9kN8t7He1TUF7Sooebm5vlR4T4iccXsOINLcP4fhD09/L309Xpu+vZw+zpafb06xqC"
        "pGDMUDIxKdlSsKpaurV2uiapoY3spWEnm9gzdeloKbKVdJbP2Eq+MyWiX/sMVYUnVC/nPySdHMEpxWdptgyB68uuattmTQ4WZkiVS0iV"
        "5x3FX52GoEVC+tlTAmCGVEvy1WrU5Sct6hlYyzy1GdFS2umjmHqKqTmmzmOaKeaGYpo8puGYRp29HaPfmAj/8k3YzHjRhlPUOLb8cRaY"
        "IvG0gpwsZllgSSci8ybAv6/+pxcVrhopWM3oDFuWKNCPg1VfPmzXzf3tvrrj9mH9XEI7UXNMzWEmoZNJwm+U4E5lEjoO5MxMQioADUuG"
        "4WwmYPV6LVavekVQ3EjXcdK5giwvmOcqUfQ4p+hloui5lrxOFJmIN4niV+52NqPoHfv6kWIqC0rQlKM+b1Y/IBSplRTcSgq+vEIxpE0g"
        "PIU+1637utpVHXnQVXIWvTqDCmpfhU0xGWkRrbFXC+jLPfVY4tHGkyPDredXMm/KQkV/fbYUUVDtR1Af3lJSKBI0FC5GGO2IDhndZle1"
        "PMrwSCnESSrEiA1zsRAntVbIm3O5EGMknAs24zIbMO/ogKn/oxwnm4x21K3mZX0ETpoJnIzjTLocHE2AEVzNF00jIAOnuLZQ4fmLpnb/"
        "fNN7dspRAJVqHpWOZ5to21gH25Yd3BF85Sf4KiqhRVbrSGMh5QnPbj3LEx210GOelJ943ZxS0PbFvv3u9NV7PikVM8YRgprLGU2s51TO"
        "aOK/PEhzo3xg4alQqvJBsqWh6i/+AKxHPro="
    ),
    "pickle2": (
        "eNp1k/daE0EUxTcJYogNe8FeY0ODoFFRYldWQS+WtWDc2SzZaEg4mwmKFUsC2Hv7y0fwGfTBdO9mlk8+cJJMZjOT8zvnzsxw+AG0uBHV"
        "NK3PNmXZtUsI9SIctwrl/oGhZqvo2s395bzMma5rDsXSrm0VCyXpli0ZQ6S2KlbI1GZRp2sVTLPSVjFjW6WYXeBBDPVGyAMITDfqve+8"
        "KXOFBKJVNBBiI5hBmBnXQ3pYj1QxS0lm5NCA98/ZRpittWLO2OgIGglz43rEV2vHvK6urs4/XvM7XZOYL8aceqNJC9qv4Q6vT3nvFD9w"
        "9yOFBY6HXkhYJLFYOBHHN73E8ZwsJSxjJ5EKmhyFbsFyRq8grPTQzmToKh/KwbR2fmE1668hrJVYJ2x/xjWzWTuD9QFtA9M2Ejb5uSuI"
        "K1p3EpuZtoWwNQh6H9smMjsktouxXjTHA7kdLLeTkFByLYH5JHaxXCuhbWrzu33zjdrkhj0cI0nYK7FvvEz7mdROOKDKdNBpm1jy3z87"
        "Jg/QwVopwiGJw8KWOCKMGd7UYC5jF9MFs987dUcDxDFGHCecUGFOqjAXWnCKw3QS9CCMHtXr9KjE6fEYpvIh1AdnGN1F6JY4K/zNEDXg"
        "uQBIDOwhnGdgqIILCtiTwEUGXiIYDORt4BVct8s+kLfnDq4w4SrhmkSvMCJc94ESrv/nBpUsM2+6MaSdNk8hOl64vSncYCGTIKqwCBlf"
        "vgDbSStDuST62FCW4Ey9nTmhNCPBLt5kzVuEfBX9hIIxje3lzWwJxSD/AOcHwVX5SwonEpCMKxMGg/wTcbfHqxDCHQYNEe5K3BP+bxbu"
        "B4gHjHhIeKQQwwphJfGYEU8IT6dO9MxHNPx7nVFhVJUwIjFaK7jIZTEWwJ4z7AXhpTpAr4LyteI1w94Q3gaX6yDeTUK+95FqZ3hRGB+Y"
        "+JHwSeKz8GtYO0NfevE17osPJvCtNmjBd7vc/BdNQaVF"
    ),
    "pickle5": (
        "eNqFU9FKwzAUbVq3VVQQQfDBD5gvG4oPCuIGfTM4QfFRRtqla2HrRtYOBYW9bDrI26579jf8K/9Ab7LNdUXcTZO0NOfknJvcQe790zJ0"
        "vEBR2j5ncSJ4Dx7way9K2t2nktcRvISvXIQeyK26LzptN/F9LmACxemBkY5BBYcqPtgH2D+qIHOaB+dG/NTlCJKmfwrjt1e4hSK1JLmA"
        "Wq129Y2hB2rE4FKTWiOQxIEYlwW54jS/2ONCNQg2keZkSRPs/EFiDSHYVQRc5gVrNnkD5H7KVjtpxSETgqG87brgXifqxSLxYlQZFGQh"
        "asx+ToAaQ3CIC7PdCDWHWsHNWdrIc8ZIBTWMMZVK/q7xd8yMnK0xYi6MKKrVlH9VsjME5ZRzhMutftjgnXrE2ni2aTVsPrvzrtXcZ9NK"
        "bbpB7RUdMu8u2cic5VHD745T8CMFJ9i0DfILt/wuYg9lvuexFlNXKSg79ozmvAojtYZEEFwrxnBNehzbWmRTA3N+izVXpREtzc1Ky+Z5"
        "KZB4Gm9nrram8dYdV8qnGzYzRIbSZGqicKUOLuG/k8c60glXpWn2j7GK+ifAk9IPzm9Mjw=="
    ),
    "npy": (
        "eNqlzclLw0AYBfBJo1Zj3be6x42kUHryUETooeDBYCoBIR6kZCsR2qRvMhGDLfRSas/+wTppzUHEkx/MwHzzeL8P/eHu/lEgL+RNcb3I"
        "ocqVrPQaSllWWiFl1AqaIXW9dH1jtSOP7yPf6nr8rZbKcl/+30gD0QniTjepOCH1Kp24zZ4tSq1EalLPCYOI0dhhEsg0JQXu9BeCRobI"
        "1QUb4ggzBmZVTSh9h1yWdD0Jc2aOENKoIj9+H2HewIKqiabAdz1Iuq7ffvKZXFqNYdEeP6HQx5Jq5nnEoo7v0QTLPvEn1orPoVUDaxzS"
        "xCHW/Wl/6xIbaf+mga2s/xrbP/sJw449rhcIGdSygyLDrm2KPG93XrGXQfspdGDg8Bs6yqAqjlNINnDCIf83ccqJIvljcMZwbscWw4Vd"
        "+QIFcY3b"
    ),
}


@pytest.mark.parametrize("name", ["pickle0", "pickle2", "pickle5"])
def test_numpy1_pickles_still_load(name):
    raw = zlib.decompress(base64.b64decode("".join(NUMPY1[name])))
    got = safe_loads(raw, source=name)
    assert got["features"][0].dtype == np.float32 and got["features"][0].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert got["features"][1].dtype == np.float16 and got["features"][1].tolist() == [1, 1, 1]
    assert [x.tolist() for x in got["ragged"]] == [[0, 0], [1, 1, 1]]
    assert got["video_names"].tolist() == ["a", "bb"] and got["bnames"].tolist() == [b"x"]
    assert got["fps"] == 25.0 and type(got["fps"]) is np.float64 and got["n"] == 3
    assert got["flags"].tolist() == [True] and got["c"].tolist() == [1 + 2j]
    assert got["big"].dtype.str[1:] == "i4" and got["big"].tolist() == [1, 2] and got["names"] == ["v1", "v2"]


def test_numpy1_npy_text_dict_still_loads(tmp_path):
    path = tmp_path / "t.npy"
    path.write_bytes(zlib.decompress(base64.b64decode("".join(NUMPY1["npy"]))))
    got = load_npy_safely(path)
    assert got["archery"].tolist() == [1, 1, 1] and got["archery"].dtype == np.float32
    assert got["bmx"].tolist() == [0, 0, 0]


def test_shared_reference_bomb_is_refused_without_expanding_it(tmp_path):
    """57 KB that name one 12,000-element list 12,000 times: 144 million elements once expanded."""
    inner = [0] * 12000
    path = tmp_path / "bomb.pkl"
    path.write_bytes(pickle.dumps({"features": [inner] * 12000, "video_names": ["v"]}, protocol=4))
    assert path.stat().st_size < 60_000
    code, out = run_child(path, memory_mb=1024)
    assert code == 0, out[-2000:]
    assert out.startswith("DataError") and str(path) in out and "expands to" in out, out


def test_nested_sharing_bomb_is_refused_quickly(tmp_path):
    """Each level names the one below twice: 2**60 references in a few hundred bytes."""
    obj = [0.0] * 8
    for _ in range(60):
        obj = [obj, obj]
    path = tmp_path / "nested.pkl"
    path.write_bytes(pickle.dumps({"features": obj, "video_names": []}, protocol=4))
    code, out = run_child(path, timeout=30, memory_mb=1024)
    assert code == 0, out[-2000:]
    assert out.startswith("DataError") and "expands to" in out, out


def test_read_limit_comes_from_the_environment(tmp_path, monkeypatch):
    data = pickle.dumps({"features": [np.zeros(1000)]}, protocol=4)  # 8 KB of array data
    monkeypatch.setenv("AVGZSL_MAX_READ_BYTES", "4K")
    with pytest.raises(DataError, match=r"expands to more than 4\.0 KiB.*AVGZSL_MAX_READ_BYTES"):
        safe_loads(data, source="small.pkl")
    monkeypatch.setenv("AVGZSL_MAX_READ_BYTES", "1G")
    assert safe_loads(data)["features"][0].shape == (1000,)
    monkeypatch.setenv("AVGZSL_MAX_READ_BYTES", "lots")
    with pytest.raises(ConfigError, match="AVGZSL_MAX_READ_BYTES"):
        safe_loads(data)


def test_reference_cycles_are_refused():
    loop = []
    loop.append(loop)
    with pytest.raises(DataError, match="refers to itself"):
        safe_loads(pickle.dumps({"features": loop}), source="loop.pkl")


@pytest.mark.parametrize("shape", [(10**15,), (2**40, 2**40), (10**6, 10**6, 0, 7)])
def test_npy_header_declaring_more_than_the_file_holds(tmp_path, shape):
    path = tmp_path / "huge.npy"
    with open(path, "wb") as f:
        npy_format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": shape})
        f.write(b"\0" * 16)
    if 0 in shape:
        assert load_npy_safely(path).shape == shape  # zero elements: nothing to read
        return
    with pytest.raises(DataError, match=r"declares \d+ bytes but the file holds 16") as e:
        load_npy_safely(path)
    assert str(path) in str(e.value)


def _dag_tuple(depth: int) -> bytes:
    """Protocol-4 ops pushing t = (t', t'), t' = (t'', t''), ... `depth` levels: 2**depth items."""
    return b"K\x00" + b"2\x86" * depth  # BININT1 0, then DUP + TUPLE2 per level


# [l, l, ..., l] with l = [0] * 10000, named 10,000 times: 100 million items from 40 KB
SHARED_LIST = b"](" + b"K\x00" * 10000 + b"e\x94" + b"0" + b"](" + b"h\x00" * 10000 + b"e"
RESOURCE_BOMBS = {
    # numpy copies an object array's items from the BUILD list without checking its length: a 200-item
    # shape with a 2-item list reads past the list (a segfault in numpy itself, with a genuine dtype)
    "object array longer than its item list": patch(
        pickle.dumps({"features": [np.array([1, 2], dtype=object)]}, 4), (b"K\x02\x85", b"K\xc8\x85")),
    # the C unpickler grows its memo array to twice the index, zero-filled: 5 bytes -> 1.2 GB
    "memo index of 75 million (LONG_BINPUT)": b"\x80\x04N" + b"r" + struct.pack("<I", 75_000_000) + b".",
    # tuples do not cache their hash: a dict key of 2**60 nested items hangs the unpickler
    "dict key of 2**60 shared tuples": b"\x80\x04}" + _dag_tuple(60) + b"K\x01s.",
    "set element of 2**60 shared tuples": b"\x80\x04\x8f(" + _dag_tuple(60) + b"\x90.",
    # pickle's own BYTEARRAY8 zero-fills the declared length before reading
    "bytearray declaring 2**40 bytes": b"\x80\x05\x96" + struct.pack("<Q", 2**40) + b"ab.",
    # str() of a shared list expands it
    "latin-1 text of a shared list": b"\x80\x04\x8c\x07_codecs\x8c\x06encode\x93" + SHARED_LIST +
                                     b"\x8c\x06latin1\x86R.",
}


@pytest.mark.parametrize("bomb", RESOURCE_BOMBS.values(), ids=list(RESOURCE_BOMBS))
def test_unpickler_resource_bombs_are_refused_quickly_and_small(tmp_path, bomb):
    path = tmp_path / "bomb.pkl"
    path.write_bytes(bomb)
    t0 = time.time()
    code, out = run_child(path, timeout=60)
    assert code == 0, f"the reader crashed (exit {code}): {out[-2000:]}"
    # refused, or (the memo case: harmless once the memo is a dict) loaded; either way quickly and small
    assert out.startswith("LOADED") or (out.startswith(("DataError", "UnsafePickleError")) and str(path) in out), out
    assert time.time() - t0 < 20, out
    rss = int(out.rsplit("MAXRSS_MB", 1)[1])
    assert rss < 400, f"reading it took {rss} MB: {out}"
