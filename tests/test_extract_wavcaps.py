"""extract with WavCaps audio: CLIP image + WavCaps HTSAT-BERT CLAP audio features from tiny random towers."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
pytest.importorskip("av")
from test_extract import make_video  # noqa: E402
from test_text_encoders import make_tiny_clip  # noqa: E402
from test_wavcaps import save_like_wavcaps, tiny_htsat_state  # noqa: E402

from avgzsl.extract import ClipWavCapsExtractor, extract, read_features  # noqa: E402


def test_extract_with_wavcaps_audio(tmp_path):
    vids = tmp_path / "v"
    vids.mkdir()
    make_video(vids / "a.mp4", seconds=1.5, freq=440.0)
    make_video(vids / "b.mp4", seconds=2.0, freq=1000.0, sr=44100)
    w = tmp_path / "w"
    make_tiny_clip(w / "clip")
    (w / "wavcaps").mkdir(parents=True)
    sd = tiny_htsat_state()
    sd["text_proj.0.weight"] = torch.zeros(24, 768)
    save_like_wavcaps(w / "wavcaps" / "HTSAT_BERT_zero_shot.pt", sd)
    ext = ClipWavCapsExtractor.from_weights(weights=w)
    assert ext.dims == (24, 8) and ext.feature_space.endswith("+clap-wavcaps-w768-d24")
    res = extract(vids, tmp_path / "out", extractor=ext, progress=False)
    f = read_features(res.out)
    assert f.audio.shape == (2, 24) and f.video.shape == (2, 8)
    np.testing.assert_allclose(np.linalg.norm(f.audio, axis=1), 1, atol=1e-5)
    assert "clipclap-wavcaps" in f.info["recipe"] and f.info["sample_rate"] == 32000
    assert abs(f.audio[0] - f.audio[1]).max() > 1e-4  # different sounds, different features


def test_cli_extract_with_wavcaps_audio(tmp_path, capsys):
    from avgzsl.cli import main
    vids = tmp_path / "v"
    vids.mkdir()
    make_video(vids / "a.mp4", seconds=1.0, freq=440.0)
    w = tmp_path / "w"
    make_tiny_clip(w / "clip")
    (w / "wavcaps").mkdir(parents=True)
    save_like_wavcaps(w / "wavcaps" / "HTSAT_BERT_zero_shot.pt", tiny_htsat_state())
    assert main(["extract", str(vids), "--out", str(tmp_path / "out"), "--audio-encoder", "wavcaps",
                 "--weights", str(w), "--quiet"]) == 0
    assert read_features(tmp_path / "out").info["sample_rate"] == 32000
