"""The native benchmark format: plain `.npy` arrays plus one JSON manifest, memory-mappable.

Written by `convert` (`avgzsl convert ROOT --out DIR`, data/benchmark.py) and by the loader's cache
(data/cache.py); this module imports nothing from the reader. Layout of a folder:

    avgzsl-native.json          manifest: format version, name, feature_set, dims, class names,
                                per-split class lists and video names, provenance (`info`)
    text.npy  has_text.npy      (C, Dt) float32, (C,) bool
    <stage folder>/labels.npy   (N,) int64
    <stage folder>/audio.npy    averaged: (N, Da) float32; temporal: (sum of T, Da) real steps only
    <stage folder>/video.npy    likewise
    <stage folder>/audio_lengths.npy, audio_times.npy, video_lengths.npy, video_times.npy
                                temporal only: (N,) int64 steps per video, (sum of T,) float32 seconds

Temporal features are stored without padding (the benchmark's videos differ a lot in length) and
padded again on load. Every array is a plain dtype, so `np.load(allow_pickle=False, mmap_mode="r")`
reads it. A folder is written under a temporary name in the same parent and renamed into place
with the manifest written last, so an interrupted write never leaves a folder that loads.
"""
from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from ..io import write_errors
from .types import STAGE_FOLDERS, Benchmark, Split

MANIFEST = "avgzsl-native.json"
FORMAT_NAME = "avgzsl-native"
FORMAT_VERSION = 1

__all__ = ["MANIFEST", "FORMAT_VERSION", "is_native", "write_native", "load_native", "pad_steps"]


def is_native(path: str | Path) -> bool:
    """True when `path` is a folder holding a native-format manifest."""
    return (Path(path) / MANIFEST).is_file()


# --------------------------------------------------------------------------------------------------
# ragged <-> padded

def pad_steps(steps: np.ndarray, lengths: np.ndarray, step_times: np.ndarray):
    """(sum T, D) real steps + (N,) lengths + (sum T,) times -> zero-padded (N, T, D), mask, times.

    Shared by the source reader and the native loader so both produce bit-identical arrays.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    n = lengths.shape[0]
    t = int(lengths.max()) if n else 0
    mask = np.arange(t, dtype=np.int64)[None, :] < lengths[:, None]
    out = np.zeros((n, t, steps.shape[-1]), dtype=np.float32)
    out[mask] = steps  # boolean assignment fills row-major, i.e. video by video, step by step
    times = np.zeros((n, t), dtype=np.float32)
    times[mask] = step_times
    return out, mask, times


def _unpad(values: np.ndarray, mask: np.ndarray, times: np.ndarray, where: str):
    lengths = mask.sum(axis=1).astype(np.int64)
    prefix = np.arange(mask.shape[1])[None, :] < lengths[:, None]
    if not np.array_equal(prefix, mask):
        raise ValueError(f"{where}: mask is not a prefix mask (real steps must come first)")
    return values[mask], lengths, times[mask].astype(np.float32)


# --------------------------------------------------------------------------------------------------
# writing

def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)


def _save(folder: Path, rel: str, arr: np.ndarray) -> None:
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.ascontiguousarray(arr), allow_pickle=False)


def _write_contents(bench: Benchmark, folder: Path) -> None:
    _save(folder, "text.npy", bench.text.astype(np.float32, copy=False))
    _save(folder, "has_text.npy", bench.has_text.astype(bool, copy=False))
    splits = {}
    for stage in STAGE_FOLDERS:
        s = bench.splits[stage]
        _save(folder, f"{stage}/labels.npy", s.labels.astype(np.int64, copy=False))
        entry = {"n": len(s), "classes": [int(c) for c in s.classes], "video_names": list(s.video_names),
                 "temporal": bool(s.temporal)}
        for mod in ("audio", "video"):
            values = getattr(s, mod)
            if s.temporal:
                steps, lengths, times = _unpad(values, getattr(s, f"{mod}_mask"),
                                               getattr(s, f"{mod}_times"), f"{stage}/{mod}")
                _save(folder, f"{stage}/{mod}.npy", steps.astype(np.float32, copy=False))
                _save(folder, f"{stage}/{mod}_lengths.npy", lengths)
                _save(folder, f"{stage}/{mod}_times.npy", times)
            else:
                _save(folder, f"{stage}/{mod}.npy", values.astype(np.float32, copy=False))
            entry[f"{mod}_dim"] = int(values.shape[-1])
        splits[stage] = entry
    dims = bench.dims.to_dict()
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "name": bench.name,
        "feature_set": bench.feature_set,
        "dims": dims,
        "class_names": list(bench.class_names),
        "splits": splits,
        "info": _json_safe({k: v for k, v in bench.info.items() if k not in ("cache_hit",)}),
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    # Manifest last: a folder without it is not a native folder.
    with open(folder / MANIFEST, "w", encoding="utf-8") as f:
        json.dump(manifest, f, ensure_ascii=False)


def _tmp_sibling(path: Path, tag: str) -> Path:
    return path.parent / f".{path.name}.{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def write_native(bench: Benchmark, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write `bench` to the folder `out` atomically; returns `out`.

    An existing `out` must be empty, or a native folder with `overwrite=True` (swapped by rename);
    anything else is refused so that no user data is ever deleted. If another process fills `out`
    while we write, the final rename fails (OSError) and our temporary folder is removed.
    """
    out = Path(out)
    with write_errors(out):
        out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        if not out.is_dir():
            raise DataError(f"{out}: exists and is not a folder")
        if any(out.iterdir()) and not (overwrite and is_native(out)):
            what = "a native benchmark folder (pass overwrite=True / --overwrite)" if is_native(out) \
                else "a non-empty folder that is not a native benchmark; refusing to touch it"
            raise DataError(f"{out}: already exists and is {what}")
    tmp = _tmp_sibling(out, "tmp")
    with write_errors(out):  # read-only, no permission, disk full: one line naming `out`
        tmp.mkdir()
        try:
            _write_contents(bench, tmp)
            if out.exists() and any(out.iterdir()):
                old = _tmp_sibling(out, "old")
                os.replace(out, old)  # both renames are atomic; a reader sees the old or the new folder
                os.replace(tmp, out)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, out)  # replaces an empty folder; fails if someone filled it meanwhile
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return out


