"""Read an audio-visual GZSL benchmark (the ClipClap-GZSL / AVCA-GZSL layout) into a `Benchmark`.

Layout of a dataset root (e.g. `.../UCF`), see docs/data.md for details:

    class-split/all_class.txt                        one class per line
    class-split/<split>/<stage folder>.txt           the six stage lists (cls_split | main_split)
    class-split/<ds>_w2v_class_names.csv             original,manual[,...] (may also sit in the root)
    class-split/<ds>_clip_class_names.csv            optional: original,manual,clip_class_name
    features/<method>/{audio,video}/<stage folder>/<Class>.pkl|.h5
    features/<method>/text/word_embeddings_<ds>_normed.npy           dict name -> unit vector
    features/<method>/text/wavcaps_word_embeddings_<ds>_normed.npy   (clipclap only)

Everything is validated on the way in; problems raise a one-line `DataError` naming the file (and
class/video). Nothing is written until the whole read succeeded; the result is then cached in the
native format (`native.py`) under a key built from every source file's path, size and mtime plus
the loading options, so a changed file or option is read afresh.
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import re
import shutil
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from .native import FORMAT_VERSION, is_native, load_native, pad_steps, write_native
from .safe_pickle import (MAX_READ_BYTES_ENV, MAX_READ_RATIO_ENV, format_bytes, load_npy_safely,
                          load_pickle_safely, read_limit)
from .types import STAGE_FOLDERS, Benchmark, Split

log = logging.getLogger("avgzsl.data")

# Bump when the reader's output for the same files changes: it is part of the cache key.
# 2: class names NFC-normalised, hidden feature files of listed classes read.
READER_VERSION = 2
DATASETS = ("ucf", "activitynet", "vggsound")
TEXT_ALIGNMENTS = ("by_name", "reference_order")
FEATURE_EXTS = (".pkl", ".h5", ".hdf5")
MODALITIES = ("audio", "video")

__all__ = ["load_benchmark", "default_cache_dir", "infer_feature_set", "READER_VERSION"]


# --------------------------------------------------------------------------------------------------
# discovery: where every source file is (and its size/mtime for the cache key)

@dataclass
class _Source:
    root: Path
    name: str  # root folder name, e.g. "UCF"
    ds: str  # ucf | activitynet | vggsound (or the prefix of the only *_w2v_class_names.csv)
    split: str
    feature_dir: str
    all_class: Path
    split_files: dict[str, Path]
    table: Path
    clip_table: Path | None
    feat_root: Path
    files: dict[tuple[str, str], dict[str, Path]]  # (modality, stage) -> lower class name -> file
    word_file: Path
    wavcaps_file: Path
    stats: list[tuple[str, int, int]] = field(default_factory=list)

    def rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)


def _stat(src: _Source, path: Path, st: os.stat_result | None = None) -> None:
    st = st or path.stat()
    src.stats.append((src.rel(path), int(st.st_size), int(st.st_mtime_ns)))


def _subdirs(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _dataset_key(root: Path, cs: Path) -> str:
    for name in (root.name, root.resolve().name):
        if name.lower() in DATASETS:
            return name.lower()
    tables = sorted({p.name for d in (cs, root) for p in d.glob("*_w2v_class_names.csv")})
    if len(tables) == 1:
        return tables[0][: -len("_w2v_class_names.csv")].lower()
    raise DataError(f"{root}: cannot tell the dataset (folder name is not one of {', '.join(DATASETS)} "
                    f"and {'no' if not tables else 'several'} *_w2v_class_names.csv found"
                    f"{': ' + ', '.join(tables) if tables else ''})")


def _find_table(root: Path, cs: Path, filename: str) -> Path | None:
    for folder in (cs, root):
        if (folder / filename).is_file():
            return folder / filename
    return None


def _discover(root: Path, split: str, feature_dir: str | None) -> _Source:
    cs = root / "class-split"
    if not cs.is_dir():
        raise DataError(f"{cs}: missing class-split folder (not a ClipClap/AVCA-GZSL benchmark root?)")
    all_class = cs / "all_class.txt"
    if not all_class.is_file():
        raise DataError(f"{all_class}: missing class list")
    split_dir = cs / split
    if not split_dir.is_dir():
        raise DataError(f"{split_dir}: missing split folder (available: {', '.join(_subdirs(cs)) or 'none'})")
    split_files = {}
    for stage in STAGE_FOLDERS:
        path = split_dir / f"{stage}.txt"
        if not path.is_file():
            raise DataError(f"{path}: missing split file")
        split_files[stage] = path
    ds = _dataset_key(root, cs)
    table = _find_table(root, cs, f"{ds}_w2v_class_names.csv")
    if table is None:
        raise DataError(f"{cs / f'{ds}_w2v_class_names.csv'}: missing class-name table (columns original,manual)")
    clip_table = _find_table(root, cs, f"{ds}_clip_class_names.csv")

    features = root / "features"
    if not features.is_dir():
        raise DataError(f"{features}: missing feature folder")
    present = _subdirs(features)
    if feature_dir is None:
        if not present:
            raise DataError(f"{features}: no feature set folder inside")
        if len(present) > 1:
            raise DataError(f"{features}: several feature folders ({', '.join(present)}); "
                            f"choose one with feature_dir")
        feature_dir = present[0]
    elif feature_dir not in present:
        raise DataError(f"{features / feature_dir}: missing feature folder (available: {', '.join(present) or 'none'})")
    feat_root = features / feature_dir
    text_dir = feat_root / "text"
    if not text_dir.is_dir():
        raise DataError(f"{text_dir}: missing text-embedding folder")
    src = _Source(root=root, name=root.resolve().name, ds=ds, split=split, feature_dir=feature_dir,
                  all_class=all_class, split_files=split_files, table=table, clip_table=clip_table,
                  feat_root=feat_root, files={},
                  word_file=text_dir / f"word_embeddings_{ds}_normed.npy",
                  wavcaps_file=text_dir / f"wavcaps_word_embeddings_{ds}_normed.npy")
    for path in (all_class, *split_files.values(), table, clip_table):
        if path is not None:
            _stat(src, path)
    if not src.word_file.is_file():
        others = sorted(p.name for p in text_dir.glob("*.npy"))
        raise DataError(f"{src.word_file}: missing text-embedding file (found: {', '.join(others) or 'nothing'})")
    _stat(src, src.word_file)
    if src.wavcaps_file.is_file():
        _stat(src, src.wavcaps_file)

    for mod in MODALITIES:
        for stage in STAGE_FOLDERS:
            folder = feat_root / mod / stage
            if not folder.is_dir():
                raise DataError(f"{folder}: missing feature folder")
            found: dict[str, Path] = {}
            with os.scandir(folder) as it:
                for entry in it:
                    # Hidden files are kept: '.hidden.pkl' and '...pkl' hold the classes '.hidden' and
                    # '..'. Those of unlisted names (macOS '._X.pkl' companions) are dropped once the
                    # class lists are read.
                    if not entry.is_file():
                        continue
                    ext = next((e for e in FEATURE_EXTS if entry.name.lower().endswith(e)), None)
                    if ext is None:
                        continue
                    cls = _nfc(entry.name[: -len(ext)])
                    path = folder / entry.name
                    if cls.lower() in found:
                        raise DataError(f"{path}: second feature file for class '{cls}' "
                                        f"(also {found[cls.lower()].name}; names match case-insensitively)")
                    found[cls.lower()] = path
                    _stat(src, path, entry.stat())
            src.files[(mod, stage)] = found
    src.stats.sort()
    return src


def _cache_key(src: _Source, text_alignment: str) -> str:
    payload = {
        "options": {"split": src.split, "feature_dir": src.feature_dir, "text_alignment": text_alignment,
                    "format_version": FORMAT_VERSION, "reader_version": READER_VERSION},
        "files": src.stats,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------------
# class lists and class-name tables

def _nfc(name: str) -> str:
    """One spelling per class name: macOS file names are NFD, most text files NFC."""
    return unicodedata.normalize("NFC", name)


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from e
    # Only a newline ends a line: str.splitlines() also splits at U+2028, form feeds and other
    # characters that a class name (and its file name) may hold.
    return [s for s in (_nfc(line.strip()) for line in text.split("\n")) if s]


def _read_all_class(path: Path) -> tuple[list[str], dict[str, int]]:
    names = _read_lines(path)
    if not names:
        raise DataError(f"{path}: empty class list")
    seen: dict[str, str] = {}
    for name in names:
        low = name.lower()
        if low in seen:
            what = "listed twice" if seen[low] == name else f"differs from '{seen[low]}' only in case"
            raise DataError(f"{path}: duplicate class '{name}' ({what})")
        seen[low] = name
    # Case-insensitive order: UCF's lists spell one class HandStandPushups and HandstandPushups.
    class_names = sorted(names, key=str.lower)
    return class_names, {n.lower(): i for i, n in enumerate(class_names)}


def _read_split(path: Path, index: dict[str, int], all_class: Path) -> np.ndarray:
    names = _read_lines(path)
    if not names:
        raise DataError(f"{path}: empty split (no class names)")
    ids = []
    for name in names:
        if name.lower() not in index:
            raise DataError(f"{path}: class '{name}' is not in {all_class}")
        ids.append(index[name.lower()])
    return np.unique(np.asarray(ids, dtype=np.int64))


def _read_table(path: Path, need: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """CSV rows keyed by lower-cased `original`."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            cols = [c.strip() for c in (reader.fieldnames or [])]
            missing = [c for c in need if c not in cols]
            if missing:
                raise DataError(f"{path}: class-name table lacks column(s) {', '.join(missing)} "
                                f"(has: {', '.join(cols) or 'none'})")
            rows: dict[str, dict[str, str]] = {}
            for row in reader:
                row = {(k or "").strip(): _nfc((v or "").strip()) for k, v in row.items() if isinstance(v, str)}
                orig = row.get("original", "")
                if not orig:
                    continue
                old = rows.get(orig.lower())
                if old is not None and old != row:
                    raise DataError(f"{path}: class '{orig}' appears twice with different names")
                rows[orig.lower()] = row
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot read class-name table ({e})") from e
    return rows


