"""A benchmark of one's own videos (avgzsl.own_data): the class and video split, the written folder and
the protocol on it (the whole recipe from video files: tests/test_own_data_recipe.py)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from avgzsl.data.benchmark import load_benchmark  # noqa: E402
from avgzsl.data.types import STAGE_FOLDERS  # noqa: E402
from avgzsl.encoders import ClassEmbeddings  # noqa: E402
from avgzsl.errors import DataError  # noqa: E402
from avgzsl.extract import VideoFeatures  # noqa: E402
from avgzsl.own_data import class_key, make_benchmark, split_own  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _labels(counts):
    return np.repeat(np.arange(len(counts)), counts)


def test_class_key_matches_folder_and_written_names():
    assert class_key("Playing_Guitar") == class_key("playing guitar") == class_key(" playing-guitar ")
    assert class_key("dog") != class_key("dogs")


@pytest.mark.parametrize("seed", [0, 3])
def test_split_puts_every_video_once_and_follows_the_class_roles(seed):
    counts = [20, 3, 11, 4, 7, 3, 30, 9, 4, 12]
    y = _labels(counts)
    names = [f"class {i}" for i in range(len(counts))]
    sp = split_own(y, names, seed=seed, val_unseen=0.2, test_unseen=0.2)
    s1, u1, u2 = set(sp.s1), set(sp.u1), set(sp.u2)
    assert len(u1) == 2 and len(u2) == 2 and s1 | u1 | u2 == set(range(10)) and not (s1 & u1 or s1 & u2 or u1 & u2)
    rows = {s: r for s, (r, _) in sp.folders.items()}
    own = [rows[s] for s in STAGE_FOLDERS if s != "stage_2_train"]
    everything = np.concatenate(own)
    assert len(everything) == len(y) and len(np.unique(everything)) == len(y)  # each video in one folder
    np.testing.assert_array_equal(rows["stage_2_train"], np.sort(np.concatenate(
        [rows["stage_1_train"], rows["stage_1_val_seen"], rows["stage_1_val_unseen"]])))
    cls_of = {s: set(y[r].tolist()) for s, r in rows.items()}
    assert cls_of["stage_1_train"] == cls_of["stage_1_val_seen"] == s1
    assert cls_of["stage_1_val_unseen"] == u1 and cls_of["stage_2_test_unseen"] == u2
    assert cls_of["stage_2_test_seen"] == s1 | u1
    listed = {s: set(c.tolist()) for s, (_, c) in sp.folders.items()}
    assert listed["stage_2_train"] == listed["stage_2_test_seen"] == s1 | u1 and listed["stage_2_test_unseen"] == u2
    for c in s1:  # test 10 %, val 10 %, at least one each, the rest train
        n = counts[c]
        n_test = int(np.sum(y[rows["stage_2_test_seen"]] == c))
        n_val = int(np.sum(y[rows["stage_1_val_seen"]] == c))
        assert n_test == min(max(1, round(0.1 * n)), n - 2) and n_val >= 1
        assert int(np.sum(y[rows["stage_1_train"]] == c)) == n - n_test - n_val >= 1
    for c in u2:
        assert int(np.sum(y[rows["stage_2_test_unseen"]] == c)) == counts[c]


def test_split_is_deterministic_per_seed_and_takes_named_unseen_classes():
    y = _labels([6] * 12)
    names = [f"c{i}" for i in range(12)]
    a, b, c = (split_own(y, names, seed=s) for s in (1, 1, 2))
    assert (a.s1, a.u1, a.u2) == (b.s1, b.u1, b.u2)
    assert all(np.array_equal(a.folders[s][0], b.folders[s][0]) for s in STAGE_FOLDERS)
    assert (a.u1, a.u2) != (c.u1, c.u2)
    named = split_own(y, names, val_unseen_classes=["C3", "c4"], test_unseen_classes=["C0 "])
    assert named.u1 == [3, 4] and named.u2 == [0] and named.s1 == [1, 2] + list(range(5, 12))


@pytest.mark.parametrize("counts, kw, match", [
    ([5, 5], {}, "need at least one seen"),
    ([5, 5, 5, 5, 5, 2], {"val_unseen_classes": ["c0"], "test_unseen_classes": ["c1"]}, "'c5' has 2 video"),
    ([5, 5, 1, 5], {"val_unseen_classes": ["c2"], "test_unseen_classes": ["c1"]}, "'c2' has 1 video"),
    ([5] * 4, {"val_unseen_classes": ["c9"], "test_unseen_classes": ["c1"]}, "'c9' is not one of"),
    ([5] * 4, {"val_unseen_classes": ["c1"], "test_unseen_classes": ["c1"]}, "both a stage-1 and a stage-2"),
    ([5] * 4, {"val_unseen_classes": ["c1"]}, "or neither"),
    ([5] * 4, {"val_seen": 1.5}, "val_seen=1.5"),
])
def test_split_errors_name_the_problem(counts, kw, match):
    y = _labels(counts)
    with pytest.raises(DataError, match=match):
        split_own(y, [f"c{i}" for i in range(len(counts))], **kw)


def _features_and_classes(n_classes=8, per_class=6, da=12, dv=8, dt=10, seed=0):
    """Videos named <class>/<i>.mp4 whose features are noisy maps of their class's text vector."""
    rng = np.random.default_rng(seed)
    names = [f"Class_{i}" for i in range(n_classes)]
    text = rng.normal(size=(n_classes, dt)).astype(np.float32)
    A, V = rng.normal(size=(dt, da)), rng.normal(size=(dt, dv))
    y = _labels([per_class] * n_classes)
    audio = (text[y] @ A + 0.3 * rng.normal(size=(len(y), da))).astype(np.float32)
    video = (text[y] @ V + 0.3 * rng.normal(size=(len(y), dv))).astype(np.float32)
    videos = [f"{names[c]}/{i}.mp4" for i, c in enumerate(y)]
    feats = VideoFeatures(videos, audio, video, info={"feature_space": "clip-vit-b32+clap-laion"})
    emb = ClassEmbeddings([n.replace("_", " ").lower() for n in names] + ["never filmed"],
                          np.vstack([text, rng.normal(size=(1, dt))]), "test", "test-space")
    return feats, emb


