"""Feature files: `.pkl` / `.h5` parsing, audio-video matching, and a stage's assembly into a `Split`.

One file holds one class's videos of one modality and stage (`features/<method>/<modality>/<stage>/
<Class>.pkl|.h5`, see docs/data.md). Its content is validated on the way in (shapes, dims, finite
values, fps); HDF5 datasets are read only after links and declared sizes were checked against the
file (`read_limit`, `data/read_limits.py`). Problems raise a one-line `DataError` naming the file.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from .native import pad_steps
from .read_limits import MAX_READ_BYTES_ENV, MAX_READ_RATIO_ENV, format_bytes, read_limit
from .safe_pickle import load_pickle_safely
from .types import Split


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
    h5py = _import_h5py(path)

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


def _import_h5py(path: Path):
    """h5py is optional (the `h5` extra): only the AVCA-GZSL family's .h5 feature files need it."""
    try:
        import h5py
    except ImportError:
        raise DataError(f"{path}: reading .h5 feature files needs h5py: pip install h5py "
                        f"(or the extra: pip install 'avgzsl[h5]')") from None
    return h5py


def _read_h5(path: Path):
    h5py = _import_h5py(path)

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
# a stage's assembly

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
