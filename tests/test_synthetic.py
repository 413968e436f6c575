"""Synthetic benchmarks: real split shapes, the on-disk layout, determinism, and a learnability check.

Files are read back here with plain pickle/numpy (not the package reader), so a layout mistake in the
generator cannot be hidden by the same mistake in the reader; the reader gets its own round trip.
"""
from __future__ import annotations

import csv
import pickle
from pathlib import Path

import numpy as np
import pytest

from avgzsl.data.synthetic import STAGES, class_plan, make_synthetic
from avgzsl.errors import DataError

# Table 1 of MFT.md (= main_split), the classes kept in cls_split/stage_2_test_unseen.txt, and the
# number of lines of the real all_class.txt (UCF lists 101 classes but uses 51).
TABLE = {
    "ucf": dict(train=30, val_seen=30, val_unseen=12, s2_train=42, test_seen=42, test_unseen=9,
                cls_test_unseen=6, listed=101),
    "activitynet": dict(train=99, val_seen=99, val_unseen=51, s2_train=150, test_seen=150, test_unseen=50,
                        cls_test_unseen=48, listed=200),
    "vggsound": dict(train=138, val_seen=138, val_unseen=69, s2_train=207, test_seen=207, test_unseen=69,
                     cls_test_unseen=64, listed=309),
}
KEYS = dict(zip(STAGES, ("train", "val_seen", "val_unseen", "s2_train", "test_seen", "test_unseen")))

# Real videos per split at scale 1 (the public count table; VGGSound's train counts are derived).
VIDEOS = {
    "ucf": dict(stage_1_train=3174, stage_1_val_seen=353, stage_1_val_unseen=1467, stage_2_train=4994,
                stage_2_test_seen=555, stage_2_test_unseen=1267),
    "activitynet": dict(stage_1_train=9204, stage_1_val_seen=1023, stage_1_val_unseen=4307,
                        stage_2_train=14534, stage_2_test_seen=1615, stage_2_test_unseen=4199),
    "vggsound": dict(stage_1_val_seen=7817, stage_1_val_unseen=3102, stage_2_test_seen=9032,
                     stage_2_test_unseen=3450),
}


def lines(path: Path) -> list[str]:
    return [s for s in path.read_text().split("\n") if s]


def read_pkl(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f)


def read_stage(root: Path, stage: str, method: str = "clipclap", split: str = "main_split"):
    """(audio list, video list, class per video, video names) of one stage folder, split-file order."""
    audio, video, labels, names = [], [], [], []
    for cls in lines(root / "class-split" / split / f"{stage}.txt"):
        a = read_pkl(root / "features" / method / "audio" / stage / f"{cls}.pkl")
        v = read_pkl(root / "features" / method / "video" / stage / f"{cls}.pkl")
        assert a["video_names"] == v["video_names"]
        audio += a["features"]
        video += v["features"]
        labels += [cls] * len(a["features"])
        names += a["video_names"]
    return audio, video, labels, names


def text_by_class(root: Path, ds: str = "ucf", method: str = "clipclap") -> dict[str, np.ndarray]:
    """Lower-case original name -> concat(CLIP text, CLAP text), looked up by the CSV names
    (the CLIP dict by clip_class_name where a *_clip_class_names.csv exists, else by manual)."""
    cs = root / "class-split"
    w2v_rows = {r["original"].lower(): r for r in csv.DictReader(open(cs / f"{ds}_w2v_class_names.csv"))}
    clip_csv = cs / f"{ds}_clip_class_names.csv"
    clip_rows = ({r["original"].lower(): r for r in csv.DictReader(open(clip_csv))} if clip_csv.exists()
                 else {k: dict(r, clip_class_name=r["manual"]) for k, r in w2v_rows.items()})
    clip = np.load(root / "features" / method / "text" / f"word_embeddings_{ds}_normed.npy",
                   allow_pickle=True).item()
    clap = np.load(root / "features" / method / "text" / f"wavcaps_word_embeddings_{ds}_normed.npy",
                   allow_pickle=True).item()
    return {k: np.concatenate([clip[clip_rows[k]["clip_class_name"]], clap[w2v_rows[k]["manual"]]])
            for k in w2v_rows}