# --------------------------------------------------------------------------------------------------
# feature files

@dataclass
class _Mod:
    """One modality of one or more videos: averaged rows (n, D) or temporal steps (sum T, D)."""

    data: np.ndarray
    lengths: np.ndarray | None = None  # temporal: (n,) steps per video
    fps: np.ndarray | None = None  # temporal: (n,) frames per second

    @property
    def temporal(self) -> bool:
        return self.lengths is not None

    def take(self, order: np.ndarray) -> "_Mod":
        if not self.temporal:
            return _Mod(self.data[order])
        offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        idx = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in order]) if len(order) \
            else np.zeros(0, np.int64)
        return _Mod(self.data[idx], self.lengths[order], self.fps[order])


def _video_names(path: Path, names) -> list[str]:
    if isinstance(names, np.ndarray):
        names = names.tolist() if names.ndim == 1 else None
    if not isinstance(names, (list, tuple)):
        raise DataError(f"{path}: video names must be a list of strings, got {type(names).__name__}")
    out = []
    for i, v in enumerate(names):
        if isinstance(v, str):
            out.append(str(v))
        elif isinstance(v, (bytes, bytearray)):
            # h5 video_urls and the reference's pkl writer store names as bytes
            try:
                out.append(bytes(v).decode("utf-8"))
            except UnicodeDecodeError as e:
                raise DataError(f"{path}: video name #{i} is bytes that are not UTF-8 ({v[:40]!r})") from e
        else:
            raise DataError(f"{path}: video name #{i} is not a string ({type(v).__name__}: {str(v)[:40]!r})")
    return out


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


