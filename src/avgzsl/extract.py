"""Audio and visual features for new videos with the clipclap recipe (ClipClap-GZSL's extraction).

Per video (``avgzsl extract VIDEO_DIR --out FILE``, API ``extract(video_dir, out, ...)``):

* visual: one middle frame, chosen and handed to CLIP by a frame recipe (``FRAME_RECIPES``): ``rgb``
  (default: index ``n_frames // 2``, ``n_frames`` from the container, else counted) or a ``clipclap-*``
  recipe that repeats ClipClap-GZSL's per-dataset extraction script, quirks included (BGR frames; on
  UCF colour-negated ones; on ActivityNet/VGGSound index ``n_decoded // 2 - 1``); then the CLIP folder's
  image processor, CLIP image features, L2-normalised (512-d for ViT-B/32);
* audio: the whole track, resampled to the audio tower's sample rate and mixed to mono (channel mean);
  a 10 s centre crop (``[n//2 - 5 s, n//2 + 5 s)``) or zero padding at the end to 10 s; the audio
  tower's features, L2-normalised.

Decoding uses PyAV. A video that cannot be used (no audio track, no video track, undecodable file)
is reported with a one-line reason in ``ExtractResult.errors`` (and in the output's manifest) and left
out; the others are written.

Output: the native feature format (``avgzsl.data.native``): a folder whose ``stage_2_test_unseen``
holds the videos (audio ``(N, Da)``, video ``(N, Dv)`` float32, ``video_names`` = paths relative to
VIDEO_DIR, labels -1) and whose other stage folders are empty; the manifest's ``info`` records
``kind: video-features``, the encoders, weights, frame recipe and errors. ``read_features`` reads it
back, and also reads the test videos of any native benchmark folder.

The encoders must be those the model was trained on (space names: ``src/avgzsl/spaces.py``). Two audio
towers (``AUDIO_ENCODERS``): ``laion``, a ``transformers`` ClapModel (LAION-CLAP, 512-d;
``clip-vit-b32+clap-laion``), and ``wavcaps``, WavCaps' HTSAT-BERT CLAP (1024-d;
``clip-vit-b32+clap-wavcaps``, the space of ClipClap-GZSL's released features).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .data.native import is_native, load_native, write_native
from .data.types import STAGE_FOLDERS, Split, empty_benchmark
from .encoders.towers import (EncoderError, LoadedTower, l2_normalise, load_clap, load_clip, pooled_features,
                              resolve_weights)
from .errors import AvgzslError, DataError
from .spaces import join_spaces
from .video import (FRAME_RECIPES, VIDEO_EXTENSIONS, FrameRecipe, VideoError, centre_crop, get_frame_recipe,
                    list_videos, read_audio, read_middle_frame)

log = logging.getLogger("avgzsl.extract")

__all__ = ["VIDEO_EXTENSIONS", "VideoError", "ExtractResult", "VideoFeatures", "ClipClapExtractor", "extract",
           "FrameRecipe", "FRAME_RECIPES", "get_frame_recipe",
           "list_videos", "read_middle_frame", "read_audio", "centre_crop", "write_features", "read_features",
           "FEATURES_SPLIT"]

FEATURES_SPLIT = "stage_2_test_unseen"  # where new (unlabelled) videos go in the native layout
TEST_SPLITS = ("stage_2_test_seen", "stage_2_test_unseen")


# --------------------------------------------------------------------------------------------------
# encoders

class ClipClapExtractor:
    """CLIP image features of a frame and CLAP audio features of a waveform, both L2-normalised."""

    def __init__(self, clip: LoadedTower, clap: LoadedTower, clip_seconds: float = 10.0, frame_recipe: str = "rgb"):
        if clip.processor is None or clap.processor is None:
            raise EncoderError("the extractor needs the CLIP image processor and the CLAP feature extractor")
        self.clip, self.clap, self.frame_recipe = clip, clap, get_frame_recipe(frame_recipe).name
        self.sample_rate = int(clap.processor.sampling_rate)
        n = int(round(clip_seconds * self.sample_rate))
        # a feature extractor that holds fewer samples would crop at random: crop at the centre ourselves
        self.n_samples = min(n, int(getattr(clap.processor, "nb_max_samples", n) or n))
        self.clip_seconds = self.n_samples / self.sample_rate
        self.fusion = bool(getattr(clap.model.config.audio_config, "enable_fusion", False))

    @classmethod
    def from_weights(cls, weights=None, clip_weights=None, clap_weights=None, device: str = "cpu",
                     frame_recipe: str = "rgb") -> "ClipClapExtractor":
        clip = load_clip(resolve_weights("clip", weights, clip_weights, clap_weights), device, image=True)
        clap = load_clap(resolve_weights("clap", weights, clip_weights, clap_weights), device, audio=True)
        return cls(clip, clap, frame_recipe=frame_recipe)

    @property
    def dims(self) -> tuple[int, int]:
        """(audio, video) feature widths."""
        return self.clap.dim, self.clip.dim

    @property
    def feature_space(self) -> str:
        return join_spaces(self.clip.space, self.clap.space)

    def video_features(self, frames: list[np.ndarray]) -> np.ndarray:
        inputs = self.clip.processor(images=list(frames), return_tensors="pt")
        with torch.inference_mode():
            out = self.clip.model.get_image_features(pixel_values=inputs["pixel_values"].to(self.clip.device))
        return l2_normalise(pooled_features(out)).cpu().numpy()

    def audio_features(self, waves: list[np.ndarray]) -> np.ndarray:
        waves = [centre_crop(w, self.n_samples) for w in waves]
        inputs = self.clap.processor(waves, sampling_rate=self.sample_rate, return_tensors="pt",
                                     truncation="fusion" if self.fusion else "rand_trunc", padding="repeatpad")
        kw = {"input_features": inputs["input_features"].to(self.clap.device)}
        if "is_longer" in inputs:
            kw["is_longer"] = inputs["is_longer"].to(self.clap.device)
        with torch.inference_mode():
            out = self.clap.model.get_audio_features(**kw)
        return l2_normalise(pooled_features(out)).cpu().numpy()

    def describe(self) -> dict:
        return {"recipe": "clipclap: CLIP image features of the middle frame; CLAP audio features of a "
                          f"{self.clip_seconds:g} s centre crop; both L2-normalised",
                "visual_encoder": self.clip.space, "audio_encoder": self.clap.space,
                "feature_space": self.feature_space, "clip_weights": str(self.clip.path),
                "clap_weights": str(self.clap.path), "sample_rate": self.sample_rate,
                "clip_seconds": self.clip_seconds, "frame_recipe": self.frame_recipe}


class ClipWavCapsExtractor(ClipClapExtractor):
    """CLIP image features of a frame and WavCaps HTSAT-BERT CLAP audio features (32 kHz, 10 s): the feature
    space of ClipClap-GZSL's release, ``clip-vit-b32+clap-wavcaps``."""

    def __init__(self, clip: LoadedTower, wavcaps, frame_recipe: str = "rgb"):
        if clip.processor is None:
            raise EncoderError("the extractor needs the CLIP image processor")
        self.clip, self.clap, self.frame_recipe = clip, wavcaps, get_frame_recipe(frame_recipe).name
        self.sample_rate, self.clip_seconds = int(wavcaps.sample_rate), 10.0
        self.n_samples, self.fusion = int(round(self.clip_seconds * self.sample_rate)), False

    @classmethod
    def from_weights(cls, weights=None, clip_weights=None, clap_weights=None, device: str = "cpu",
                     frame_recipe: str = "rgb") -> "ClipWavCapsExtractor":
        from .encoders.wavcaps import load_wavcaps_audio, resolve_wavcaps
        clip = load_clip(resolve_weights("clip", weights, clip_weights, clap_weights), device, image=True)
        ckpt, _ = resolve_wavcaps(weights, clap_weights, need_tokenizer=False)
        return cls(clip, load_wavcaps_audio(ckpt, device), frame_recipe=frame_recipe)

    def audio_features(self, waves: list[np.ndarray]) -> np.ndarray:
        return self.clap.encode_audio([centre_crop(w, self.n_samples) for w in waves]).cpu().numpy()

    def describe(self) -> dict:
        return {**super().describe(), "recipe": "clipclap-wavcaps: CLIP image features of the middle frame; WavCaps "
                f"CLAP audio features of a {self.clip_seconds:g} s centre crop at 32 kHz; both L2-normalised"}