@pytest.fixture(scope="module")
def ucf(tmp_path_factory) -> Path:
    return make_synthetic("ucf", tmp_path_factory.mktemp("syn") / "UCF", scale=0.2, seed=0)


@pytest.fixture(scope="module")
def ucf_linear(tmp_path_factory) -> Path:  # v1: pseudo-word names (v2's real names: tests/test_synthetic_v2.py)
    return make_synthetic("ucf", tmp_path_factory.mktemp("syn") / "UCF1", scale=0.2, seed=0, generator="linear")


# ------------------------------------------------------------------------------------ split shapes

@pytest.mark.parametrize("like", sorted(TABLE))
def test_class_counts_match_the_real_benchmarks(like, tmp_path):
    root = make_synthetic(like, tmp_path / "d", scale=0.01)  # >= 1 video per class and split
    want, cs = TABLE[like], root / "class-split"
    for stage, key in KEYS.items():
        assert len(lines(cs / "main_split" / f"{stage}.txt")) == want[key], stage
        expected_cls = want["cls_test_unseen"] if stage == "stage_2_test_unseen" else want[key]
        assert len(lines(cs / "cls_split" / f"{stage}.txt")) == expected_cls, stage
    main = {s: set(lines(cs / "main_split" / f"{s}.txt")) for s in STAGES}
    cls = {s: set(lines(cs / "cls_split" / f"{s}.txt")) for s in STAGES}
    # S1 seen, U1 val-unseen, stage 2 train = test seen = S1 + U1, U2 disjoint from all of them
    assert main["stage_1_train"] == main["stage_1_val_seen"]
    assert not main["stage_1_train"] & main["stage_1_val_unseen"]
    assert main["stage_2_train"] == main["stage_2_test_seen"] == main["stage_1_train"] | main["stage_1_val_unseen"]
    assert not main["stage_2_test_unseen"] & main["stage_2_train"]
    assert cls["stage_2_test_unseen"] < main["stage_2_test_unseen"]
    assert all(cls[s] == main[s] for s in STAGES if s != "stage_2_test_unseen")
    # all_class.txt: every used class (case-insensitively), extras, unsorted, no case-only duplicates
    listed = lines(cs / "all_class.txt")
    assert len(listed) == want["listed"]
    assert len({n.lower() for n in listed}) == len(listed)
    used = {n.lower() for s in STAGES for n in main[s]}
    assert used <= {n.lower() for n in listed}
    assert listed != sorted(listed) and listed != sorted(listed, key=str.lower)
    # every class has at least one video in each folder that lists it (features for main_split classes)
    for stage in STAGES:
        for c in main[stage]:
            assert len(read_pkl(root / "features/clipclap/audio" / stage / f"{c}.pkl")["features"]) >= 1


@pytest.mark.parametrize("like", sorted(TABLE))
def test_videos_per_split_at_scale_one_are_the_real_counts(like):
    plan = class_plan(like, 1.0)
    total = {s: 0 for s in STAGES}
    for own in plan["counts"].values():
        for stage, n in own.items():
            total[stage] += n
    total["stage_2_train"] = total["stage_1_train"] + total["stage_1_val_seen"] + total["stage_1_val_unseen"]
    for stage, n in VIDEOS[like].items():
        assert total[stage] == n, stage
    if like == "vggsound":  # derived: about 9 train videos per val-seen video
        assert 8.9 < total["stage_1_train"] / total["stage_1_val_seen"] < 9.1


def test_scale_shrinks_counts_but_keeps_one_video():
    small = class_plan("ucf", 0.001)["counts"]
    assert all(n == 1 for own in small.values() for n in own.values())
    half = class_plan("ucf", 0.5)["counts"]
    assert sum(sum(o.values()) for o in half.values()) == pytest.approx(
        sum(VIDEOS["ucf"][s] for s in STAGES if s != "stage_2_train") / 2, rel=0.02)


# ------------------------------------------------------------------------------------ layout