def _describe_dims(path, names, arrays, want_ndim) -> DataError:
    """The precise error once a fast stack/concatenate failed: which video breaks the pattern."""
    first = arrays[0]
    for name, a in zip(names, arrays):
        if a.ndim != want_ndim:
            return DataError(f"{path}: video '{name}' has a feature of shape {a.shape} but video "
                             f"'{names[0]}' has {first.shape} (mixes per-video vectors and (T, D) arrays)")
        if a.shape[-1] != first.shape[-1]:
            return DataError(f"{path}: feature dims differ between videos: '{names[0]}' has "
                             f"{first.shape[-1]}, '{name}' has {a.shape[-1]}")
    return DataError(f"{path}: features of different shapes cannot be stacked")


def _parse_features(path: Path, features, names, fps) -> tuple[list[str], _Mod | None]:
    """Validate one file's content; returns its video names and features (None for 0 videos)."""
    names = _video_names(path, names)
    n = len(names)
    if isinstance(features, np.ndarray) and features.dtype != object:
        if features.ndim not in (2, 3):
            raise DataError(f"{path}: features have shape {features.shape}; expected (N, D) or (N, T, D)")
        if features.shape[0] != n:
            raise DataError(f"{path}: {features.shape[0]} feature rows but {n} video names")
        if n == 0:
            return names, None
        if features.ndim == 2:
            data, lengths = features, None
        else:
            if features.shape[1] == 0:
                raise DataError(f"{path}: temporal features with zero time steps (shape {features.shape})")
            lengths = np.full(n, features.shape[1], dtype=np.int64)
            data = features.reshape(-1, features.shape[2])
    elif isinstance(features, (list, tuple, np.ndarray)):
        try:
            arrays = [np.asarray(x) for x in features]
        except Exception as e:  # noqa: BLE001 - ragged lists, bytes mixed with text...: numpy's errors vary
            raise DataError(f"{path}: features are not a list of numeric arrays "
                            f"({type(e).__name__}: {_first_line(e)})") from None
        if len(arrays) != n:
            raise DataError(f"{path}: {len(arrays)} feature rows but {n} video names")
        if n == 0:
            return names, None
        ndim = arrays[0].ndim
        if ndim not in (1, 2):
            raise DataError(f"{path}: video '{names[0]}' has a feature of shape {arrays[0].shape}; "
                            f"expected (D,) or (T, D)")
        try:  # one C call per file; the per-video diagnosis runs only when it fails
            if ndim == 1:
                data, lengths = np.stack(arrays), None
            else:
                if any(a.ndim != 2 for a in arrays):
                    raise ValueError
                lengths = np.fromiter((a.shape[0] for a in arrays), dtype=np.int64, count=n)
                data = np.concatenate(arrays)
        except (ValueError, TypeError):  # TypeError: dtypes that do not promote (text and numbers)
            raise _describe_dims(path, names, arrays, ndim) from None
        if lengths is not None and (lengths == 0).any():
            bad = names[int(np.argmax(lengths == 0))]
            raise DataError(f"{path}: video '{bad}' has a temporal feature with zero time steps")
    else:
        raise DataError(f"{path}: 'features' is a {type(features).__name__}; expected an array or a list of arrays")
    if data.dtype.kind not in "fiu":
        raise DataError(f"{path}: features are not numeric (dtype {data.dtype})")
    source = data
    # float16 (ClipClap's CLIP/CLAP release) -> float32. A float64 value beyond float32's range turns
    # into inf; that is reported below by name instead of numpy's overflow warning.
    with np.errstate(over="ignore", invalid="ignore"):
        data = data.astype(np.float32, copy=False)
        # A NaN/inf makes the sum non-finite; only then pay for the element-wise mask (a finite sum
        # that overflows also lands here and is then found clean).
        finite = np.isfinite(data) if not np.isfinite(data.sum(dtype=np.float64)) else None
    if finite is not None and not finite.all():
        video_of = np.arange(n) if lengths is None else np.repeat(np.arange(n), lengths)

        def videos(bad):
            ids = np.unique(video_of[bad.any(axis=1)])
            return f"{len(ids)} video(s) (" + ", ".join(f"'{names[i]}'" for i in ids[:3]) + \
                (", ..." if len(ids) > 3 else "") + ")"
        if source.dtype.itemsize > 4 and source.dtype.kind == "f":
            over = ~finite & np.isfinite(source)
            if over.any():
                example = float(source[over].flat[0])
                raise DataError(f"{path}: {int(over.sum())} value(s) out of float32 range (e.g. {example:.3g}) "
                                f"in {videos(over)}")
        raise DataError(f"{path}: {int(finite.size - finite.sum())} NaN/inf values in {videos(~finite)}")
    if lengths is None:
        return names, _Mod(data)
    if fps is None:
        raise DataError(f"{path}: temporal features but no 'fps' (needed for step times)")
    try:
        fps_arr = np.asarray(fps, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as e:
        raise DataError(f"{path}: 'fps' is not numeric ({_first_line(e)})") from e
    if fps_arr.ndim == 0:
        fps_arr = np.full(n, float(fps_arr))
    if fps_arr.shape != (n,):
        raise DataError(f"{path}: 'fps' has shape {fps_arr.shape}; expected a scalar or one per video ({n})")
    if not (np.isfinite(fps_arr) & (fps_arr > 0)).all():
        raise DataError(f"{path}: 'fps' must be positive and finite")
    return names, _Mod(data, lengths, fps_arr)


def _read_pkl(path: Path):
    obj = load_pickle_safely(path)
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict with 'features', 'video_names', 'fps'; got {type(obj).__name__}")
    missing = [k for k in ("features", "video_names") if k not in obj]
    if missing:
        raise DataError(f"{path}: missing key(s) {', '.join(missing)} (has: {', '.join(map(str, obj))})")
    return _parse_features(path, obj["features"], obj["video_names"], obj.get("fps"))


def _h5_dataset(f, path: Path, name: str, file_size: int):
    """The dataset `name` of an open feature file, or None if there is none. Links are followed by hand,
    so that data in other files (external links, virtual datasets, external raw storage) is refused
    before HDF5 opens anything: it would be read from outside the dataset root, and the cache key
    covers only the root's files. Sizes are checked before anything is read."""
    import h5py

    node, parts, walked, hops = f, [p for p in name.split("/") if p], [], 0
    while parts:
        part = parts.pop(0)
        link = node.get(part, getlink=True) if isinstance(node, h5py.Group) else None
        if link is None:
            return None
        here = "/" + "/".join(walked + [part])
        if isinstance(link, h5py.ExternalLink):
            how = "is an external link to" if hops == 0 and here == "/" + name.strip("/") else \
                f"leads through the external link {here} to"
            raise DataError(f"{path}: '{name}' {how} {link.filename}:{link.path}; data in other files is refused")
        if isinstance(link, h5py.SoftLink):
            hops += 1
            if hops > 16:
                raise DataError(f"{path}: '{name}' is a loop of soft links")
            if link.path.startswith("/"):
                node, walked = f, []
            parts = [p for p in link.path.split("/") if p] + parts
            continue
        if not isinstance(link, h5py.HardLink):
            raise DataError(f"{path}: '{name}' is a {type(link).__name__}; only datasets in the file are read")
        node = node[part]
        walked.append(part)
    if isinstance(node, h5py.Group):
        raise DataError(f"{path}: '{name}' is a group, not a dataset")
    if not isinstance(node, h5py.Dataset):
        raise DataError(f"{path}: '{name}' is a {type(node).__name__}, not a dataset")
    if node.is_virtual:
        sources = sorted({str(s.file_name) for s in node.virtual_sources()})
        raise DataError(f"{path}: '{name}' is a virtual dataset reading {', '.join(sources)}; "
                        f"data in other files is refused")
    if node.external:
        files = sorted({os.fsdecode(e[0]) for e in node.external})
        raise DataError(f"{path}: '{name}' keeps its values in external file(s) {', '.join(files)}; "
                        f"data in other files is refused")
    declared = (0 if node.shape is None else math.prod(node.shape)) * node.dtype.itemsize  # None: no dataspace
    limit = read_limit(file_size)
    if declared > limit:
        raise DataError(f"{path}: '{name}' declares {declared} bytes (shape {node.shape}, {node.dtype}) but the "
                        f"file holds {file_size} (read limit {format_bytes(limit)}: {MAX_READ_BYTES_ENV}, "
                        f"{MAX_READ_RATIO_ENV})")
    return node


def _read_h5(path: Path):
    import h5py  # imported lazily: only h5 datasets need it

    try:
        with h5py.File(path, "r") as f:
            size = path.stat().st_size
            entries = {k: _h5_dataset(f, path, k, size) for k in ("data", "video_urls", "fps")}
            missing = [k for k in ("data", "video_urls") if entries[k] is None]
            if missing:
                raise DataError(f"{path}: missing dataset(s) {', '.join(missing)} (has: {', '.join(f.keys())})")
            data = entries["data"][()]
            urls = entries["video_urls"][()]
            fps = entries["fps"][()] if entries["fps"] is not None else f.attrs.get("fps")
    except DataError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError, TypeError) as e:
        raise DataError(f"{path}: truncated or corrupt HDF5 file ({e})") from e
    if not isinstance(data, np.ndarray):
        raise DataError(f"{path}: 'data' is not an array")
    return _parse_features(path, data, urls if isinstance(urls, np.ndarray) else [urls], fps)