# the audio tower of a feature space: LAION-CLAP (`clip-vit-b32+clap-laion`) or WavCaps (the release's
# `clip-vit-b32+clap-wavcaps`, for models trained on ClipClap-GZSL's features)
AUDIO_ENCODERS = {"laion": ClipClapExtractor, "wavcaps": ClipWavCapsExtractor}


# --------------------------------------------------------------------------------------------------
# the features file

@dataclass
class VideoFeatures:
    """Features of N videos (audio (N, Da) or (N, T, Da), likewise video) and their names."""

    names: list[str]
    audio: np.ndarray
    video: np.ndarray
    labels: np.ndarray | None = None  # (N,) class ids when read from a benchmark, else None
    audio_mask: np.ndarray | None = None
    video_mask: np.ndarray | None = None
    audio_times: np.ndarray | None = None
    video_times: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.names)


def write_features(out: str | Path, names: Sequence[str], audio: np.ndarray, video: np.ndarray, info: dict,
                   overwrite: bool = False) -> Path:
    """Write videos' features as a native-format folder (videos in ``stage_2_test_unseen``, label -1)."""
    audio, video = np.asarray(audio, np.float32), np.asarray(video, np.float32)
    n = len(names)
    if audio.shape[0] != n or video.shape[0] != n:
        raise AvgzslError(f"{n} names but {audio.shape[0]} audio and {video.shape[0]} video rows")
    split = Split(audio, video, np.full(n, -1, np.int64), list(names), np.zeros(0, np.int64))
    info = {"kind": "video-features", "split": FEATURES_SPLIT, **info}
    bench = empty_benchmark([], np.zeros((0, 0), np.float32), info.get("feature_space", "video-features"),
                            audio.shape[-1], video.shape[-1], info, videos=(FEATURES_SPLIT, split))
    return write_native(bench, out, overwrite=overwrite)


