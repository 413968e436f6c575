"""Write tiny benchmark roots in the ClipClap/AVCA-GZSL on-disk layout, and remember what was written.

`make_dataset` builds a complete, valid root (class lists, class-name tables, per-class feature files,
pickled text dictionaries) with seeded random values; tests then break one thing at a time and compare
what the loader returns with `Layout`'s record of what is on disk.
"""
from __future__ import annotations

import csv
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

STAGES = ("stage_1_train", "stage_1_val_seen", "stage_1_val_unseen",
          "stage_2_train", "stage_2_test_seen", "stage_2_test_unseen")

# audio dim, video dim, {text file stem: dim}; the loader infers the feature set from these.
FEATURE_SETS = {
    "clipclap": (1024, 512, {"word_embeddings": 512, "wavcaps_word_embeddings": 1024}),
    "cls": (128, 4096, {"word_embeddings": 300}),
    "main": (512, 512, {"word_embeddings": 300}),
}

# Case-sensitive and case-insensitive sorts disagree (BMX/Ballet, JumpRope/JumpingJack), and a split
# list spells HandstandPushups as UCF's lists do (HandStandPushups). "Unused" is in no split.
CLASSES = ["Archery", "BMX", "Ballet", "HandstandPushups", "JumpRope", "JumpingJack", "Unused"]
SPLITS = {
    "stage_1_train": ["Archery", "BMX"],
    "stage_1_val_seen": ["Archery", "BMX"],
    "stage_1_val_unseen": ["HandStandPushups"],
    "stage_2_train": ["Archery", "BMX", "HandStandPushups"],
    "stage_2_test_seen": ["Archery", "BMX", "HandStandPushups"],
    "stage_2_test_unseen": ["Ballet", "JumpRope", "JumpingJack"],
}
# original -> manual (the w2v table); text dictionaries are keyed by the manual name.
MANUAL = {"Archery": "archery", "BMX": "bmx biking", "Ballet": "ballet dancing",
          "HandstandPushups": "handstand pushups", "JumpRope": "jump rope", "JumpingJack": "jumping jack",
          "Unused": "unused thing"}
# UCF's CLIP text is keyed by a third spelling (ucf_clip_class_names.csv, column clip_class_name).
CLIP_NAME = {**MANUAL, "HandstandPushups": "hand stand pushups"}
NO_TEXT = {"Unused"}  # no embedding in any text file (allowed: it is in no split)


@dataclass
class Video:
    cls: str  # class name as written in all_class.txt
    name: str
    audio: np.ndarray  # (Da,) or (T, Da), float32 as the loader should return it
    video: np.ndarray
    fps: float


@dataclass
class Layout:
    root: Path
    feat: Path  # features/<method>
    feature_set: str
    temporal: bool
    fmt: str
    videos: dict[str, list[Video]] = field(default_factory=dict)  # stage -> videos in file order
    text: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # file stem -> dict

    def file(self, mod: str, stage: str, cls: str) -> Path:
        folder = self.feat / mod / stage
        return next(p for p in folder.iterdir() if p.stem.lower() == cls.lower())

    def text_file(self, stem: str = "word_embeddings") -> Path:
        return self.feat / "text" / f"{stem}_ucf_normed.npy"

    def expected(self, stage: str, class_names: list[str]) -> list[Video]:
        """Videos of a stage in the loader's order: by class index, then file order."""
        index = {n.lower(): i for i, n in enumerate(class_names)}
        return sorted(self.videos[stage], key=lambda v: index[v.cls.lower()])  # stable sort

    def expected_text(self, cls: str) -> np.ndarray:
        if self.feature_set == "clipclap":
            return np.concatenate([self.text["word_embeddings"][CLIP_NAME[cls]],
                                   self.text["wavcaps_word_embeddings"][MANUAL[cls]]])
        return self.text["word_embeddings"][MANUAL[cls]]


def write_lines(path: Path, lines) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def write_table(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def write_pkl(path: Path, features, names, fps, protocol: int = 4) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump({"features": features, "video_names": names, "fps": fps}, f, protocol=protocol)


def write_h5(path: Path, data: np.ndarray, names, fps=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=data)
        f.create_dataset("video_urls", data=np.asarray([n.encode() for n in names]))
        if fps is not None:
            f.create_dataset("fps", data=fps)


def write_text(path: Path, table: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, table, allow_pickle=True)  # a 0-d object array holding the dict, as the release does


def unit(rng, dim: int) -> np.ndarray:
    v = rng.standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def make_dataset(tmp_path: Path, *, feature_set: str = "cls", temporal: bool = False, fmt: str = "pkl",
                 name: str = "UCF", method: str = "feats", n_videos: int = 2, seed: int = 0,
                 split: str = "cls_split", float16: bool = False) -> Layout:
    """A valid root at tmp_path/name; returns what was written."""
    rng = np.random.default_rng(seed)
    root = tmp_path / name
    da, dv, text_dims = FEATURE_SETS[feature_set]
    lay = Layout(root=root, feat=root / "features" / method, feature_set=feature_set, temporal=temporal, fmt=fmt)
    cs = root / "class-split"
    write_lines(cs / "all_class.txt", CLASSES)
    for stage in STAGES:
        write_lines(cs / split / f"{stage}.txt", SPLITS[stage])
    write_table(cs / "ucf_w2v_class_names.csv", [{"original": c, "manual": MANUAL[c]} for c in CLASSES])
    if feature_set == "clipclap":
        write_table(cs / "ucf_clip_class_names.csv",
                    [{"original": c, "manual": MANUAL[c], "clip_class_name": CLIP_NAME[c]} for c in CLASSES])
    for stem, dim in text_dims.items():
        names = CLIP_NAME if stem == "word_embeddings" and feature_set == "clipclap" else MANUAL
        lay.text[stem] = {names[c]: unit(rng, dim) for c in CLASSES if c not in NO_TEXT}
        write_text(lay.text_file(stem), lay.text[stem])

    for stage in STAGES:
        lay.videos[stage] = []
        for cls in SPLITS[stage]:
            vids = []
            for i in range(n_videos):
                t_a, t_v = (int(rng.integers(1, 5)), int(rng.integers(1, 5))) if temporal else (None, None)
                if fmt == "h5" and temporal:
                    t_a, t_v = 3, 2  # h5 holds one (N, T, D) block per file
                shape_a = (da,) if t_a is None else (t_a, da)
                shape_v = (dv,) if t_v is None else (t_v, dv)
                a = rng.standard_normal(shape_a).astype(np.float16 if float16 else np.float32)
                v = rng.standard_normal(shape_v).astype(np.float16 if float16 else np.float32)
                fps = 25.0 if fmt == "h5" else float(rng.choice([1.0, 2.0, 25.0]))
                vids.append(Video(cls, f"v_{cls}_{stage}_{i:02d}", a.astype(np.float32), v.astype(np.float32), fps))
            lay.videos[stage] += vids
            names = [v.name for v in vids]
            for mod in ("audio", "video"):
                arrays = [getattr(v, mod).astype(np.float16) if float16 else getattr(v, mod) for v in vids]
                path = lay.feat / mod / stage / f"{cls}.{'h5' if fmt == 'h5' else 'pkl'}"
                if fmt == "h5":
                    write_h5(path, np.stack(arrays), names, 25.0 if temporal else None)
                else:
                    write_pkl(path, arrays, names, [v.fps for v in vids])
    return lay
