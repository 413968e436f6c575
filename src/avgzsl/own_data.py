"""A benchmark of one's own videos: extracted features + class embeddings -> a native benchmark folder.

The recipe (docs/own-data.md): ``avgzsl extract VIDEOS --out FEATS`` -> ``avgzsl embed-classes NAMES
--out CLASSES.npy`` -> ``avgzsl make-benchmark --features FEATS --classes CLASSES.npy --out ROOT`` ->
``avgzsl train --data ROOT``. This module is the third step: it labels the videos, splits the classes
and videos the way the field's benchmarks are split (Mercea et al., CVPR 2022; the paper's §4), and
writes the six stage folders natively (``data/native.py``), so the protocol runs on it unchanged.

Labels: a video's class is the first folder of its path under VIDEOS (``VIDEOS/<class>/...``, the
UCF101 layout), or the ``class`` column of a CSV (``video,class``). Names are matched to the class
embeddings' names after lower-casing and turning ``_``/``-`` into spaces (``Playing_Guitar`` =
``playing guitar``). A class of the embeddings without videos stays in the class list but in no split.

Classes (our choice; switches in brackets): the classes with videos are shuffled with the seed; a
fraction ``test_unseen`` (0.2) becomes the stage-2 unseen classes U2, ``val_unseen`` (0.2) the stage-1
unseen classes U1, the rest the stage-1 seen classes S1; or name U1 and U2 yourself
(``val_unseen_classes``, ``test_unseen_classes``: lists of names). Each part gets at least one class.

Videos per class (our choice, near the real benchmarks' 80/9/10 % for S1 and 88/12 % for U1):

    S1 class: test_seen (0.1) -> stage_2_test_seen, val_seen (0.1) -> stage_1_val_seen, rest -> stage_1_train
    U1 class: test_seen (0.1) -> stage_2_test_seen, rest -> stage_1_val_unseen
    U2 class: all -> stage_2_test_unseen
    stage_2_train = stage_1_train + stage_1_val_seen + stage_1_val_unseen

each part at least one video (an S1 class needs 3, a U1 class 2). Class lists per stage folder as in the
field's files: S1 for stage 1's seen folders, U1 for stage_1_val_unseen, S1 + U1 for stage_2_train and
stage_2_test_seen, U2 for stage_2_test_unseen.
"""
from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .data.native import write_native
from .data.types import STAGE_FOLDERS, Benchmark, Split
from .encoders import ClassEmbeddings
from .errors import DataError
from .extract import VideoFeatures, read_features

log = logging.getLogger("avgzsl.own_data")

__all__ = ["OwnSplit", "class_key", "labels_from_folders", "read_labels", "split_own", "make_benchmark", "describe"]


def class_key(name: str) -> str:
    """The form class names are matched in: lower case, ``_``/``-`` as spaces, single spaces."""
    return re.sub(r"\s+", " ", re.sub(r"[_\-]", " ", str(name))).strip().lower()


def labels_from_folders(video_names: Sequence[str]) -> list[str]:
    """The first folder of each video's path (``dog/a.mp4`` -> ``dog``); a video outside any folder is an error."""
    out, loose = [], []
    for v in video_names:
        parts = Path(v).parts
        if len(parts) < 2:
            loose.append(v)
        out.append(parts[0] if len(parts) >= 2 else "")
    if loose:
        raise DataError(f"{len(loose)} video(s) are not in a class folder (e.g. {loose[0]!r}): put each video under "
                        f"VIDEOS/<class>/ before extracting, or pass --labels CSV (video,class)")
    return out