def read_features(path: str | Path, splits: Sequence[str] | None = None) -> VideoFeatures:
    """Features written by ``extract``/``write_features``, or the videos of a native benchmark folder
    (default: its test videos, ``stage_2_test_seen`` + ``stage_2_test_unseen``, with their labels)."""
    path = Path(path)
    if not is_native(path):
        raise DataError(f"{path}: not a features folder (write one with `avgzsl extract`, or pass a native "
                        f"benchmark folder made by `avgzsl convert`)")
    bench = load_native(path)
    info = dict(bench.info)
    ours = info.get("kind") == "video-features"
    if splits is None:
        splits = [info.get("split", FEATURES_SPLIT)] if ours else list(TEST_SPLITS)
    bad = [s for s in splits if s not in STAGE_FOLDERS]
    if bad:
        raise AvgzslError(f"{bad[0]!r}: not a stage folder ({', '.join(STAGE_FOLDERS)})")
    s = Split.concat([bench.splits[name] for name in splits])
    if len(s) == 0:
        raise DataError(f"{path}: no videos in {', '.join(splits)}")
    info.setdefault("feature_set", bench.feature_set)
    return VideoFeatures(list(s.video_names), s.audio, s.video, None if ours else s.labels, s.audio_mask,
                         s.video_mask, s.audio_times, s.video_times, info)


# --------------------------------------------------------------------------------------------------
# the pipeline

@dataclass
class ExtractResult:
    out: Path | None
    names: list[str]  # videos written, in order
    errors: dict[str, str]  # video -> one-line reason it was left out
    n_found: int = 0

    def summary(self) -> str:
        lines = [f"extracted {len(self.names)} of {self.n_found} video(s)"
                 + (f" to {self.out}" if self.out else "")]
        if self.errors:
            lines.append(f"{len(self.errors)} video(s) left out:")
            lines += [f"  {name}: {why}" for name, why in self.errors.items()]
        return "\n".join(lines)


def extract(video_dir: str | Path, out: str | Path | None, *, weights=None, clip_weights=None, clap_weights=None,
            device: str = "cpu", batch_size: int = 8, progress: bool = True, overwrite: bool = False,
            frame_recipe: str = "rgb", extractor: ClipClapExtractor | None = None,
            videos: Sequence[str | Path] | None = None, audio_encoder: str = "laion") -> ExtractResult:
    """Extract every video under `video_dir` (or the given `videos`) and write the features to `out`
    (nothing is written when `out` is None). Per-video problems go to ``ExtractResult.errors``; if no
    video could be used, a DataError is raised listing the first reasons."""
    root = Path(video_dir)
    files = [Path(v) for v in videos] if videos is not None else list_videos(root)
    if not files:
        raise DataError(f"{root}: no video files ({', '.join(VIDEO_EXTENSIONS)})")
    if out is not None:
        _check_out(Path(out), overwrite)
    if audio_encoder not in AUDIO_ENCODERS:
        raise DataError(f"audio_encoder={audio_encoder!r}: expected one of {', '.join(AUDIO_ENCODERS)}")
    ext = extractor or AUDIO_ENCODERS[audio_encoder].from_weights(weights, clip_weights, clap_weights, device,
                                                                     frame_recipe)

    def name_of(p: Path) -> str:
        try:
            return p.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            return p.name

    names, audio, video, errors = [], [], [], {}
    pending: list[tuple[str, np.ndarray, np.ndarray]] = []

    def flush():
        if not pending:
            return
        video.append(ext.video_features([p[1] for p in pending]))
        audio.append(ext.audio_features([p[2] for p in pending]))
        names.extend(p[0] for p in pending)
        pending.clear()

    for p in tqdm(files, desc="extract", unit="video", disable=not progress):
        name = name_of(p)
        try:
            wave = read_audio(p, ext.sample_rate)  # first: a missing audio track is the common failure
            frame = read_middle_frame(p, ext.frame_recipe)
        except VideoError as e:
            errors[name] = str(e)
            log.info("%s: %s", name, e)  # reported in the summary
            continue
        pending.append((name, frame, wave))
        if len(pending) >= batch_size:
            flush()
    flush()
    if not names:
        shown = "; ".join(f"{k}: {v}" for k, v in list(errors.items())[:3])
        raise DataError(f"{root}: none of the {len(files)} video(s) could be used ({shown}"
                        + (" ..." if len(errors) > 3 else "") + ")")
    written = None
    if out is not None:
        info = {**ext.describe(), "video_dir": str(root), "errors": errors}
        written = write_features(out, names, np.concatenate(audio), np.concatenate(video), info, overwrite)
    return ExtractResult(written, names, errors, len(files))


def _check_out(out: Path, overwrite: bool) -> None:
    """Fail before the (slow) extraction rather than after it."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (overwrite and is_native(out)))):
        what = "pass --overwrite to replace it" if is_native(out) else "not an empty folder; refusing to touch it"
        raise DataError(f"{out}: already exists ({what})")
