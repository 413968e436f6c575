"""Where a benchmark root's files are: split lists, class tables, feature folders and text files.

The ClipClap-GZSL / AVCA-GZSL layout (see `data/benchmark.py` and docs/data.md): `_discover` checks
that every folder and list file the read needs is there and records each source file's size and
mtime (the cache key, `data/cache.py`); the readers below turn the class list, the six stage lists
and the class-name tables into names and ids. Problems raise a one-line `DataError` naming the file.
"""
from __future__ import annotations

import csv
import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from .types import STAGE_FOLDERS

DATASETS = ("ucf", "activitynet", "vggsound")
FEATURE_EXTS = (".pkl", ".h5", ".hdf5")
MODALITIES = ("audio", "video")


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
