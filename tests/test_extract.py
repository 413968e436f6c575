"""Feature extraction on short videos made here with PyAV (a moving bar plus a tone; one without audio;
one that is not a video), with tiny randomly initialised CLIP/CLAP models in transformers format."""
from __future__ import annotations

import numpy as np
import pytest

av = pytest.importorskip("av")
pytest.importorskip("transformers")

from test_text_encoders import tiny_weights  # noqa: E402,F401  (session fixture: clip/ and clap/)

from avgzsl.errors import DataError  # noqa: E402
from avgzsl.extract import (ClipClapExtractor, centre_crop, extract, list_videos, read_audio,  # noqa: E402
                            read_features, read_middle_frame)

FPS, W, H = 10, 64, 48


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def make_video(path, seconds=1.5, audio=True, freq=440.0, sr=22050, bar=255):
    """mpeg4 frames with a red bar that moves 4 px per frame; optionally an AAC sine tone."""
    with av.open(str(path), "w") as c:
        vs = c.add_stream("mpeg4", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
        if audio:
            a = c.add_stream("aac", rate=sr)
            a.layout = "mono"
        for i in range(int(seconds * FPS)):
            img = np.zeros((H, W, 3), np.uint8)
            img[:, 4 * i:4 * i + 8, 0] = bar
            img[:8, :, 2] = 200  # a blue stripe on top (tells RGB from BGR)
            for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        if audio:
            t = np.arange(int(seconds * sr)) / sr
            wave = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
            for s in range(0, len(wave), 1024):
                fr = av.AudioFrame.from_ndarray(wave[None, s:s + 1024], format="flt", layout="mono")
                fr.sample_rate, fr.pts = sr, s
                for p in a.encode(fr):
                    c.mux(p)
            for p in a.encode():
                c.mux(p)
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    (root / "music").mkdir()
    make_video(root / "music" / "a.mp4", freq=440.0)
    make_video(root / "b.mp4", seconds=2.0, freq=1000.0, bar=180)
    make_video(root / "silent.mp4", audio=False)
    (root / "broken.mp4").write_bytes(b"this is not a video" * 10)
    (root / "notes.txt").write_text("ignored")
    return root


def test_list_videos(videos):
    assert [p.relative_to(videos).as_posix() for p in list_videos(videos)] == \
        ["b.mp4", "broken.mp4", "music/a.mp4", "silent.mp4"]


def test_middle_frame_and_audio_decoding(videos):
    frame = read_middle_frame(videos / "music" / "a.mp4")  # 15 frames -> index 7: bar at x = 28..35
    assert frame.shape == (H, W, 3) and frame.dtype == np.uint8
    red = frame[10:, :, 0].mean(axis=0)
    assert 28 <= int(np.argmax(red)) < 36
    assert frame[:8, :, 2].mean() > 150 and frame[:8, :, 0].mean() < 60  # RGB order
    wave = read_audio(videos / "music" / "a.mp4", 16000)
    assert wave.dtype == np.float32 and wave.ndim == 1 and abs(len(wave) - 24000) < 2000
    spec = np.abs(np.fft.rfft(wave))
    assert abs(np.argmax(spec) * 16000 / len(wave) - 440) < 5  # the tone, at the requested rate
    from avgzsl.extract import VideoError
    with pytest.raises(VideoError, match="no audio track"):
        read_audio(videos / "silent.mp4", 16000)
    with pytest.raises(VideoError, match="cannot open"):
        read_middle_frame(videos / "broken.mp4")


def make_counting_video(path, n_frames):
    """Frame i is flat red 10 + 15 i (its index, readable after lossy coding) under a blue stripe."""
    with av.open(str(path), "w") as c:
        vs = c.add_stream("mpeg4", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
        for i in range(n_frames):
            img = np.zeros((H, W, 3), np.uint8)
            img[:, :, 0] = 10 + 15 * i
            img[:8, :, 2] = 200
            for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
    return path


@pytest.mark.parametrize("recipe, index, red_channel, negated", [
    ("rgb", 7, 0, False),                    # 15 frames: index 15 // 2, RGB
    ("clipclap-ucf", 7, 2, True),            # the container's count // 2, BGR, (256 - x) mod 256
    ("clipclap-activitynet", 6, 2, False),   # decoded count // 2 - 1 (counted from 1 in the reference), BGR
    ("clipclap-vggsound", 6, 2, False),
])
def test_frame_recipes_pick_and_transform_the_frame_as_the_reference_scripts(tmp_path, recipe, index, red_channel,
                                                                             negated):
    path = make_counting_video(tmp_path / "count.mp4", 15)
    frame = read_middle_frame(path, recipe).astype(float)
    red, stripe = frame[20:, :, red_channel].mean(), frame[:6, :, 2 - red_channel].mean()
    want_red, want_stripe = 10 + 15 * index, 200
    if negated:
        want_red, want_stripe = 256 - want_red, 256 - want_stripe
    assert abs(red - want_red) < 6, (red, want_red)  # neighbouring frames differ by 15
    assert abs(stripe - want_stripe) < 20


def test_frame_recipe_errors_and_cli_choices(tmp_path):
    from avgzsl.cli import build_parser
    from avgzsl.extract import FRAME_RECIPES, VideoError
    one = make_counting_video(tmp_path / "one.mp4", 1)
    assert read_middle_frame(one, "rgb").shape == (H, W, 3)
    with pytest.raises(VideoError, match="1 decodable frame"):  # the reference keeps no frame for it
        read_middle_frame(one, "clipclap-activitynet")
    with pytest.raises(DataError, match="frame recipe 'bgr'"):
        read_middle_frame(one, "bgr")
    extract_parser = build_parser()._subparsers._group_actions[0].choices["extract"]
    choices = next(a.choices for a in extract_parser._actions if a.dest == "frame_recipe")
    assert list(choices) == list(FRAME_RECIPES)


def test_centre_crop_is_clipclaps_window():
    w = np.arange(10, dtype=np.float32)
    np.testing.assert_array_equal(centre_crop(w, 4), [3, 4, 5, 6])  # [len//2 - 2, len//2 + 2)
    np.testing.assert_array_equal(centre_crop(w[:3], 5), [0, 1, 2, 0, 0])  # zero-padded at the end
    assert centre_crop(w, 10) is not None and len(centre_crop(w, 10)) == 10


def test_extract_writes_native_features_and_reports_bad_videos(videos, tiny_weights, tmp_path):
    import torch
    import transformers
    out = tmp_path / "feats"
    res = extract(videos, out, weights=tiny_weights, batch_size=2, progress=False)
    assert res.names == ["b.mp4", "music/a.mp4"] and res.n_found == 4
    assert set(res.errors) == {"silent.mp4", "broken.mp4"}
    assert res.errors["silent.mp4"] == "no audio track" and res.errors["broken.mp4"].startswith("cannot open")
    summary = res.summary()
    assert "extracted 2 of 4" in summary and "silent.mp4: no audio track" in summary

    feats = read_features(out)
    assert feats.names == res.names and feats.audio.shape == (2, 12) and feats.video.shape == (2, 8)
    np.testing.assert_allclose(np.linalg.norm(feats.audio, axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(feats.video, axis=1), 1, rtol=1e-5)
    assert feats.info["kind"] == "video-features" and feats.info["errors"]["silent.mp4"] == "no audio track"
    assert feats.info["sample_rate"] == 16000 and feats.info["clip_seconds"] == 10
    assert feats.labels is None

    # the recipe, step by step with the transformers classes directly
    clip = transformers.CLIPModel.from_pretrained(str(tiny_weights / "clip")).eval()
    proc = transformers.AutoImageProcessor.from_pretrained(str(tiny_weights / "clip"))
    clap = transformers.ClapModel.from_pretrained(str(tiny_weights / "clap")).eval()
    fe = transformers.AutoFeatureExtractor.from_pretrained(str(tiny_weights / "clap"))
    frame = read_middle_frame(videos / "music" / "a.mp4")
    wave = read_audio(videos / "music" / "a.mp4", 16000)
    wave = np.pad(wave, (0, 160000 - len(wave)))  # 1.5 s -> 10 s, zeros at the end
    with torch.no_grad():
        v = clip.get_image_features(pixel_values=proc(images=[frame], return_tensors="pt")["pixel_values"])
        a = clap.get_audio_features(**fe([wave], sampling_rate=16000, return_tensors="pt", truncation="rand_trunc",
                                         padding="repeatpad"))
    v, a = (x if hasattr(x, "shape") else x.pooler_output for x in (v, a))
    v, a = (torch.nn.functional.normalize(x, dim=-1)[0].numpy() for x in (v, a))
    np.testing.assert_allclose(feats.video[1], v, atol=1e-5)
    np.testing.assert_allclose(feats.audio[1], a, atol=1e-5)


def test_extract_refuses_existing_output_and_all_failures(videos, tiny_weights, tmp_path):
    ext = ClipClapExtractor.from_weights(tiny_weights)
    assert ext.dims == (12, 8) and ext.sample_rate == 16000
    with pytest.raises(DataError, match="none of the 2 video"):
        extract(videos, None, extractor=ext, videos=[videos / "silent.mp4", videos / "broken.mp4"], progress=False)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("x")
    with pytest.raises(DataError, match="refusing to touch it"):
        extract(videos, tmp_path / "taken", extractor=ext, progress=False)


def test_cli_extract(videos, tiny_weights, tmp_path, capsys, monkeypatch):
    from avgzsl.cli import main
    monkeypatch.delenv("AVGZSL_CLIP_WEIGHTS", raising=False)
    monkeypatch.delenv("AVGZSL_CLAP_WEIGHTS", raising=False)
    out = tmp_path / "f"
    assert main(["extract", str(videos), "--out", str(out), "--clip-weights", str(tiny_weights / "clip"),
                 "--clap-weights", str(tiny_weights / "clap"), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "extracted 2 of 4 video(s)" in text and "silent.mp4: no audio track" in text
    assert read_features(out).names == ["b.mp4", "music/a.mp4"]
    assert main(["extract", str(videos), "--out", str(tmp_path / "g"), "--quiet"]) == 2  # no weights anywhere
    assert "no CLIP ViT-B/32 weights given" in capsys.readouterr().err
