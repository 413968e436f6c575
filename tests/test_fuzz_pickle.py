"""Fuzzing the restricted unpickler and the .npy reader: a few thousand mutated feature pickles, text .npy
files and hand-assembled opcode programs over the allow-listed globals. Every input must load (and then
be safe to read, since a forged dtype crashes only on read) or be refused with a DataError, never crash,
hang or raise anything else.

The examples run in a child interpreter (this file run as a script), so a segfault is a failed test with
the child's output, not a dead pytest; a watchdog ends the child if one input takes more than 5 s.
Hypothesis runs derandomized with no example database: the same inputs on every machine. For a longer
exploratory run: `python tests/test_fuzz_pickle.py N WORKDIR SEED` (another seed, N examples).
"""
from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

MAX_EXAMPLES = 4000
PER_INPUT_TIMEOUT_S = 5
WALL_LIMIT_S = 60  # in CI, on a 2-core machine


def test_fuzzed_pickles_load_or_are_refused(tmp_path, record_property):
    import pytest
    pytest.importorskip("hypothesis")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    t0 = time.time()
    # cwd: hypothesis keeps a cache folder (.hypothesis) in the working directory
    proc = subprocess.run([sys.executable, __file__, str(MAX_EXAMPLES), str(tmp_path)], capture_output=True,
                          text=True, timeout=WALL_LIMIT_S * 3, env=env, cwd=tmp_path)
    wall = time.time() - t0
    out = (proc.stdout + proc.stderr).strip()
    current = tmp_path / "current-input"
    last = current.read_bytes() if current.exists() else b""
    assert proc.returncode == 0, (f"the fuzzing child failed (exit {proc.returncode}); the input it was "
                                  f"reading: {last[:3000]!r}\n{out[-6000:]}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"fuzz: {report['tried']} inputs in {wall:.1f} s: {report}")
    record_property("fuzz_inputs", report["tried"])
    assert report["tried"] >= MAX_EXAMPLES
    assert report["loaded"] > 100 and report["refused"] > 100, report  # both paths were exercised


# ---- the child ----------------------------------------------------------------------------------------

def _corpus():
    """Valid feature pickles (every protocol, the layouts the reader accepts) and .npy files."""
    import io
    rng = np.random.default_rng(0)
    dicts = [
        {"features": [rng.standard_normal(4).astype(np.float32) for _ in range(3)], "video_names": ["v0", "v1", "v2"],
         "fps": [1.0, 2.0, 25.0]},
        {"features": [rng.standard_normal((2, 4)).astype(np.float16), rng.standard_normal((3, 4)).astype(np.float16)],
         "video_names": np.array(["a", "bb"]), "fps": np.float64(25.0)},
        {"features": np.ones((2, 3, 4), np.float32), "video_names": [b"x", b"y"], "fps": 25.0},
        {"features": np.array([np.zeros((1, 4)), np.ones((2, 4))], dtype=object), "video_names": ["p", "q"],
         "fps": np.array([1.0, 2.0])},
        {"features": np.arange(8, dtype=np.int64).reshape(2, 4), "video_names": np.array([b"a", b"b"])},
        {"features": [np.full(3, 1e30)], "video_names": ("only",), "fps": [np.float32(5)], "extra": {1, 2},
         "c": 1 + 2j, "n": None, "flag": True, "buf": bytearray(b"ab")},
    ]
    pickles = [pickle.dumps(d, protocol=p) for d in dicts for p in range(pickle.HIGHEST_PROTOCOL + 1)]
    npys = []
    for arr in (rng.standard_normal((3, 4)).astype(np.float32), np.asfortranarray(np.ones((2, 3), np.float16)),
                np.array([True, False]), np.array({"a": np.ones(3, np.float32), "b": np.zeros(3)}, dtype=object)):
        f = io.BytesIO()
        np.save(f, arr, allow_pickle=True)
        npys.append(f.getvalue())
    return pickles, npys


def _child(max_examples: int, workdir: Path, seed: int | None = None) -> None:
    import faulthandler
    import warnings

    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis import strategies as st

    from avgzsl.data.features import _parse_features
    from avgzsl.data.pickle_allowlist import _ALLOWED
    from avgzsl.data.safe_pickle import load_npy_safely, safe_loads
    from avgzsl.errors import DataError

    warnings.simplefilter("ignore")  # what numpy says about odd values is not the point here
    pickles, npys = _corpus()
    tmp, current = workdir, workdir / "current-input"
    counts = {"tried": 0, "loaded": 0, "refused": 0, "unsafe": 0}

    # ---- hand-assembled protocol-4 programs: each node pushes exactly one object ----
    allowed = sorted(_ALLOWED) + [("os", "system"), ("builtins", "eval"), ("numpy", "load")]

    def sstr(s: str) -> bytes:
        b = s.encode("utf-8")
        return (b"\x8c" + bytes([len(b)]) + b) if len(b) < 256 else (b"X" + struct.pack("<I", len(b)) + b)

    def render(node, out: bytearray, memo: list) -> None:
        kind = node[0]
        if kind == "int":
            v = node[1]
            out += (b"J" + struct.pack("<i", v)) if -2**31 <= v < 2**31 else \
                (b"\x8a" + bytes([len(enc := v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True))]) + enc)
        elif kind == "str":
            out += sstr(node[1])
        elif kind == "bytes":
            out += b"C" + bytes([len(node[1])]) + node[1]
        elif kind == "float":
            out += b"G" + struct.pack(">d", node[1])
        elif kind == "const":
            out += {"none": b"N", "true": b"\x88", "false": b"\x89"}[node[1]]
        elif kind == "global":
            out += sstr(node[1]) + sstr(node[2]) + b"\x93"
        elif kind == "call":
            render(node[1], out, memo)
            out += b"("
            for a in node[2]:
                render(a, out, memo)
            out += b"tR"
        elif kind == "build":
            render(node[1], out, memo)
            render(node[2], out, memo)
            out += b"b"
        elif kind == "tuple":
            out += b"("
            for a in node[1]:
                render(a, out, memo)
            out += b"t"
        elif kind == "list":
            out += b"]("
            for a in node[1]:
                render(a, out, memo)
            out += b"e"
        elif kind == "dict":
            out += b"}("
            for k, v in node[1]:
                render(k, out, memo)
                render(v, out, memo)
            out += b"u"
        elif kind == "memo":
            render(node[1], out, memo)
            if len(memo) < 256:
                out += b"\x94"
                memo.append(1)
        elif kind == "get":
            out += (b"h" + bytes([node[1] % len(memo)])) if memo else b"N"
        elif kind == "shared":  # a list naming one object n times
            out += b"]("
            render(node[1], out, memo)
            out += b"2" * (node[2] - 1) + b"e"
        elif kind == "dag":  # t0 = (x, x), t1 = (t0, t0), ...: 2**depth items from a few bytes
            render(node[1], out, memo)
            for _ in range(node[2]):
                if node[3] == "list" and len(memo) < 255:
                    k = bytes([len(memo)])
                    memo.append(1)
                    out += b"\x940(h" + k + b"h" + k + b"l"  # memoize, pop, [memo[k], memo[k]]
                else:
                    out += b"2\x86"  # dup, tuple2
        else:
            raise AssertionError(kind)

    ints = st.sampled_from([0, 1, 2, 3, 4, 8, 16, 20, 63, -1, 2**31 - 1, 10**12]) | st.integers(-4, 70)
    words = st.sampled_from(["f4", "f8", "<f8", "O8", "O", "U5", "S3", "V8", "b1", "i8", "M8", "f4,f4", "(2,)f4",
                             "<", ">", "|", "=", "b", "C", "F", "latin1", "rot13", "a", ""])
    leaves = (ints.map(lambda v: ("int", v)) | words.map(lambda s: ("str", s))
              | st.sampled_from([b"b", b"\0" * 8, b"AAAAAAAA", b"\0\0\x80?\0\0\0@", b""]).map(lambda b: ("bytes", b))
              | st.binary(max_size=24).map(lambda b: ("bytes", b))
              | st.sampled_from(["none", "true", "false"]).map(lambda c: ("const", c))
              | st.sampled_from([0.0, 1.5, 1e39, float("nan")]).map(lambda x: ("float", x))
              | st.sampled_from(allowed).map(lambda mn: ("global", *mn)))

    def g(mod, name):
        return ("global", mod, name)

    # Aimed at the dtype and array machinery: dtype(kind) + BUILD state, _reconstruct + BUILD, scalar.
    def dtype_node(kind, state):
        return ("build", ("call", g("numpy", "dtype"), [kind, ("const", "false"), ("const", "true")]), state)

    states = st.builds(lambda *xs: ("tuple", list(xs)), st.just(("int", 3)),
                       st.sampled_from(["<", "|", ">"]).map(lambda s: ("str", s)),
                       st.just(("const", "none")), leaves, leaves,
                       st.sampled_from([-1, 8, 16, 20]).map(lambda v: ("int", v)),
                       st.sampled_from([-1, 1, 4]).map(lambda v: ("int", v)),
                       st.sampled_from([0, 1, 2, 8, 16, 63]).map(lambda v: ("int", v)))
    dtypes = st.builds(dtype_node, words.map(lambda s: ("str", s)), states)

    def array_node(shape, dtype, fortran, data):
        rec = ("call", g("numpy._core.multiarray", "_reconstruct"),
               [g("numpy", "ndarray"), ("tuple", [("int", 0)]), ("bytes", b"b")])
        return ("build", rec, ("tuple", [("int", 1), ("tuple", shape), dtype, fortran, data]))

    def extend(children):
        arrays = st.builds(array_node, st.lists(ints.map(lambda v: ("int", v)), max_size=3),
                           dtypes | children, st.sampled_from([("const", "false"), ("const", "true")]),
                           children | st.binary(max_size=32).map(lambda b: ("bytes", b)))
        return (st.builds(lambda f, a: ("call", f, a), children, st.lists(children, max_size=4))
                | st.builds(lambda o, s: ("build", o, s), children, children)
                | st.lists(children, max_size=4).map(lambda xs: ("tuple", xs))
                | st.lists(children, max_size=4).map(lambda xs: ("list", xs))
                | st.lists(st.tuples(words.map(lambda s: ("str", s)), children), max_size=3).map(lambda p: ("dict", p))
                | children.map(lambda c: ("memo", c))
                | st.integers(0, 255).map(lambda i: ("get", i))
                | st.builds(lambda c, n: ("shared", c, n), children, st.integers(2, 400))
                | st.builds(lambda c, d, k: ("dag", c, d, k), children, st.integers(1, 70),
                            st.sampled_from(["tuple", "list"]))
                | st.lists(st.tuples(children, children), max_size=3).map(lambda p: ("dict", p))
                | st.lists(children, max_size=3).map(lambda xs: ("call", g("builtins", "frozenset"), [("list", xs)]))
                | dtypes | arrays
                | st.builds(lambda d, b: ("call", g("numpy._core.multiarray", "scalar"), [d, b]), dtypes, leaves))

    programs = st.recursive(leaves, extend, max_leaves=24).map(
        lambda n: ("dict", [(("str", "features"), ("list", [n])), (("str", "video_names"), ("list", [("str", "v")]))]))

    def assemble(node) -> bytes:
        out = bytearray(b"\x80\x04")
        render(node, out, [])
        return bytes(out + b".")

    # ---- byte-level mutations of valid files ----
    fragments = [b"\x93", b"R", b"b", b"(", b"t", b"0", b"2", b"\x94", b"h\x00", b"h\x01", b"\x85", b"\x86", b"\x87",
                 b"N", b"\x88", b"\x89", b"K\x00", b"K?", b"C\x08AAAAAAAA", b"\x8c\x02O8", b"\x8c\x01|", b"e", b"a",
                 b"s", b"u", b"]", b"}", b")", b"\x95\x00\x00\x00\x00\x00\x00\x00\x00"] + \
        [sstr(m) + sstr(n) + b"\x93" for m, n in allowed]

    @st.composite
    def mutated(draw, corpus):
        data = bytearray(draw(st.sampled_from(corpus)))
        op = draw(st.sampled_from(["flip", "truncate", "splice", "replace", "crossover", "same"]))
        if op == "flip":
            for _ in range(draw(st.integers(1, 6))):
                i = draw(st.integers(0, len(data) - 1))
                data[i] ^= draw(st.integers(1, 255))
        elif op == "truncate":
            del data[draw(st.integers(0, len(data) - 1)):]
        elif op in ("splice", "replace"):
            i = draw(st.integers(0, len(data)))
            if op == "replace":
                del data[i:i + draw(st.integers(1, 12))]
            data[i:i] = draw(st.sampled_from(fragments))
        elif op == "crossover":
            other = draw(st.sampled_from(corpus))
            i, j = draw(st.integers(0, len(data))), draw(st.integers(0, len(other) - 1))
            data[i:] = other[j:j + draw(st.integers(1, 200))] + data[i:]
        return op, bytes(data)

    inputs = (st.tuples(st.just("pickle"), mutated(pickles)) | st.tuples(st.just("npy"), mutated(npys))
              | st.tuples(st.just("pickle"), programs.map(lambda n: ("program", assemble(n)))))

    def same(a, b) -> bool:
        if isinstance(b, np.ndarray):
            return isinstance(a, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and all(
                same(x, y) for x, y in zip(a.flat, b.flat)) if b.dtype == object else \
                (type(a) is np.ndarray and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=b.dtype.kind in "fc"))
        if isinstance(b, dict):
            return isinstance(a, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in b)
        if isinstance(b, (list, tuple)):
            return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
        return type(a) is type(b) and (a == b or (a != a and b != b))

    def touch(obj, seen: set) -> None:
        """Read all of it, as the reader would: this is where a forged dtype would crash."""
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, np.ndarray):
            obj.tolist()
            repr(obj)
            if obj.dtype.kind in "biufc":
                with np.errstate(all="ignore"):
                    np.asarray(obj).sum()
            if obj.dtype == object:
                for x in obj.flat:
                    touch(x, seen)
        elif isinstance(obj, dict):
            for k, v in obj.items():
                touch(k, seen)
                touch(v, seen)
        elif isinstance(obj, (list, tuple, set, frozenset)):
            for x in obj:
                touch(x, seen)
        else:
            repr(obj)

    @settings(max_examples=max_examples, deadline=None, derandomize=seed is None, database=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(inputs)
    def fuzz(example):
        fmt, (op, data) = example
        counts["tried"] += 1
        current.write_bytes(data)  # what the parent shows if this input kills the child
        faulthandler.dump_traceback_later(PER_INPUT_TIMEOUT_S, exit=True)  # a hang ends the child
        try:
            if fmt == "npy":
                path = tmp / "fuzz.npy"
                path.write_bytes(data)
                obj = load_npy_safely(path)
            else:
                obj = safe_loads(data, source="fuzz.pkl")
            touch(obj, set())
            if op == "same":  # an unmutated file: a correct load, not just any
                want = pickle.loads(data, encoding="latin1") if fmt == "pickle" else \
                    np.load(tmp / "fuzz.npy", allow_pickle=True)
                want = want.item() if isinstance(want, np.ndarray) and want.dtype == object and want.ndim == 0 else want
                assert same(obj, want), (obj, want)
            if isinstance(obj, dict) and "features" in obj and "video_names" in obj:
                _parse_features(Path("fuzz.pkl"), obj["features"], obj["video_names"], obj.get("fps"))
            counts["loaded"] += 1
        except DataError as e:
            counts["refused"] += 1
            counts["unsafe"] += type(e).__name__ == "UnsafePickleError"
            assert "fuzz." in str(e) and "\n" not in str(e), str(e)
        finally:
            faulthandler.cancel_dump_traceback_later()

    if seed is not None:
        fuzz = hypothesis_seed(seed)(fuzz)
    t0 = time.time()
    fuzz()
    counts["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(counts))


if __name__ == "__main__":
    _child(int(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else None)
