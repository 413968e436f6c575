"""Zero-shot on new videos in the ClipClap release's spaces, as a user runs it: extract (CLIP image + WavCaps
audio) -> embed-classes (CLIP text + WavCaps text) -> predict, for a run trained on features of those spaces.
Tiny random CLIP and WavCaps checkpoints stand in for the real weights (same key layouts)."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
pytest.importorskip("av")
pytest.importorskip("transformers")
from conftest import tiny_benchmark  # noqa: E402
from test_extract import make_video  # noqa: E402
from test_text_encoders import make_tiny_clip  # noqa: E402
from test_wavcaps import save_like_wavcaps, tiny_htsat_state, tiny_state, write_tokenizer  # noqa: E402

from avgzsl.classtext import declare_text_space  # noqa: E402
from avgzsl.cli import main  # noqa: E402
from avgzsl.config import load_config  # noqa: E402
from avgzsl.encoders import ClassEmbeddings  # noqa: E402
from avgzsl.protocol import run_protocol  # noqa: E402


def test_extract_embed_predict_in_the_release_spaces(tmp_path, capsys):
    w = tmp_path / "weights"
    make_tiny_clip(w / "clip")
    n = write_tokenizer(w / "wavcaps" / "bert-base-uncased")
    text = {k: v for k, v in tiny_state(n).items() if not k.startswith("audio_")}
    audio = {k: v for k, v in tiny_htsat_state().items() if k.startswith("audio_")}
    save_like_wavcaps(w / "wavcaps" / "HTSAT_BERT_zero_shot.pt", {**text, **audio})

    vids = tmp_path / "videos"
    vids.mkdir()
    for i, f in enumerate((300.0, 700.0, 1500.0)):
        make_video(vids / f"clip{i}.mp4", seconds=1.0, freq=f)
    assert main(["extract", str(vids), "--out", str(tmp_path / "feats"), "--audio-encoder", "wavcaps",
                 "--weights", str(w), "--quiet"]) == 0
    (tmp_path / "names.txt").write_text("dog barking\nplaying violin\nrain\nthunder\n")
    assert main(["embed-classes", str(tmp_path / "names.txt"), "--encoder", "clipclap-wavcaps", "--weights", str(w),
                 "--out", str(tmp_path / "classes.npy"), "--quiet"]) == 0
    emb = ClassEmbeddings.load(tmp_path / "classes.npy")
    assert emb.encoder == "clipclap-wavcaps" and emb.space.endswith("+clap-wavcaps-w128-d24")

    # a run trained on features of these spaces: audio 24 (tiny WavCaps), video 8 (tiny CLIP), text 8 + 24
    bench = declare_text_space(tiny_benchmark(da=24, dv=8, dt=emb.dim), emb.space)
    cfg = load_config(None, ["epochs=1", "n_batches=3", "bs=8", "clipclap.hidden=16"])
    run_protocol(cfg, bench, tmp_path / "run")
    capsys.readouterr()
    out = tmp_path / "pred.csv"
    assert main(["predict", "--run", str(tmp_path / "run"), "--features", str(tmp_path / "feats"),
                 "--classes", str(tmp_path / "classes.npy"), "--top-k", "2", "--out", str(out)]) == 0
    header, *rows = [r.split(",") for r in out.read_text().splitlines()]
    assert header[:3] == ["video", "rank", "class"]
    assert sorted((r[0], r[1]) for r in rows) == [(f"clip{i}.mp4", k) for i in range(3) for k in ("1", "2")]
    names = {"dog barking", "playing violin", "rain", "thunder"}
    assert all(r[2] in names and np.isfinite(float(r[4])) for r in rows)