def test_stage_2_train_is_the_union_of_the_stage_1_videos(ucf):
    union: dict[str, tuple] = {}
    for stage in ("stage_1_train", "stage_1_val_seen", "stage_1_val_unseen"):
        a, v, y, names = read_stage(ucf, stage)
        union.update({n: (ai, vi, yi) for n, ai, vi, yi in zip(names, a, v, y)})
    a, v, y, names = read_stage(ucf, "stage_2_train")
    assert len(names) == len(set(names)) == len(union) and set(names) == set(union)
    for n, ai, vi, yi in zip(names, a, v, y):
        ua, uv, uy = union[n]
        assert yi == uy and np.array_equal(ai, ua) and np.array_equal(vi, uv)


def test_test_videos_are_new_and_names_unique(ucf):
    seen_names: list[str] = []
    train_audio = []
    for stage in ("stage_1_train", "stage_1_val_seen", "stage_1_val_unseen"):
        a, _, _, names = read_stage(ucf, stage)
        seen_names += names
        train_audio += a
    test_names, test_audio = [], []
    for stage in ("stage_2_test_seen", "stage_2_test_unseen"):
        a, _, _, names = read_stage(ucf, stage)
        test_names += names
        test_audio += a
    assert len(set(seen_names + test_names)) == len(seen_names) + len(test_names)
    train_rows = {x.tobytes() for x in train_audio}
    assert not any(x.tobytes() in train_rows for x in test_audio)


def test_features_text_and_tables_look_like_the_release(ucf_linear):
    ucf = ucf_linear
    a, v, _, names = read_stage(ucf, "stage_1_train")
    assert a[0].shape == (1024,) and v[0].shape == (512,)
    assert a[0].dtype == np.float16 and v[0].dtype == np.float16
    norms = np.linalg.norm(np.stack(a).astype(np.float32), axis=1)
    assert np.allclose(norms, 1.0, atol=1e-2)
    assert read_pkl(next((ucf / "features/clipclap/video/stage_1_train").glob("*.pkl")))["fps"] > 0
    cs = ucf / "class-split"
    rows = list(csv.DictReader(open(cs / "ucf_clip_class_names.csv")))
    assert list(rows[0]) == ["original", "manual", "clip_class_name"]
    assert list(next(csv.DictReader(open(cs / "ucf_w2v_class_names.csv")))) == ["original", "manual"]
    listed = lines(cs / "all_class.txt")
    assert {r["original"] for r in rows} == set(listed)
    assert any(r["clip_class_name"] != r["manual"] for r in rows)
    assert all(r["manual"] == r["manual"].lower() and " " in r["manual"] for r in rows)
    # the reference pairs sorted(original) with sorted(dict keys): that must differ from by-name
    manual = {r["original"]: r["manual"] for r in rows}
    assert sum(manual[o] != m for o, m in zip(sorted(manual), sorted(manual.values()))) >= 5
    # one class is spelled differently (case only) in all_class.txt than in the split/feature files
    split_names = {n for s in STAGES for n in lines(cs / "main_split" / f"{s}.txt")}
    assert len(split_names - set(listed)) == 1
    # text dicts: every listed class, unit vectors, CLIP 512 + CLAP 1024
    text = text_by_class(ucf)
    assert len(text) == len(listed)
    vecs = np.stack(list(text.values()))
    assert vecs.shape[1] == 1536 and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs[:, :512], axis=1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(vecs[:, 512:], axis=1), 1, atol=1e-5)


@pytest.mark.parametrize("feature_set,dims,text_dim", [("cls", (128, 4096), 300), ("main", (512, 512), 300)])
def test_other_feature_sets(feature_set, dims, text_dim, tmp_path):
    root = make_synthetic("activitynet", tmp_path / "an", scale=0.01, feature_set=feature_set)
    a, v, _, _ = read_stage(root, "stage_1_val_unseen", method=feature_set)
    assert (a[0].shape[0], v[0].shape[0]) == dims and a[0].dtype == np.float32
    text_dir = root / "features" / feature_set / "text"
    # the release's one word2vec dict, plus our names + descriptions class text (data/synthetic_v2.py)
    assert sorted(p.name for p in text_dir.iterdir()) == ["class_text_descriptions.json", "class_text_descriptions.npy",
                                                          "word_embeddings_activitynet_normed.npy"]
    text = np.load(text_dir / "word_embeddings_activitynet_normed.npy", allow_pickle=True).item()
    assert len(text) == 200 and next(iter(text.values())).shape == (text_dim,)


