"""Decoding videos with PyAV: the files of a folder, the middle frame CLIP sees (frame recipes), the audio track.

The frame recipes repeat ClipClap-GZSL's per-dataset extraction scripts, quirks included
(docs/predict.md, "Frame recipes"); ``rgb`` is ours. PyAV is optional (the ``predict`` extra) and
imported only when a file is decoded.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .encoders.towers import require
from .errors import DataError

__all__ = ["VIDEO_EXTENSIONS", "VideoError", "FrameRecipe", "FRAME_RECIPES", "get_frame_recipe", "list_videos",
           "read_middle_frame", "read_audio", "centre_crop"]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".flv", ".mpg", ".mpeg", ".wmv", ".3gp")


class VideoError(Exception):
    """One video cannot be used (reported per video, never stops the run)."""


# --------------------------------------------------------------------------------------------------
# decoding

def list_videos(video_dir: str | Path, extensions: Sequence[str] = VIDEO_EXTENSIONS) -> list[Path]:
    """Video files under `video_dir` (recursively), sorted by their path relative to it."""
    root = Path(video_dir)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder of videos")
    exts = {e.lower() for e in extensions}
    return sorted((p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in exts),
                  key=lambda p: p.relative_to(root).as_posix())


def _open(path: Path):
    av = require("av")  # PyAV is optional (the predict extra): imported only when decoding
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise VideoError(f"cannot open ({_msg(e)})") from None


def _msg(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__


@dataclass(frozen=True)
class FrameRecipe:
    """Which frame of a video CLIP sees, and how it is handed over.

    count: "container" (the stream's frame count, else its packets counted) or "decoded" (the frames the
    decoder delivers, counted in a first pass); the frame is the one at 0-based index ``n // 2 + offset``.
    bgr: channels in OpenCV's BGR order given to CLIP's RGB preprocessing. negate: every channel value x
    becomes ``(256 - x) mod 256`` (``torchvision``'s ``to_pil_image`` on a float tensor of 0..255 values
    multiplies by 255 and casts to uint8, which wraps).
    """

    name: str
    count: str
    offset: int
    bgr: bool
    negate: bool
    source: str


FRAME_RECIPES = {r.name: r for r in (
    FrameRecipe("rgb", "container", 0, False, False,
                "avgzsl: the middle frame as decoded, in RGB (for features of one's own)"),
    FrameRecipe("clipclap-ucf", "container", 0, True, True,
                "ClipClap-GZSL clip_feature_extraction/get_clip_features_ucf.py: frame CAP_PROP_FRAME_COUNT // 2 "
                "read by OpenCV (BGR) into a float32 buffer, then ToPILImage (x * 255 cast to uint8)"),
    FrameRecipe("clipclap-activitynet", "decoded", -1, True, False,
                "ClipClap-GZSL get_clip_features_activitynet.py: frames counted by reading them all, then the "
                "(n // 2)-th frame counted from 1, i.e. index n // 2 - 1, read by OpenCV (BGR), uint8"),
    FrameRecipe("clipclap-vggsound", "decoded", -1, True, False,
                "ClipClap-GZSL get_clip_features_vggsound.py: as clipclap-activitynet"),
)}


def get_frame_recipe(name: str) -> FrameRecipe:
    if name not in FRAME_RECIPES:
        raise DataError(f"frame recipe {name!r}: expected one of {', '.join(FRAME_RECIPES)}")
    return FRAME_RECIPES[name]


def _count_frames(path: Path, how: str) -> int:
    av = require("av")  # optional, as in _open
    with _open(path) as c:
        if not c.streams.video:
            raise VideoError("no video track")
        stream = c.streams.video[0]
        if how == "container" and int(stream.frames or 0) > 0:
            return int(stream.frames)
        if how == "container":  # the container does not say: count the stream's packets
            return sum(1 for p in c.demux(stream) if p.size)
        n = 0
        try:
            for _ in c.decode(stream):
                n += 1
        except av.error.FFmpegError as e:
            if n == 0:
                raise VideoError(f"cannot decode the video track ({_msg(e)})") from None
        return n


def read_middle_frame(path: str | Path, recipe: str = "rgb") -> np.ndarray:
    """The middle frame as (H, W, 3) uint8, chosen and transformed by a frame recipe (`FRAME_RECIPES`):
    ``rgb`` (default) the frame at index n // 2 in RGB; the ``clipclap-*`` recipes reproduce ClipClap-GZSL's
    extraction per dataset, for features that match its release (docs/predict.md)."""
    av = require("av")  # optional, as in _open
    path, r = Path(path), get_frame_recipe(recipe)
    n = _count_frames(path, r.count)
    want = n // 2 + r.offset
    if want < 0:
        raise VideoError(f"{n} decodable frame(s): the {r.name} recipe takes frame n // 2 - 1 and has none")
    frame, got = None, -1
    try:
        with _open(path) as c:
            for got, f in enumerate(c.decode(c.streams.video[0])):
                frame = f
                if got >= want:
                    break
    except av.error.FFmpegError as e:
        if frame is None:
            raise VideoError(f"cannot decode the video track ({_msg(e)})") from None
    if frame is None:
        raise VideoError("the video track holds no decodable frame")
    if got < want and r.name != "rgb":
        # the reference would have used an all-zero frame here (its buffer's initial value)
        raise VideoError(f"frame {want} of {n} is not decodable (the decoder stops after {got + 1})")
    img = frame.to_ndarray(format="rgb24")
    if r.bgr:
        img = img[..., ::-1]
    if r.negate:
        img = ((256 - img.astype(np.int16)) % 256).astype(np.uint8)
    return np.ascontiguousarray(img)


def read_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """The first audio track, resampled to `sample_rate`, channel mean -> (n,) float32."""
    av = require("av")  # optional, as in _open
    chunks = []
    with _open(Path(path)) as c:
        if not c.streams.audio:
            raise VideoError("no audio track")
        resampler = av.AudioResampler(format="fltp", rate=int(sample_rate))
        try:
            for frame in c.decode(c.streams.audio[0]):
                for g in resampler.resample(frame):
                    chunks.append(g.to_ndarray())
            for g in resampler.resample(None):
                chunks.append(g.to_ndarray())
        except av.error.FFmpegError as e:
            raise VideoError(f"cannot decode the audio track ({_msg(e)})") from None
    if not chunks or sum(ch.shape[-1] for ch in chunks) == 0:
        raise VideoError("the audio track holds no samples")
    wave = np.concatenate([np.atleast_2d(ch) for ch in chunks], axis=1)
    return wave.mean(axis=0).astype(np.float32)


def centre_crop(wave: np.ndarray, n: int) -> np.ndarray:
    """ClipClap-GZSL's audio window: zero-pad at the end to `n` samples, or keep the `n` samples
    around the centre ([len//2 - n//2, len//2 - n//2 + n))."""
    wave = np.asarray(wave, np.float32)
    if len(wave) < n:
        return np.pad(wave, (0, n - len(wave)))
    if len(wave) > n:
        start = len(wave) // 2 - n // 2
        return wave[start:start + n]
    return wave
