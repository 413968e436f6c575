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

This module is the orchestrator and holds only the two entry points, `load_benchmark` and `convert`,
plus `_read_source`, the one function that knows the order of a read. Each step has its own module
that knows nothing of the others' callers: `layout.py` (where the files are, the class and split
lists), `features.py` (feature files, video matching, a stage's assembly), `text.py` (text dicts,
class/text alignment, the feature set) and `cache.py` (key, folder, reading and writing). Only this
module imports them all, and `native.py` imports none of them, so `convert` (read, then write
natively) sits here above both rather than in `native.py`, which would import the reader back.
"""
from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import ConfigError, DataError
from .cache import READER_VERSION, _cache_key, _cache_path, _load_cache, _write_cache
from .features import _assemble, _match_videos, _read_feature_file
from .layout import MODALITIES, _discover, _read_all_class, _read_split, _Source
from .native import FORMAT_VERSION, is_native, load_native, write_native
from .text import TEXT_ALIGNMENTS, _build_text, _load_text_dict, _warn_alignment, infer_feature_set
from .types import STAGE_FOLDERS, Benchmark

log = logging.getLogger("avgzsl.data")

__all__ = ["load_benchmark", "convert"]


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
                                                    where=str(first["audio"][1]),  # the file the dims came from
                                                    wavcaps_name=src.wavcaps_file.name)
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
    cache: reuse/write the native-format cache under cache_dir (default `default_cache()`, data/cache.py).
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
        _warn_alignment(bench, repeat=True)  # written by convert, which warned when it read the source
        return bench

    split = split or "cls_split"
    text_alignment = text_alignment or "by_name"
    src = _discover(root, split, feature_dir)
    key = _cache_key(src, text_alignment)
    cache_path = None
    if cache:
        cache_path = _cache_path(src, key, cache_dir)
        bench = _load_cache(cache_path, root)
        if bench is not None:
            _warn_alignment(bench, repeat=True)  # warned when this cache was written
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


# --------------------------------------------------------------------------------------------------
# convert

def convert(root: str | Path, out: str | Path, *, overwrite: bool = False, **load_options) -> Path:
    """Read the benchmark at `root` (with `load_benchmark`'s options) and write it natively to `out`.

    The loader's own cache is off unless `cache=True` is passed: the output folder is the cache.
    """
    load_options.setdefault("cache", False)
    bench = load_benchmark(root, **load_options)
    bench.info["converted_from"] = str(Path(root).resolve())
    out = write_native(bench, out, overwrite=overwrite)
    log.info("wrote native benchmark %s (%s, %s) to %s", bench.name, bench.feature_set,
             bench.info.get("split"), out)
    return out
