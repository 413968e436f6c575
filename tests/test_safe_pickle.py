"""The restricted unpickler: numpy arrays and plain containers load; anything that could run code
is refused with UnsafePickleError before it is imported, for .pkl features and pickled .npy text."""
from __future__ import annotations

import collections
import functools
import os
import pickle
import subprocess

import numpy as np
import pytest

from _layout import make_dataset, write_pkl
from avgzsl.data import load_benchmark
from avgzsl.data.safe_pickle import load_npy_safely, load_pickle_safely, safe_loads
from avgzsl.errors import DataError, UnsafePickleError


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