def _read_feature_file(path: Path):
    return _read_h5(path) if path.suffix.lower() in (".h5", ".hdf5") else _read_pkl(path)


def _match_videos(a_path, a_names, v_path, v_names, video: _Mod | None):
    """Audio and video files of a class must list the same videos; reorder video to audio's order."""
    if a_names == v_names:
        return video
    sa, sv = set(a_names), set(v_names)
    if sa == sv and len(sa) == len(a_names) == len(v_names):
        pos = {name: i for i, name in enumerate(v_names)}
        return video.take(np.asarray([pos[name] for name in a_names], dtype=np.int64))
    only_a, only_v = sorted(sa - sv), sorted(sv - sa)
    if not only_a and not only_v:
        raise DataError(f"{a_path} and {v_path}: same videos but duplicate names "
                        f"({len(a_names)} audio vs {len(v_names)} video entries)")
    ex = lambda xs: ", ".join(f"'{x}'" for x in xs[:3]) + (", ..." if len(xs) > 3 else "")  # noqa: E731
    raise DataError(f"{a_path} and {v_path} list different videos: {len(only_a)} only in audio"
                    f"{' (' + ex(only_a) + ')' if only_a else ''}, {len(only_v)} only in video"
                    f"{' (' + ex(only_v) + ')' if only_v else ''}")


