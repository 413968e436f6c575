"""Text embeddings: the name -> vector dicts, their alignment with the class list, the feature set.

`by_name` maps each class through the class-name tables (`original` -> `manual` / `clip_class_name`)
to a dict key; `reference_order` pairs by sorted position as the reference loader does (docs/data.md).
Both are computed on every read so that the classes where they differ are recorded and warned about.
`infer_feature_set` tells clipclap / cls / main apart from the feature and text dims.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import DataError
from .layout import _nfc, _read_table, _Source
from .safe_pickle import load_npy_safely
from .types import Benchmark

log = logging.getLogger("avgzsl.data")

TEXT_ALIGNMENTS = ("by_name", "reference_order")

__all__ = ["infer_feature_set", "TEXT_ALIGNMENTS"]


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


def _warn_alignment(bench: Benchmark, repeat: bool = False) -> None:
    """Warn when the two text alignments differ for some classes: once per dataset and cache, when the
    source files are read; `repeat` (a cache hit, a native folder) says it at INFO level only."""
    differs = bench.info.get("alignment_differs") or []
    if differs:
        log.log(logging.INFO if repeat else logging.WARNING, "text alignment: %d of %d classes of %s get a different text embedding under "
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
    raise DataError(f"{where}: cannot tell the feature set from the feature dims: audio {audio_dim}-d, video "
                    f"{video_dim}-d, text {word_dim}-d{'' if wavcaps_dim is None else f' + {wavcaps_dim}-d WavCaps'} "
                    f"(expected clipclap 1024/512 with 512+1024 text, cls 128/4096, or main 512/512 with 300-d text)")