def read_labels(path: str | Path) -> dict[str, str]:
    """A CSV with a header holding ``video`` and ``class`` columns -> {video: class}."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot read the labels ({type(e).__name__}: {e})") from None
    if not rows or not {"video", "class"} <= set(rows[0]):
        raise DataError(f"{path}: expected a CSV with a header holding the columns video,class")
    out: dict[str, str] = {}
    for i, r in enumerate(rows, start=2):
        video, cls = (r.get("video") or "").strip(), (r.get("class") or "").strip()
        if not video or not cls:
            raise DataError(f"{path}:{i}: empty video or class")
        if video in out and out[video] != cls:
            raise DataError(f"{path}:{i}: {video!r} is labelled both {out[video]!r} and {cls!r}")
        out[video] = cls
    return out


@dataclass
class OwnSplit:
    """folders: {stage folder: (video row indices, class indices)}; s1/u1/u2: the class parts."""

    folders: dict[str, tuple[np.ndarray, np.ndarray]]
    s1: list[int]
    u1: list[int]
    u2: list[int]


def _count(frac: float, n: int, what: str) -> int:
    if not 0.0 < frac < 1.0:
        raise DataError(f"{what}={frac!r}: expected a fraction strictly between 0 and 1")
    return max(1, int(round(frac * n)))


def split_own(labels: np.ndarray, class_names: Sequence[str], *, seed: int = 0, val_unseen: float = 0.2,
              test_unseen: float = 0.2, val_unseen_classes: Sequence[str] | None = None,
              test_unseen_classes: Sequence[str] | None = None, val_seen: float = 0.1,
              test_seen: float = 0.1) -> OwnSplit:
    """Split classes and videos as the module docstring says. `labels`: (N,) class index per video."""
    labels = np.asarray(labels, np.int64)
    rng = np.random.default_rng(seed)
    used = np.unique(labels)
    has_videos = set(used.tolist())
    by_key = {class_key(n): i for i, n in enumerate(class_names)}

    def named(names, what):
        idx = []
        for n in names:
            i = by_key.get(class_key(n))
            if i is None:
                raise DataError(f"{what}: {n!r} is not one of the classes")
            if i not in has_videos:
                raise DataError(f"{what}: {n!r} has no videos")
            idx.append(i)
        return sorted(set(idx))

    if (val_unseen_classes is None) != (test_unseen_classes is None):
        raise DataError("name both the stage-1 and the stage-2 unseen classes, or neither")
    if val_unseen_classes is not None:
        u1, u2 = named(val_unseen_classes, "val-unseen classes"), named(test_unseen_classes, "test-unseen classes")
        both = sorted(set(u1) & set(u2))
        if both:
            raise DataError(f"{class_names[both[0]]!r} is named both a stage-1 and a stage-2 unseen class")
        s1 = sorted(has_videos - set(u1) - set(u2))
    else:
        n_u2, n_u1 = _count(test_unseen, len(used), "test_unseen"), _count(val_unseen, len(used), "val_unseen")
        order = rng.permutation(used).tolist()
        u2, u1, s1 = sorted(order[:n_u2]), sorted(order[n_u2:n_u2 + n_u1]), sorted(order[n_u2 + n_u1:])
    if not (s1 and u1 and u2):
        raise DataError(f"{len(used)} class(es) with videos: need at least one seen, one stage-1 unseen and one "
                        f"stage-2 unseen class (3 classes)")

    rows: dict[str, list[np.ndarray]] = {s: [] for s in STAGE_FOLDERS if s != "stage_2_train"}
    seen, unseen2 = set(s1), set(u2)
    order = np.argsort(labels, kind="stable")  # videos grouped by class: one pass instead of one scan per class
    starts = np.searchsorted(labels[order], np.asarray(s1 + u1 + u2))
    ends = np.searchsorted(labels[order], np.asarray(s1 + u1 + u2), side="right")
    for c, a, b in zip(s1 + u1 + u2, starts, ends):
        idx = rng.permutation(order[a:b])  # the class's rows in index order, as np.flatnonzero gives them
        n = len(idx)
        if c in unseen2:
            rows["stage_2_test_unseen"].append(idx)
            continue
        n_test = _count(test_seen, n, "test_seen")
        n_val = _count(val_seen, n, "val_seen") if c in seen else 0
        need = 3 if c in seen else 2
        if n < need:
            role = "seen" if c in seen else "stage-1 unseen"
            raise DataError(f"class {class_names[c]!r} has {n} video(s); a {role} class needs at least {need} "
                            f"(train/validation/test parts); add videos or name it an unseen class")
        n_test = min(n_test, n - (need - 1))
        n_val = min(n_val, n - n_test - 1) if c in seen else 0
        rows["stage_2_test_seen"].append(idx[:n_test])
        if c in seen:
            rows["stage_1_val_seen"].append(idx[n_test:n_test + n_val])
            rows["stage_1_train"].append(idx[n_test + n_val:])
        else:
            rows["stage_1_val_unseen"].append(idx[n_test:])
    folders = {}
    classes = {"stage_1_train": s1, "stage_1_val_seen": s1, "stage_1_val_unseen": u1, "stage_2_train": s1 + u1,
               "stage_2_test_seen": s1 + u1, "stage_2_test_unseen": u2}
    for s in STAGE_FOLDERS:
        if s == "stage_2_train":
            parts = rows["stage_1_train"] + rows["stage_1_val_seen"] + rows["stage_1_val_unseen"]
        else:
            parts = rows[s]
        folders[s] = (np.sort(np.concatenate(parts)).astype(np.int64), np.asarray(sorted(classes[s]), np.int64))
    return OwnSplit(folders, s1, u1, u2)


def make_benchmark(features: str | Path | VideoFeatures, classes: str | Path | ClassEmbeddings, out: str | Path,
                   *, labels: str | Path | dict | None = None, name: str | None = None, overwrite: bool = False,
                   seed: int = 0, **split_options) -> Path:
    """Write a native benchmark folder from extracted features and class embeddings (module docstring).

    `features`: an ``avgzsl extract`` folder (or VideoFeatures); `classes`: an embeddings file from
    ``avgzsl embed-classes`` (or ClassEmbeddings); `labels`: a CSV path or {video: class}, default the
    videos' class folders. `split_options`: `split_own`'s fractions or named unseen classes.
    Returns `out`.
    """
    feats = features if isinstance(features, VideoFeatures) else read_features(features)
    emb = classes if isinstance(classes, ClassEmbeddings) else ClassEmbeddings.load(classes)
    where = str(features) if not isinstance(features, VideoFeatures) else "features"
    cwhere = str(classes) if not isinstance(classes, ClassEmbeddings) else "the class embeddings"
    if feats.audio.ndim != 2:
        raise DataError(f"{where}: temporal features; make-benchmark takes averaged ones (avgzsl extract)")
    if isinstance(labels, (str, Path)):
        table, lab_where = read_labels(labels), str(labels)
        missing = [v for v in feats.names if v not in table]
        if missing:
            raise DataError(f"{lab_where}: no class for {len(missing)} of the {len(feats.names)} video(s) "
                            f"(e.g. {missing[0]!r})")
        raw = [table[v] for v in feats.names]
    elif isinstance(labels, dict):
        missing = [v for v in feats.names if v not in labels]
        if missing:
            raise DataError(f"labels: no class for {len(missing)} of the {len(feats.names)} video(s) "
                            f"(e.g. {missing[0]!r})")
        raw = [labels[v] for v in feats.names]
    else:
        raw = labels_from_folders(feats.names)

    keys = [class_key(n) for n in emb.names]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise DataError(f"{cwhere}: two class names read the same after normalising ({dup[0]!r})")
    index = {k: i for i, k in enumerate(keys)}
    unknown = sorted({r for r in raw if class_key(r) not in index})
    if unknown:
        raise DataError(f"{len(unknown)} class(es) of the videos have no embedding in {cwhere} (e.g. "
                        f"{unknown[0]!r}); embed every class name (avgzsl embed-classes)")
    y = np.asarray([index[class_key(r)] for r in raw], np.int64)
    labelled = set(y.tolist())
    unused = [emb.names[i] for i in range(len(emb.names)) if i not in labelled]
    if unused:
        log.warning("%d class(es) have no videos and are in no split (e.g. %r)", len(unused), unused[0])

    parts = split_own(y, emb.names, seed=seed, **split_options)
    names = np.asarray(feats.names, dtype=object)
    splits = {s: Split(np.ascontiguousarray(feats.audio[r], np.float32), np.ascontiguousarray(feats.video[r], np.float32),
                       y[r], names[r].tolist(), cls) for s, (r, cls) in parts.folders.items()}
    info = {"kind": "own-benchmark", "text_space": emb.space, "text_encoder": emb.encoder,
            "feature_space": feats.info.get("feature_space"), "frame_recipe": feats.info.get("frame_recipe"),
            "seed": seed, "split_options": {k: (list(v) if isinstance(v, (list, tuple)) else v)
                                            for k, v in split_options.items()},
            "features": where, "classes": cwhere,
            "classes_s1": [emb.names[i] for i in parts.s1], "classes_u1": [emb.names[i] for i in parts.u1],
            "classes_u2": [emb.names[i] for i in parts.u2]}
    # the feature set names what the features are (the extractor's space), so predict can warn about others
    feature_set = feats.info.get("feature_space") or "own"
    bench = Benchmark(name=name or Path(str(out)).name, class_names=list(emb.names), text=emb.vectors,
                      has_text=np.ones(len(emb.names), bool), splits=splits, feature_set=feature_set, info=info)
    return write_native(bench, out, overwrite=overwrite)


def describe(path: str | Path) -> str:
    """One summary line per stage folder of a benchmark written by `make_benchmark`."""
    from .data.native import load_native
    b = load_native(path, copy=False)
    lines = [f"wrote {path}: {len(b.class_names)} classes, text space {b.text_space}"]
    for s in STAGE_FOLDERS:
        sp = b.splits[s]
        lines.append(f"  {s:<20} {len(sp):>6} videos  {len(sp.classes):>4} classes")
    return "\n".join(lines)