# --------------------------------------------------------------------------------------------------
# text embeddings

def _load_text_dict(path: Path) -> tuple[dict[str, np.ndarray], int]:
    obj = load_npy_safely(path)
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict class name -> vector, got {type(obj).__name__}")
    if not obj:
        raise DataError(f"{path}: empty text-embedding dict")
    out: dict[str, np.ndarray] = {}
    spelled: dict[str, str] = {}  # NFC key -> the key as the file spells it
    dim = None
    for key, value in obj.items():
        if isinstance(key, bytes):
            key = key.decode("utf-8", "replace")
        if not isinstance(key, str):
            raise DataError(f"{path}: key {key!r} is not a class name string")
        name = _nfc(str(key))
        if name in spelled:
            raise DataError(f"{path}: keys {spelled[name]!r} and {key!r} are one class name in two Unicode "
                            f"spellings (NFC/NFD)")
        spelled[name] = key
        try:
            with np.errstate(over="ignore", invalid="ignore"):  # out-of-range values are reported below
                vec = np.asarray(value, dtype=np.float32).reshape(-1)
        except (TypeError, ValueError, OverflowError) as e:
            raise DataError(f"{path}: embedding of '{key}' is not numeric ({e})") from e
        if dim is None:
            dim = vec.shape[0]
        elif vec.shape[0] != dim:
            raise DataError(f"{path}: embedding of '{key}' has {vec.shape[0]} dims, others have {dim}")
        if not np.isfinite(vec).all():
            with np.errstate(over="ignore", invalid="ignore"):
                over = ~np.isfinite(vec) & np.isfinite(np.asarray(value, dtype=np.float64).reshape(-1))
            if over.any():
                raise DataError(f"{path}: {int(over.sum())} value(s) out of float32 range in the embedding of '{key}'")
            raise DataError(f"{path}: {int((~np.isfinite(vec)).sum())} NaN/inf values in the embedding of '{key}'")
        out[name] = vec
    return out, int(dim)


def _by_name(class_names, candidates: list[list[str]], table: dict[str, np.ndarray], dim: int):
    """Row c = the vector stored under the first of class c's candidate keys present in the dict."""
    lower: dict[str, str | None] = {}
    for k in table:
        lower[k.lower()] = None if k.lower() in lower else k  # None: ambiguous case-insensitively
    rows = np.zeros((len(class_names), dim), dtype=np.float32)
    found = np.zeros(len(class_names), dtype=bool)
    used: dict[str, int] = {}
    for c, cands in enumerate(candidates):
        for cand in cands:
            key = cand if cand in table else lower.get(cand.lower())
            if key is not None:
                rows[c], found[c] = table[key], True
                if key in used:
                    log.warning("text: classes '%s' and '%s' both map to the embedding '%s'",
                                class_names[used[key]], class_names[c], key)
                used[key] = c
                break
    return rows, found


def _reference_order(class_names, table: dict[str, np.ndarray], dim: int):
    """What the reference loader does: the i-th vector of sorted(dict.items()) goes to class id i,
    where class ids follow plain (case-sensitive) sorted(all_class) as in its class_to_idx."""
    values = [v for _, v in sorted(table.items())]
    rows = np.zeros((len(class_names), dim), dtype=np.float32)
    found = np.zeros(len(class_names), dtype=bool)
    for rank, c in enumerate(sorted(range(len(class_names)), key=lambda i: class_names[i])):
        if rank < len(values):
            rows[c], found[c] = values[rank], True
    return rows, found


def _candidates(class_names, rows_by_lower: list[dict[str, dict[str, str]]], columns: list[str]):
    """Per class: the names to try as dict keys, in order (preferred column first, then fallbacks)."""
    out = []
    for name in class_names:
        cands = []
        for rows, col in zip(rows_by_lower, columns):
            value = rows.get(name.lower(), {}).get(col)
            if value and value not in cands:
                cands.append(value)
        if name not in cands:
            cands.append(name)
        out.append(cands)
    return out