def test_temporal_mode_writes_steps(tmp_path):
    root = make_synthetic("ucf", tmp_path / "t", scale=0.05, temporal=True)
    method = "clipclap_non_averaged"
    a, v, _, names = read_stage(root, "stage_1_train", method=method)
    lengths = set()
    for x, d in zip(a + v, [1024] * len(a) + [512] * len(v)):
        assert x.ndim == 2 and x.shape[1] == d and x.shape[0] >= 1
        lengths.add(x.shape[0])
    assert len(lengths) > 1  # T varies per video
    assert read_pkl(next((root / "features" / method / "audio/stage_1_train").glob("*.pkl")))["fps"] == 1.0
    a2, _, _, names2 = read_stage(root, "stage_2_train", method=method)
    by_name = dict(zip(names, a))
    assert all(np.array_equal(by_name[n], x) for n, x in zip(names2, a2) if n in by_name)


# ------------------------------------------------------------------------------------ determinism, safety

def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    t0 = _tree(make_synthetic("ucf", tmp_path / "a", scale=0.05, seed=3))
    t1 = _tree(make_synthetic("ucf", tmp_path / "b", scale=0.05, seed=3))
    t2 = _tree(make_synthetic("ucf", tmp_path / "c", scale=0.05, seed=4))
    assert t0 == t1
    assert t0.keys() == t2.keys()  # same classes, splits and counts...
    feats = [k for k in t0 if k.startswith("features/") and not k.endswith(".json")]  # .json: names, format
    assert all(t0[k] != t2[k] for k in feats)  # ...new features and text
    assert t0["class-split/all_class.txt"] == t2["class-split/all_class.txt"]


def test_refuses_non_empty_out_and_cleans_up(tmp_path):
    out = tmp_path / "x"
    out.mkdir()
    make_synthetic("ucf", out, scale=0.01)  # an empty folder is fine
    before = _tree(out)
    with pytest.raises(DataError, match="not empty"):
        make_synthetic("ucf", out, scale=0.01, seed=1)
    assert _tree(out) == before
    make_synthetic("ucf", out, scale=0.01, seed=1, overwrite=True)
    assert _tree(out) != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]  # no .tmp-/.old- leftovers
    with pytest.raises(DataError, match="unknown benchmark"):
        make_synthetic("kinetics", tmp_path / "k")
    with pytest.raises(DataError, match="feature_set"):
        make_synthetic("ucf", tmp_path / "k", feature_set="clip")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]


# ------------------------------------------------------------------------------------ learnability

def _macc(pred, y) -> float:
    return float(np.mean([np.mean(pred[y == c] == c) for c in np.unique(y)]))


def _probe(root: Path, ds: str) -> dict[str, tuple[float, float]]:
    """Ridge map features -> class text on stage_1_train; nearest text prototype on val seen/unseen.

    Returns {inputs: (seen accuracy among the seen classes, zero-shot accuracy among the val-unseen
    classes)}, mean per-class.
    """
    text = text_by_class(root, ds)
    stages = {s: read_stage(root, s) for s in ("stage_1_train", "stage_1_val_seen", "stage_1_val_unseen")}
    inputs = {"both": lambda a, v: np.hstack([v, a]), "video": lambda a, v: v, "audio": lambda a, v: a}
    out = {}
    for name, pick in inputs.items():
        def x_of(stage):
            a, v, y, _ = stages[stage]
            x = pick(np.stack(a).astype(np.float32), np.stack(v).astype(np.float32))
            return np.hstack([x, np.ones((len(x), 1), np.float32)]), np.array([c.lower() for c in y])
        x, y = x_of("stage_1_train")
        target = np.stack([text[c] for c in y])
        w = x.T @ np.linalg.solve(x @ x.T + np.eye(len(x)), target)  # ridge, dual form (n < dims)
        accs = []
        for stage in ("stage_1_val_seen", "stage_1_val_unseen"):
            xs, ys = x_of(stage)
            classes = np.array(sorted(set(ys)))
            protos = np.stack([text[c] for c in classes])
            accs.append(_macc(classes[np.argmax((xs @ w) @ protos.T, axis=1)], ys))
        out[name] = tuple(accs)
    return out