def test_make_benchmark_writes_a_root_the_protocol_runs_on(tmp_path, caplog):
    from avgzsl.config import load_config
    from avgzsl.protocol import run_protocol
    feats, emb = _features_and_classes()
    out = make_benchmark(feats, emb, tmp_path / "mine", seed=0)
    assert "1 class(es) have no videos" in caplog.text
    bench = load_benchmark(out)
    assert bench.class_names == emb.names and bench.text_space == "test-space"
    assert bench.feature_set == "clip-vit-b32+clap-laion"
    row = {n: i for i, n in enumerate(feats.names)}
    for s in STAGE_FOLDERS:  # every stored video keeps its own features and its folder's class
        sp = bench.splits[s]
        idx = [row[n] for n in sp.video_names]
        np.testing.assert_array_equal(sp.audio, feats.audio[idx])
        np.testing.assert_array_equal(sp.video, feats.video[idx])
        assert [emb.names[c] for c in sp.labels] == [class_key(n.split("/")[0]) for n in sp.video_names]
    assert len(bench.splits["stage_2_test_unseen"].classes) == 2
    cfg = load_config(None, ["epochs=1", "n_batches=3", "bs=8", "clipclap.hidden=16"])
    res = run_protocol(cfg, bench, tmp_path / "run")  # the leakage checks run here too
    assert np.isfinite(res["test"]["hm"])
    again = make_benchmark(feats, emb, tmp_path / "again", seed=0)
    assert json.loads((again / "avgzsl-native.json").read_text())["splits"] == \
        json.loads((out / "avgzsl-native.json").read_text())["splits"]


def test_make_benchmark_refuses_unlabelled_or_unknown_videos_and_writes_nothing(tmp_path):
    feats, emb = _features_and_classes()
    loose = VideoFeatures(["a.mp4"] + feats.names[1:], feats.audio, feats.video, info={})
    with pytest.raises(DataError, match="not in a class folder.*'a.mp4'"):
        make_benchmark(loose, emb, tmp_path / "x")
    other = ClassEmbeddings(emb.names[1:], emb.vectors[1:], "test", "test-space")
    with pytest.raises(DataError, match="no embedding.*'Class_0'"):
        make_benchmark(feats, other, tmp_path / "y")
    csv = tmp_path / "labels.csv"
    csv.write_text("video,class\n" + "".join(f"{n},{n.split('/')[0]}\n" for n in feats.names[:-1]))
    with pytest.raises(DataError, match=r"labels.csv: no class for 1 of the 48 video\(s\)"):
        make_benchmark(feats, emb, tmp_path / "z", labels=csv)
    assert not any(p.name in "xyz" for p in tmp_path.iterdir())


def test_labels_csv_overrides_the_folders(tmp_path):
    feats, emb = _features_and_classes()
    csv = tmp_path / "labels.csv"  # every video relabelled with the next class
    csv.write_text("video,class\n" + "".join(
        f"{n},class {(int(n.split('/')[0].split('_')[1]) + 1) % 8}\n" for n in feats.names))
    bench = load_benchmark(make_benchmark(feats, emb, tmp_path / "mine", labels=csv))
    sp = bench.splits["stage_2_train"]
    assert all(c == (int(n.split("/")[0].split("_")[1]) + 1) % 8 for n, c in zip(sp.video_names, sp.labels))