def _build_text(src: _Source, class_names, feature_set, word, wavcaps, alignment):
    """(text, has_text, per-class missing file, alignment_differs) for the chosen alignment.

    `word`/`wavcaps`: (dict, dim) as `_load_text_dict` returns them.
    """
    w2v_rows = _read_table(src.table, ("original", "manual"))
    clip_rows = _read_table(src.clip_table, ("original", "clip_class_name")) if src.clip_table else {}
    # (dict, its file, [(table rows, column), ...] in the order keys are tried)
    parts = []
    if feature_set == "clipclap":
        word_cols = ([(clip_rows, "clip_class_name")] if clip_rows else []) + [(w2v_rows, "manual")]
        parts.append((word, src.word_file, word_cols))
        # The WavCaps file is keyed by `manual`; some writers key it like the CLIP file instead,
        # so clip_class_name is the per-class fallback.
        parts.append((wavcaps, src.wavcaps_file, [(w2v_rows, "manual")] +
                      ([(clip_rows, "manual"), (clip_rows, "clip_class_name")] if clip_rows else [])))
    else:
        parts.append((word, src.word_file, [(w2v_rows, "manual")]))
    results = {}
    for mode in TEXT_ALIGNMENTS:
        blocks, found, missing_in = [], np.ones(len(class_names), bool), {}
        for (table, dim), path, cols in parts:
            if mode == "by_name":
                cands = _candidates(class_names, [r for r, _ in cols], [c for _, c in cols])
                rows, ok = _by_name(class_names, cands, table, dim)
            else:
                rows, ok = _reference_order(class_names, table, dim)
            for c in np.flatnonzero(~ok):
                missing_in.setdefault(int(c), path)
            blocks.append(rows)
            found &= ok
        text = np.concatenate(blocks, axis=1)  # clipclap: CLIP text first, then WavCaps/CLAP text
        text[~found] = 0.0
        results[mode] = (text, found, missing_in)
    (t1, f1, _), (t2, f2, _) = results["by_name"], results["reference_order"]
    differs = [class_names[c] for c in range(len(class_names))
               if f1[c] != f2[c] or not np.array_equal(t1[c], t2[c])]
    text, found, missing_in = results[alignment]
    return text, found, missing_in, differs


SHOWN_CLASSES = 8  # a warning stays one readable line; the full list goes into env.json


def _warn_alignment(bench: Benchmark) -> None:
    differs = bench.info.get("alignment_differs") or []
    if differs:
        log.warning("text alignment: %d of %d classes of %s get a different text embedding under "
                    "'reference_order' (the reference loader's position pairing) than under 'by_name'; "
                    "using %r. Differing classes: %s%s", len(differs), len(bench.class_names), bench.name,
                    bench.info.get("text_alignment"), ", ".join(differs[:SHOWN_CLASSES]),
                    f", ... ({len(differs) - SHOWN_CLASSES} more; all of them are in the run folder's env.json "
                    "under data.alignment_differs)" if len(differs) > SHOWN_CLASSES else "")


# --------------------------------------------------------------------------------------------------
# feature sets

def infer_feature_set(audio_dim: int, video_dim: int, word_dim: int, wavcaps_dim: int | None,
                      where: str = "features", wavcaps_name: str = "wavcaps_word_embeddings_<ds>_normed.npy") -> str:
    """clipclap (CLAP 1024 / CLIP 512 + CLIP-text 512 & WavCaps-text 1024), cls (VGGish 128 / C3D 4096),
    main (SeLaVi 512 / 512 with 300-d word2vec); anything else is an error."""
    if audio_dim == 1024 and video_dim == 512:
        if wavcaps_dim is None:
            raise DataError(f"{where}: audio 1024-d / video 512-d looks like the clipclap (CLAP/CLIP) set, "
                            f"but the WavCaps text file {wavcaps_name} is missing")
        if (word_dim, wavcaps_dim) != (512, 1024):
            raise DataError(f"{where}: audio 1024-d / video 512-d looks like clipclap, but the text files are "
                            f"{word_dim}-d and {wavcaps_dim}-d (expected CLIP 512 and WavCaps 1024)")
        return "clipclap"
    if audio_dim == 128 and video_dim == 4096:
        return "cls"
    if audio_dim == 512 and video_dim == 512 and word_dim == 300:
        return "main"
    raise DataError(f"{where}: cannot tell the feature set from audio {audio_dim}-d, video {video_dim}-d, "
                    f"text {word_dim}-d{'' if wavcaps_dim is None else f' + {wavcaps_dim}-d WavCaps'} "
                    f"(expected clipclap 1024/512 with 512+1024 text, cls 128/4096, or main 512/512 with 300-d text)")


# --------------------------------------------------------------------------------------------------
# the read