def test_zero_shot_transfer_is_possible_but_imperfect_and_fusion_helps(tmp_path):
    # ActivityNet's shape (99 seen / 51 val-unseen classes): with UCF's 12 val-unseen classes one
    # class is 8 points, too coarse to compare modalities reliably across seeds.
    # v1 ("linear"); v2's learnability is measured in tests/test_synthetic_v2.py
    acc = _probe(make_synthetic("activitynet", tmp_path / "an", scale=0.1, seed=0, generator="linear"), "activitynet")
    seen, unseen = acc["both"]
    assert unseen > 10 / 51  # chance among 51 val-unseen classes is 1/51
    assert unseen < seen - 0.2  # transfer is imperfect
    for single in ("video", "audio"):
        assert acc[single][0] < seen and acc[single][1] < unseen  # each modality alone is worse


# ------------------------------------------------------------------------------------ package reader

def test_round_trip_through_load_benchmark(ucf):
    from avgzsl.data.benchmark import load_benchmark

    plan = class_plan("ucf", 0.2)
    text = text_by_class(ucf)
    for split, n_test_unseen in (("main_split", 9), ("cls_split", 6)):
        bench = load_benchmark(ucf, split=split, cache=False)
        assert bench.feature_set == "clipclap"
        d = bench.dims
        assert (d.audio, d.video, d.text, d.temporal) == (1024, 512, 1536, False)
        assert len(bench.class_names) == 101
        want = dict(TABLE["ucf"], test_unseen=n_test_unseen)
        for stage, key in KEYS.items():
            s = bench.splits[stage]
            assert len(s.classes) == want[key], (split, stage)
            if stage == "stage_2_test_unseen" and split == "cls_split":
                continue
            n = sum(plan["counts"][c].get(stage, 0) for c in plan["counts"])
            if stage == "stage_2_train":
                n = sum(len(bench.splits[t]) for t in ("stage_1_train", "stage_1_val_seen", "stage_1_val_unseen"))
            assert len(s) == n, (split, stage)
        # labels: the class a video was written under; features and text as written
        a, v, y, names = read_stage(ucf, "stage_2_test_seen", split=split)
        s = bench.splits["stage_2_test_seen"]
        row = {n: i for i, n in enumerate(s.video_names)}
        idx = np.array([row[n] for n in names])
        assert [bench.class_names[c].lower() for c in s.labels[idx]] == [c.lower() for c in y]
        assert np.array_equal(s.audio[idx], np.stack(a).astype(np.float32))
        assert np.array_equal(s.video[idx], np.stack(v).astype(np.float32))
        for c, name in enumerate(bench.class_names):
            assert bench.has_text[c] and np.array_equal(bench.text[c], text[name.lower()])


def test_round_trip_temporal(tmp_path):
    from avgzsl.data.benchmark import load_benchmark

    root = make_synthetic("ucf", tmp_path / "t", scale=0.05, temporal=True)
    bench = load_benchmark(root, split="main_split", cache=False)
    s = bench.splits["stage_1_train"]
    assert bench.dims.temporal and s.audio.shape[2] == 1024 and s.video.shape[2] == 512
    a, v, _, names = read_stage(root, "stage_1_train", method="clipclap_non_averaged")
    row = {n: i for i, n in enumerate(s.video_names)}
    for n, ai, vi in zip(names, a, v):
        i = row[n]
        assert s.audio_mask[i].sum() == len(ai) and s.video_mask[i].sum() == len(vi)
        assert np.array_equal(s.audio[i, : len(ai)], ai.astype(np.float32))
