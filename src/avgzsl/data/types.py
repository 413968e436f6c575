"""In-memory benchmark: the arrays every model and protocol step reads.

Files -> arrays happens once in `benchmark.load_benchmark`; from here on nothing touches the disk.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..spaces import text_space_name

STAGE_FOLDERS = (
    "stage_1_train",
    "stage_1_val_seen",
    "stage_1_val_unseen",
    "stage_2_train",
    "stage_2_test_seen",
    "stage_2_test_unseen",
)


@dataclass
class Split:
    """The videos of one stage folder.

    Averaged features: audio (N, Da), video (N, Dv), masks/times None.
    Temporal features: audio (N, Ta, Da), video (N, Tv, Dv), zero-padded; audio_mask (N, Ta) and
    video_mask (N, Tv) are True on real steps; audio_times/video_times (N, T) hold each step's time
    in seconds (from the file's fps), 0 on padding.
    """

    audio: np.ndarray
    video: np.ndarray
    labels: np.ndarray  # (N,) int64 global class index (position in sorted all_class.txt)
    video_names: list[str]
    classes: np.ndarray  # (K,) int64 sorted class indices listed in the split file
    audio_mask: np.ndarray | None = None
    video_mask: np.ndarray | None = None
    audio_times: np.ndarray | None = None
    video_times: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def temporal(self) -> bool:
        return self.audio.ndim == 3

    def subset(self, index: np.ndarray) -> "Split":
        """Rows `index` (a sorted int array or bool mask); `classes` is kept as listed."""
        take = (lambda a: None if a is None else a[index])
        names = np.asarray(self.video_names, dtype=object)[index].tolist()
        return Split(take(self.audio), take(self.video), self.labels[index], names, self.classes,
                     take(self.audio_mask), take(self.video_mask), take(self.audio_times),
                     take(self.video_times))

    @staticmethod
    def concat(parts: list["Split"]) -> "Split":
        """Stack splits (same feature layout); `classes` becomes the sorted union."""
        first = parts[0]

        def cat(attr):
            vals = [getattr(p, attr) for p in parts]
            if vals[0] is None:
                return None
            if vals[0].ndim >= 2 and first.temporal and attr != "labels":
                t = max(v.shape[1] for v in vals)  # pad every part to the longest time axis
                vals = [np.pad(v, [(0, 0), (0, t - v.shape[1])] + [(0, 0)] * (v.ndim - 2)) for v in vals]
            return np.concatenate(vals, axis=0)

        return Split(cat("audio"), cat("video"), np.concatenate([p.labels for p in parts]),
                     [n for p in parts for n in p.video_names],
                     np.unique(np.concatenate([p.classes for p in parts])),
                     cat("audio_mask"), cat("video_mask"), cat("audio_times"), cat("video_times"))


@dataclass
class FeatureDims:
    """What a model needs to know about its inputs."""

    audio: int
    video: int
    text: int
    temporal: bool = False
    feature_set: str = "clipclap"  # clipclap | cls | main (see infer_feature_set, data/text.py)

    def to_dict(self) -> dict:
        return dict(audio=self.audio, video=self.video, text=self.text, temporal=self.temporal,
                    feature_set=self.feature_set)


@dataclass
class Benchmark:
    """One dataset root, loaded: six stage splits plus class names and text embeddings."""

    name: str  # e.g. "UCF"
    class_names: list[str]  # sorted all_class.txt (case-insensitive sort); index = class id
    text: np.ndarray  # (C, Dt) float32; row c = text embedding of class c (zeros if c has none)
    has_text: np.ndarray  # (C,) bool
    splits: dict[str, Split]  # keyed by STAGE_FOLDERS
    feature_set: str  # clipclap | cls | main
    info: dict = field(default_factory=dict)  # provenance: root, split, feature_dir, alignment, cache key

    @property
    def dims(self) -> FeatureDims:
        s = self.splits["stage_1_train"]
        return FeatureDims(audio=int(s.audio.shape[-1]), video=int(s.video.shape[-1]),
                           text=int(self.text.shape[1]), temporal=s.temporal,
                           feature_set=self.feature_set)

    def classes_of(self, folder: str) -> np.ndarray:
        return self.splits[folder].classes

    @property
    def text_space(self) -> str:
        """The space of the class text (spaces.py): declared (config `text_space`) or set by replaced class
        text (classtext.py), else the feature set's."""
        return self.info.get("text_space") or text_space_name(self.feature_set)

    @property
    def text_from_descriptions(self) -> bool:
        """Whether the class text was made from class descriptions (classtext.py records it)."""
        return bool((self.info.get("class_text") or {}).get("descriptions"))


def empty_benchmark(class_names, text, feature_set: str, audio_dim: int, video_dim: int, info: dict,
                    videos: tuple[str, Split] | None = None) -> Benchmark:
    """A Benchmark with empty stage folders (or `videos` = (stage folder, Split) filled in), as the
    class-embeddings and video-features files write it (`native.write_native`); named info["kind"]."""
    def empty() -> Split:
        return Split(np.zeros((0, audio_dim), np.float32), np.zeros((0, video_dim), np.float32),
                     np.zeros(0, np.int64), [], np.zeros(0, np.int64))
    splits = {s: empty() for s in STAGE_FOLDERS}
    if videos is not None:
        splits[videos[0]] = videos[1]
    return Benchmark(name=info.get("kind", "avgzsl"), class_names=list(class_names),
                     text=np.asarray(text, np.float32), has_text=np.ones(len(class_names), bool), splits=splits,
                     feature_set=feature_set, info=info)