def _read_source(src: _Source, text_alignment: str, progress: bool) -> Benchmark:
    class_names, index = _read_all_class(src.all_class)
    split_ids = {stage: _read_split(path, index, src.all_class) for stage, path in src.split_files.items()}

    # Check every folder against the lists before reading any feature: errors come in seconds.
    plan: dict[str, list[tuple[int, Path, Path]]] = {}
    skipped: list[str] = []
    for stage in STAGE_FOLDERS:
        listed = set(split_ids[stage].tolist())
        for mod in MODALITIES:
            for low, path in sorted(src.files[(mod, stage)].items()):
                if low not in index:
                    if path.name.startswith("."):
                        continue  # a hidden file of no listed class (e.g. macOS '._X.pkl')
                    raise DataError(f"{path}: class '{path.stem}' is in no class list ({src.all_class})")
                if index[low] not in listed:
                    skipped.append(src.rel(path))
        plan[stage] = []
        for c in split_ids[stage].tolist():
            pair = []
            for mod in MODALITIES:
                path = src.files[(mod, stage)].get(class_names[c].lower())
                if path is None:
                    bad = next((why for ch, why in (("/", "'/'"), ("\0", "a NUL character"))
                                if ch in class_names[c]), None)
                    hint = f"; the name cannot be a file name (it holds {bad})" if bad else ""
                    raise DataError(f"{src.feat_root / mod / stage}: no {mod} feature file for class "
                                    f"'{class_names[c]}' (listed in {src.split_files[stage]}){hint}")
                pair.append(path)
            plan[stage].append((c, pair[0], pair[1]))
    if skipped:
        # cls_split's stage_2_test_unseen list drops classes whose files the shared feature folder
        # still holds; the reference loader filters them the same way.
        log.info("%s: %d feature file(s) of classes not listed in their stage's split file were skipped "
                 "(e.g. %s)", src.root, len(skipped), skipped[0])

    word = _load_text_dict(src.word_file)
    wavcaps = _load_text_dict(src.wavcaps_file) if src.wavcaps_file.is_file() else None

    feature_set = None
    first: dict[str, tuple[int, Path]] = {}  # modality -> (dim, file) of the first file read
    layout: tuple[bool, Path] | None = None  # (temporal, file)
    pieces: dict[str, list] = {stage: [] for stage in STAGE_FOLDERS}
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=sum(len(p) for p in plan.values()), desc=f"reading {src.name}", unit="class")
    try:
        for stage in STAGE_FOLDERS:
            for c, a_path, v_path in plan[stage]:
                a_names, audio = _read_feature_file(a_path)
                v_names, video = _read_feature_file(v_path)
                video = _match_videos(a_path, a_names, v_path, v_names, video)
                if bar is not None:
                    bar.update(1)
                if audio is None:
                    log.warning("%s: no videos for class '%s'", a_path, class_names[c])
                    continue
                for mod, m, path in (("audio", audio, a_path), ("video", video, v_path)):
                    dim = m.data.shape[1]
                    if mod not in first:
                        first[mod] = (dim, path)
                    elif dim != first[mod][0]:
                        raise DataError(f"{path}: {mod} features are {dim}-d but {first[mod][1]} has "
                                        f"{first[mod][0]}-d (dims must agree across classes)")
                    if layout is None:
                        layout = (m.temporal, path)
                    elif m.temporal != layout[0]:
                        kinds = ("averaged", "temporal")
                        raise DataError(f"{path}: {kinds[m.temporal]} {mod} features but {layout[1]} "
                                        f"holds {kinds[layout[0]]} ones")
                if feature_set is None:
                    feature_set = infer_feature_set(first["audio"][0], first["video"][0], word[1],
                                                    None if wavcaps is None else wavcaps[1],
                                                    where=str(src.feat_root), wavcaps_name=src.wavcaps_file.name)
                pieces[stage].append((c, a_names, audio, video))
    finally:
        if bar is not None:
            bar.close()

    splits = {}
    for stage in STAGE_FOLDERS:
        if not pieces[stage]:
            raise DataError(f"{src.feat_root}/{{audio,video}}/{stage}: empty split (no videos for the "
                            f"{len(split_ids[stage])} classes of {src.split_files[stage]})")
        splits[stage] = _assemble(pieces[stage], split_ids[stage])
    if feature_set is None:  # unreachable: empty splits raised above
        raise DataError(f"{src.feat_root}: no features")

    text, has_text, missing_in, differs = _build_text(src, class_names, feature_set, word, wavcaps,
                                                      text_alignment)
    if feature_set != "clipclap":
        wavcaps = None  # not part of the text of cls/main
    used = np.unique(np.concatenate(list(split_ids.values())))
    lacking = [int(c) for c in used if not has_text[c]]
    if lacking:
        c = lacking[0]
        more = f" and {len(lacking) - 1} more ({', '.join(class_names[i] for i in lacking[1:4])}" \
               f"{', ...' if len(lacking) > 4 else ''})" if len(lacking) > 1 else ""
        raise DataError(f"{missing_in[c]}: no text embedding for class '{class_names[c]}'{more}, "
                        f"which the split files list (text_alignment={text_alignment})")

    info = {
        "root": str(src.root.resolve()),
        "dataset": src.ds,
        "split": src.split,
        "feature_dir": src.feature_dir,
        "feature_set": feature_set,
        "text_alignment": text_alignment,
        "text_files": [src.rel(src.word_file)] + ([src.rel(src.wavcaps_file)] if wavcaps else []),
        "class_tables": [src.rel(src.table)] + ([src.rel(src.clip_table)] if src.clip_table else []),
        "alignment_differs": differs,
        "skipped_feature_files": skipped,
        "n_videos": {stage: len(s) for stage, s in splits.items()},
        "format_version": FORMAT_VERSION,
        "reader_version": READER_VERSION,
        "source": "raw",
    }
    return Benchmark(name=src.name, class_names=class_names, text=text, has_text=has_text, splits=splits,
                     feature_set=feature_set, info=info)