# --------------------------------------------------------------------------------------------------
# reading

def _load_array(folder: Path, rel: str, *, copy: bool, shape=None, dtype=None) -> np.ndarray:
    path = folder / rel
    try:
        # a header declaring a huge shape fails below as "too big"; numpy's own size product would
        # first print an overflow warning
        with np.errstate(over="ignore"):
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError as e:
        raise DataError(f"{path}: missing array of native folder {folder}") from e
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{path}: truncated or corrupt .npy ({e})") from e
    if shape is not None and tuple(arr.shape) != tuple(shape):
        raise DataError(f"{path}: shape {tuple(arr.shape)} does not match the manifest ({tuple(shape)})")
    if dtype is not None and arr.dtype != np.dtype(dtype):
        raise DataError(f"{path}: dtype {arr.dtype}, expected {np.dtype(dtype)}")
    return np.array(arr) if copy else arr


def _read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    try:
        with open(path, encoding="utf-8") as f:
            man = json.load(f)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from e
    except ValueError as e:
        raise DataError(f"{path}: corrupt manifest ({e})") from e
    if not isinstance(man, dict) or man.get("format") != FORMAT_NAME:
        raise DataError(f"{path}: not an {FORMAT_NAME} manifest")
    version = man.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise DataError(f"{path}: format version {version!r} is newer than this avgzsl reads "
                        f"({FORMAT_VERSION}); upgrade avgzsl or convert again")
    return man


def load_native(path: str | Path, *, copy: bool = True, expect: dict | None = None) -> Benchmark:
    """Load a native folder. `copy=False` keeps averaged features as read-only memory maps.

    `expect`: loading options the caller asked for explicitly (split, feature_dir, text_alignment);
    one that differs from what the folder was made with is an error rather than a silent mismatch.
    """
    folder = Path(path)
    man = _read_manifest(folder)
    info = dict(man.get("info") or {})
    for key, want in (expect or {}).items():
        have = info.get(key)
        if want is not None and have is not None and want != have:
            raise ConfigError(f"{folder}: this native folder was made with {key}={have!r}, "
                              f"but {key}={want!r} was requested")
    try:
        class_names = list(man["class_names"])
        c = len(class_names)
        text = _load_array(folder, "text.npy", copy=True, dtype=np.float32)
        if text.ndim != 2 or text.shape[0] != c:
            raise DataError(f"{folder / 'text.npy'}: shape {text.shape}, expected ({c}, Dt)")
        has_text = _load_array(folder, "has_text.npy", copy=True, shape=(c,), dtype=bool)
        splits = {}
        for stage in STAGE_FOLDERS:
            entry = man["splits"][stage]
            n = int(entry["n"])
            names = list(entry["video_names"])
            if len(names) != n:
                raise DataError(f"{folder / MANIFEST}: {stage} lists {len(names)} video names for {n} videos")
            labels = _load_array(folder, f"{stage}/labels.npy", copy=True, shape=(n,), dtype=np.int64)
            kw: dict[str, Any] = {}
            for mod in ("audio", "video"):
                d = int(entry[f"{mod}_dim"])
                if entry["temporal"]:
                    lengths = _load_array(folder, f"{stage}/{mod}_lengths.npy", copy=True, shape=(n,),
                                          dtype=np.int64)
                    total = int(lengths.sum())
                    steps = _load_array(folder, f"{stage}/{mod}.npy", copy=False, shape=(total, d),
                                        dtype=np.float32)
                    times = _load_array(folder, f"{stage}/{mod}_times.npy", copy=False, shape=(total,),
                                        dtype=np.float32)
                    kw[mod], kw[f"{mod}_mask"], kw[f"{mod}_times"] = pad_steps(steps, lengths, times)
                else:
                    kw[mod] = _load_array(folder, f"{stage}/{mod}.npy", copy=copy, shape=(n, d),
                                          dtype=np.float32)
            splits[stage] = Split(labels=labels, video_names=names,
                                  classes=np.asarray(entry["classes"], dtype=np.int64), **kw)
    except (KeyError, TypeError) as e:
        raise DataError(f"{folder / MANIFEST}: incomplete manifest (missing {e})") from e
    info["native_path"] = str(folder)
    return Benchmark(name=man.get("name", folder.name), class_names=class_names, text=text,
                     has_text=has_text, splits=splits, feature_set=man["feature_set"], info=info)

