"""The own-data recipe of docs/own-data.md from video files, through the CLI: extract -> embed-classes ->
make-benchmark -> train -> predict, with tiny random CLIP/CLAP models in transformers format."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
pytest.importorskip("av")
pytest.importorskip("transformers")
from test_extract import make_video  # noqa: E402
from test_text_encoders import tiny_weights  # noqa: E402,F401  (session fixture: clip/ and clap/)

from avgzsl.cli import main  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_the_recipe_from_video_files(tmp_path, tiny_weights, capsys):
    """extract -> embed-classes -> make-benchmark -> train -> predict through the CLI, as docs/own-data.md."""
    classes = ["dog barking", "playing violin", "rain", "church bells", "typing", "hammering"]
    vids = tmp_path / "videos"
    for c, name in enumerate(classes):
        (vids / name.replace(" ", "_")).mkdir(parents=True)
        for i in range(4 if c < 4 else 2):
            make_video(vids / name.replace(" ", "_") / f"{i}.mp4", seconds=0.6, freq=200.0 + 150 * c + 20 * i,
                       bar=60 + 30 * c)
    (tmp_path / "names.txt").write_text("\n".join(classes) + "\n")
    (tmp_path / "u1.txt").write_text("typing\n")
    (tmp_path / "u2.txt").write_text("hammering\n")
    w, q = str(tiny_weights), "--quiet"
    assert main(["extract", str(vids), "--out", str(tmp_path / "feats"), "--weights", w, q]) == 0
    assert main(["embed-classes", str(tmp_path / "names.txt"), "--encoder", "clipclap", "--weights", w,
                 "--out", str(tmp_path / "classes.npy"), q]) == 0
    assert main(["make-benchmark", "--features", str(tmp_path / "feats"), "--classes", str(tmp_path / "classes.npy"),
                 "--out", str(tmp_path / "mine"), "--val-unseen-classes", str(tmp_path / "u1.txt"),
                 "--test-unseen-classes", str(tmp_path / "u2.txt")]) == 0
    printed = capsys.readouterr().out
    assert "stage_2_test_unseen" in printed and "text space clip-" in printed
    assert main(["train", "--data", str(tmp_path / "mine"), "--out", str(tmp_path / "run"), q,
                 "--set", "epochs=1", "--set", "n_batches=2", "--set", "bs=4", "--set", "clipclap.hidden=16"]) == 0
    assert (tmp_path / "run" / "results.json").is_file()
    out = tmp_path / "pred.json"
    assert main(["predict", "--run", str(tmp_path / "run"), "--features", str(tmp_path / "feats"),
                 "--classes", str(tmp_path / "classes.npy"), "--top-k", "3", "--calibrated", "auto",
                 "--out", str(out), q]) == 0
    pred = json.loads(out.read_text())
    assert len(pred["predictions"]) == 20 and pred["classes"] == classes
    assert {t["class"] for p in pred["predictions"] for t in p["top"]} <= set(classes)