def _assemble(pieces, classes: np.ndarray) -> Split:
    """Concatenate a stage's per-class pieces once (not video by video) into a Split."""
    labels = np.concatenate([np.full(len(names), c, dtype=np.int64) for c, names, _, _ in pieces])
    names = [n for _, ns, _, _ in pieces for n in ns]
    kw = {}
    for k, mod in ((2, "audio"), (3, "video")):
        parts = [p[k] for p in pieces]
        data = np.concatenate([m.data for m in parts]) if len(parts) > 1 else parts[0].data
        if not parts[0].temporal:
            # writable: a single piece may still be a read-only view of an unpickled buffer
            kw[mod] = np.require(data, np.float32, ["C_CONTIGUOUS", "WRITEABLE", "OWNDATA"])
            continue
        lengths = np.concatenate([m.lengths for m in parts])
        fps = np.concatenate([m.fps for m in parts])
        video_of = np.repeat(np.arange(len(lengths)), lengths)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        step = np.arange(len(video_of)) - offsets[video_of]
        times = (step / fps[video_of]).astype(np.float32)  # seconds: step index / frames per second
        kw[mod], kw[f"{mod}_mask"], kw[f"{mod}_times"] = pad_steps(data, lengths, times)
    return Split(labels=labels, video_names=names, classes=classes.astype(np.int64), **kw)


# --------------------------------------------------------------------------------------------------
# cache

def default_cache_dir() -> Path:
    """`$AVGZSL_CACHE`, else `~/.cache/avgzsl`."""
    env = os.environ.get("AVGZSL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "avgzsl"


def _clean_stale_tmp(cache_root: Path, max_age_s: float = 86400.0) -> None:
    """Remove temporary folders that killed writers left behind (they never load: no manifest)."""
    now = time.time()
    try:
        for p in cache_root.iterdir():
            if p.name.startswith(".") and (".tmp-" in p.name or ".old-" in p.name) and p.is_dir() \
                    and now - p.stat().st_mtime > max_age_s:
                shutil.rmtree(p, ignore_errors=True)
    except OSError:
        pass


def _load_cache(path: Path, root: Path) -> Benchmark | None:
    if not is_native(path):
        return None
    try:
        bench = load_native(path)
    except DataError as e:
        log.warning("ignoring unreadable cache %s (%s); reading the source files again", path, e)
        broken = path.parent / f".{path.name}.old-{os.getpid()}"
        try:
            os.replace(path, broken)
            shutil.rmtree(broken, ignore_errors=True)
        except OSError:
            pass
        return None
    bench.info.update(root=str(root.resolve()), cache_hit=True, cache_path=str(path), source="cache")
    return bench


def _write_cache(bench: Benchmark, path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _clean_stale_tmp(path.parent)
        if is_native(path):
            return  # another process finished the same cache first
        write_native(bench, path)
        log.info("cached %s in %s", bench.name, path)
    except (OSError, DataError) as e:
        if is_native(path):
            return  # lost a race to a concurrent writer: its folder is complete
        log.warning("could not write the benchmark cache %s (%s); continuing without it", path, e)


# --------------------------------------------------------------------------------------------------
# entry point

def load_benchmark(root, *, split: str | None = None, feature_dir: str | None = None,
                   text_alignment: str | None = None, cache: bool = True, cache_dir=None,
                   progress: bool = False) -> Benchmark:
    """Load a benchmark root (ClipClap/AVCA-GZSL layout) or a native-format folder.

    split: class-split folder, default "cls_split" (a native folder: what it was made with).
    feature_dir: folder under features/; default the only one present.
    text_alignment: "by_name" (default; class -> table name -> dict key) or "reference_order"
        (the reference loader's pairing by sorted position; see docs/data.md).
    cache: reuse/write the native-format cache under cache_dir (default `default_cache_dir()`).
    Returns a Benchmark whose `info` records provenance, the cache key and `cache_hit`.
    """
    if text_alignment is not None and text_alignment not in TEXT_ALIGNMENTS:
        raise ConfigError(f"text_alignment must be one of {', '.join(TEXT_ALIGNMENTS)}, got {text_alignment!r}")
    for opt, value in (("split", split), ("feature_dir", feature_dir)):
        if value is not None and (not value or value in (".", "..") or re.search(r"[\\/]", value)):
            raise ConfigError(f"{opt} must be a folder name, got {value!r}")
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"{root}: dataset root does not exist")
    if not root.is_dir():
        raise DataError(f"{root}: dataset root is not a folder")

    if is_native(root):
        bench = load_native(root, expect={"split": split, "feature_dir": feature_dir,
                                          "text_alignment": text_alignment})
        bench.info.update(cache_hit=False, source="native")
        _warn_alignment(bench)
        return bench

    split = split or "cls_split"
    text_alignment = text_alignment or "by_name"
    src = _discover(root, split, feature_dir)
    key = _cache_key(src, text_alignment)
    cache_path = None
    if cache:
        safe_name = re.sub(r"[^A-Za-z0-9_.-]", "_", src.name) or "benchmark"
        cache_path = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        cache_path = cache_path / f"{safe_name}-{key}"
        bench = _load_cache(cache_path, root)
        if bench is not None:
            _warn_alignment(bench)
            return bench
    t0 = time.perf_counter()
    bench = _read_source(src, text_alignment, progress)
    bench.info.update(cache_key=key, cache_hit=False, cache_path=None if cache_path is None else str(cache_path))
    log.info("read %s (%s, %s) from %d source files in %.1f s", bench.name, bench.feature_set, split,
             len(src.stats), time.perf_counter() - t0)
    if cache_path is not None:
        _write_cache(bench, cache_path)
    _warn_alignment(bench)
    return bench
