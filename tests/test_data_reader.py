"""The benchmark reader: crafted roots in the ClipClap/AVCA-GZSL layout round-trip value by value; text
is matched to classes by name (or the reference's position pairing on request); the cache and the
native format return identical arrays; every kind of bad input is a one-line DataError naming the file."""
from __future__ import annotations

import logging
import os
import pickle
import shutil

import h5py
import numpy as np
import pytest

from _layout import (CLASSES, MANUAL, SPLITS, STAGES, make_dataset, write_h5, write_lines, write_pkl,
                     write_table, write_text)
from avgzsl.data import STAGE_FOLDERS, convert, load_benchmark
from avgzsl.data.native import MANIFEST, load_native
from avgzsl.errors import ConfigError, DataError

CASE_INSENSITIVE = sorted(CLASSES, key=str.lower)


def load(lay, tmp_path, **kw):
    kw.setdefault("cache_dir", tmp_path / "cache")
    return load_benchmark(lay.root, **kw)


def assert_same_benchmark(a, b):
    assert a.class_names == b.class_names and a.feature_set == b.feature_set and a.name == b.name
    assert np.array_equal(a.text, b.text) and np.array_equal(a.has_text, b.has_text)
    for stage in STAGE_FOLDERS:
        x, y = a.splits[stage], b.splits[stage]
        assert x.video_names == y.video_names
        for attr in ("audio", "video", "labels", "classes", "audio_mask", "video_mask", "audio_times",
                     "video_times"):
            u, v = getattr(x, attr), getattr(y, attr)
            assert (u is None) == (v is None), attr
            if u is not None:
                assert u.dtype == v.dtype and np.array_equal(u, v), (stage, attr)


def check_against_layout(bench, lay):
    assert bench.class_names == CASE_INSENSITIVE
    assert bench.feature_set == lay.feature_set
    index = {n.lower(): i for i, n in enumerate(bench.class_names)}
    for stage in STAGES:
        s = bench.splits[stage]
        want = lay.expected(stage, bench.class_names)
        assert s.video_names == [v.name for v in want]
        assert s.labels.dtype == np.int64
        assert s.labels.tolist() == [index[v.cls.lower()] for v in want]
        assert s.classes.tolist() == sorted(index[c.lower()] for c in SPLITS[stage])
        assert s.audio.dtype == np.float32 and s.video.dtype == np.float32
        for i, v in enumerate(want):
            for mod in ("audio", "video"):
                x = getattr(v, mod)
                got = getattr(s, mod)[i]
                if not lay.temporal:
                    assert np.array_equal(got, x)
                    continue
                t = x.shape[0]
                assert np.array_equal(got[:t], x) and not got[t:].any()  # zero padding
                mask = getattr(s, f"{mod}_mask")[i]
                assert mask[:t].all() and not mask[t:].any()
                times = getattr(s, f"{mod}_times")[i]
                np.testing.assert_allclose(times[:t], np.arange(t) / v.fps, rtol=1e-6)
                assert not times[t:].any()
        if lay.temporal:
            t_max = max(getattr(v, "audio").shape[0] for v in want)
            assert s.audio.shape[1] == t_max  # padded to the longest video of the split
        else:
            assert s.audio_mask is None and s.audio_times is None
    for c, name in enumerate(bench.class_names):
        if name == "Unused":
            assert not bench.has_text[c] and not bench.text[c].any()
        else:
            assert bench.has_text[c] and np.array_equal(bench.text[c], lay.expected_text(name))


# --------------------------------------------------------------------------------------------------
# round trips

@pytest.mark.parametrize("feature_set, temporal, fmt", [
    ("cls", False, "pkl"), ("main", True, "pkl"), ("clipclap", True, "pkl"),
    ("main", False, "h5"), ("cls", True, "h5"),
])
def test_round_trip(tmp_path, feature_set, temporal, fmt):
    lay = make_dataset(tmp_path, feature_set=feature_set, temporal=temporal, fmt=fmt)
    bench = load(lay, tmp_path)
    check_against_layout(bench, lay)
    assert bench.dims.temporal == temporal
    assert bench.info["split"] == "cls_split" and bench.info["feature_dir"] == "feats"


def test_float16_features_become_float32(tmp_path):
    lay = make_dataset(tmp_path, feature_set="clipclap", float16=True)
    bench = load(lay, tmp_path)
    check_against_layout(bench, lay)  # Video records hold the float16 values widened to float32
    assert bench.dims.text == 512 + 1024


def test_clipclap_text_is_clip_then_wavcaps_by_their_columns(tmp_path):
    lay = make_dataset(tmp_path, feature_set="clipclap")
    bench = load(lay, tmp_path)
    c = bench.class_names.index("HandstandPushups")
    # CLIP text keyed by clip_class_name ("hand stand pushups"), WavCaps by manual
    assert np.array_equal(bench.text[c, :512], lay.text["word_embeddings"]["hand stand pushups"])
    assert np.array_equal(bench.text[c, 512:], lay.text["wavcaps_word_embeddings"]["handstand pushups"])


def test_audio_and_video_files_in_different_video_order(tmp_path):
    lay = make_dataset(tmp_path, n_videos=3)
    path = lay.file("video", "stage_1_train", "BMX")
    with open(path, "rb") as f:
        obj = pickle.load(f)
    order = [2, 0, 1]
    write_pkl(path, [obj["features"][i] for i in order], [obj["video_names"][i] for i in order], obj["fps"])
    check_against_layout(load(lay, tmp_path), lay)  # matched by video name, not position


def test_bytes_video_names_and_scalar_fps(tmp_path):
    lay = make_dataset(tmp_path, temporal=True)
    for mod in ("audio", "video"):
        path = lay.file(mod, "stage_1_val_unseen", "HandstandPushups")
        vids = [v for v in lay.videos["stage_1_val_unseen"]]
        for v in vids:
            v.fps = 2.0
        write_pkl(path, [getattr(v, mod) for v in vids], [v.name.encode() for v in vids], 2.0)
    check_against_layout(load(lay, tmp_path), lay)


def test_stacked_ndarray_features(tmp_path):
    lay = make_dataset(tmp_path)
    # stage_1_val_unseen has one class: protocol 5 unpickles its stacked array as a read-only view
    for stage, cls in (("stage_1_train", "Archery"), ("stage_1_val_unseen", "HandStandPushups")):
        vids = [v for v in lay.videos[stage] if v.cls == cls]
        for mod in ("audio", "video"):
            arr = np.stack([getattr(v, mod) for v in vids])
            arr.flags.writeable = False  # pickled as bytes (not bytearray) -> read-only on load
            write_pkl(lay.file(mod, stage, cls), arr, np.array([v.name for v in vids]), 25, protocol=5)
    bench = load(lay, tmp_path)
    check_against_layout(bench, lay)
    s = bench.splits["stage_1_val_unseen"]
    assert s.audio.flags.writeable and s.video.flags.writeable


def test_feature_files_of_classes_not_in_their_stage_list_are_skipped(tmp_path):
    # Like cls_split's stage_2_test_unseen: the shared feature folder holds classes the list drops.
    lay = make_dataset(tmp_path)
    write_lines(lay.root / "class-split/cls_split/stage_2_test_unseen.txt", ["Ballet", "JumpRope"])
    lay.videos["stage_2_test_unseen"] = [v for v in lay.videos["stage_2_test_unseen"] if v.cls != "JumpingJack"]
    bench = load(lay, tmp_path)
    s = bench.splits["stage_2_test_unseen"]
    assert "JumpingJack" not in {bench.class_names[c] for c in s.labels}
    assert s.classes.tolist() == [bench.class_names.index("Ballet"), bench.class_names.index("JumpRope")]
    assert sorted(bench.info["skipped_feature_files"]) == [
        "features/feats/audio/stage_2_test_unseen/JumpingJack.pkl",
        "features/feats/video/stage_2_test_unseen/JumpingJack.pkl"]


def test_feature_dir_option_and_dataset_from_single_table(tmp_path):
    lay = make_dataset(tmp_path, name="MyData")  # folder name is no dataset name: use the only csv
    shutil.copytree(lay.feat, lay.root / "features" / "other")
    with pytest.raises(DataError, match=r"several feature folders \(feats, other\)"):
        load(lay, tmp_path)
    bench = load(lay, tmp_path, feature_dir="feats")
    assert bench.info["feature_dir"] == "feats" and bench.info["dataset"] == "ucf" and bench.name == "MyData"
    with pytest.raises(DataError, match=r"features/nope: missing feature folder \(available: feats, other\)"):
        load(lay, tmp_path, feature_dir="nope")


def test_feature_set_inference(tmp_path):
    for fs in ("cls", "main", "clipclap"):
        lay = make_dataset(tmp_path / fs, feature_set=fs)
        assert load(lay, tmp_path).feature_set == fs


# --------------------------------------------------------------------------------------------------
# text alignment

def _alignment_root(tmp_path):
    """Sorted manual names pair with originals in another order than sorted originals."""
    lay = make_dataset(tmp_path)
    manual = {"Archery": "zebra archery", "BMX": "alpha bmx", "Ballet": "mid ballet",
              "HandstandPushups": "handstand", "JumpRope": "jump rope", "JumpingJack": "jumping jack",
              "Unused": "unused"}
    write_table(lay.root / "class-split/ucf_w2v_class_names.csv",
                [{"original": c, "manual": manual[c]} for c in CLASSES])
    rng = np.random.default_rng(5)
    table = {manual[c]: rng.standard_normal(300).astype(np.float32) for c in CLASSES if c != "Unused"}
    write_text(lay.text_file(), table)
    return lay, manual, table


def test_by_name_alignment_gets_each_class_its_own_vector(tmp_path):
    lay, manual, table = _alignment_root(tmp_path)
    bench = load(lay, tmp_path)
    for c, name in enumerate(bench.class_names):
        if name != "Unused":
            assert np.array_equal(bench.text[c], table[manual[name]]), name


def test_reference_order_reproduces_position_pairing_and_warns(tmp_path, caplog):
    lay, manual, table = _alignment_root(tmp_path)
    with caplog.at_level(logging.WARNING, logger="avgzsl.data"):
        bench = load(lay, tmp_path, text_alignment="reference_order")
    # reference: i-th value of sorted(dict.items()) -> i-th class of plain sorted(all_class)
    values = [v for _, v in sorted(table.items())]
    for rank, name in enumerate(sorted(CLASSES)):
        c = bench.class_names.index(name)
        if rank < len(values):
            assert np.array_equal(bench.text[c], values[rank]), name
        else:
            assert not bench.has_text[c]
    # every class with an embedding gets another class's vector here; Unused has none either way
    differs = []
    for rank, name in enumerate(sorted(CLASSES)):
        ref = values[rank] if rank < len(values) else None
        own = table.get(manual[name])
        if (ref is None) != (own is None) or (ref is not None and not np.array_equal(ref, own)):
            differs.append(name)
    assert differs == ["Archery", "BMX", "Ballet", "HandstandPushups", "JumpRope", "JumpingJack"]
    assert sorted(bench.info["alignment_differs"]) == sorted(differs)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "text alignment" in r.getMessage()]
    assert len(warnings) == 1
    msg = warnings[0].getMessage()
    assert f"{len(differs)} of {len(CLASSES)} classes" in msg and all(n in msg for n in differs)


def test_alignment_warning_once_per_dataset_and_cache(tmp_path, caplog):
    """Warned when the source is read (and the cache written); a later load from the cache, as every
    later command does, says it at INFO level only."""
    from avgzsl.data.benchmark import load_benchmark
    lay, _, _ = _alignment_root(tmp_path)

    def warned():
        with caplog.at_level(logging.INFO, logger="avgzsl.data"):
            caplog.clear()
            b = load_benchmark(lay.root, text_alignment="reference_order", cache_dir=tmp_path / "cache")
        recs = [r for r in caplog.records if "text alignment" in r.getMessage()]
        return b.info["cache_hit"], [r.levelno for r in recs]

    assert warned() == (False, [logging.WARNING])
    assert warned() == (True, [logging.INFO])
    assert warned() == (True, [logging.INFO])


def test_alignment_warning_names_a_few_classes_and_points_to_env_json(caplog):
    from types import SimpleNamespace

    from avgzsl.data.text import SHOWN_CLASSES, _warn_alignment
    names = [f"Class{i:03d}" for i in range(SHOWN_CLASSES + 5)]
    bench = SimpleNamespace(name="toy", class_names=names + ["Same"],
                            info={"alignment_differs": names, "text_alignment": "by_name"})
    with caplog.at_level(logging.WARNING, logger="avgzsl.data"):
        _warn_alignment(bench)
    (rec,) = caplog.records
    msg = rec.getMessage()
    assert f"{len(names)} of {len(names) + 1} classes" in msg
    assert all(n in msg for n in names[:SHOWN_CLASSES]) and not any(n in msg for n in names[SHOWN_CLASSES:])
    assert "(5 more;" in msg and "env.json" in msg and "\n" not in msg


def test_no_warning_when_alignments_agree(tmp_path, caplog):
    lay = make_dataset(tmp_path)
    # manual names that sort exactly like plain-sorted originals -> both alignments agree
    write_table(lay.root / "class-split/ucf_w2v_class_names.csv",
                [{"original": c, "manual": f"{i:02d} {c}"} for i, c in enumerate(sorted(CLASSES))])
    rng = np.random.default_rng(1)
    write_text(lay.text_file(), {f"{i:02d} {c}": rng.standard_normal(300) for i, c in enumerate(sorted(CLASSES))})
    with caplog.at_level(logging.WARNING, logger="avgzsl.data"):
        bench = load(lay, tmp_path)
    assert bench.info["alignment_differs"] == []
    assert not [r for r in caplog.records if "text alignment" in r.getMessage()]


# --------------------------------------------------------------------------------------------------
# cache

def test_second_load_hits_the_cache_with_identical_arrays(tmp_path):
    lay = make_dataset(tmp_path, temporal=True)
    first = load(lay, tmp_path)
    second = load(lay, tmp_path)
    assert first.info["cache_hit"] is False and second.info["cache_hit"] is True
    assert first.info["cache_key"] == second.info["cache_key"]
    assert_same_benchmark(first, second)
    caches = [p for p in (tmp_path / "cache").iterdir()]
    assert [p.name for p in caches] == [f"UCF-{first.info['cache_key']}"]  # no temp folders left


def test_changed_file_invalidates_the_cache(tmp_path):
    lay = make_dataset(tmp_path)
    first = load(lay, tmp_path)
    # same content, new mtime -> new key
    path = lay.file("audio", "stage_1_train", "BMX")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    second = load(lay, tmp_path)
    assert second.info["cache_hit"] is False and second.info["cache_key"] != first.info["cache_key"]
    # new content (and size) -> the new values are read, not the cached ones
    vids = [v for v in lay.videos["stage_1_train"] if v.cls == "BMX"]
    for v in vids:
        v.audio = v.audio + 1.0
    write_pkl(path, [v.audio for v in vids], [v.name for v in vids], [v.fps for v in vids])
    third = load(lay, tmp_path)
    assert third.info["cache_hit"] is False
    check_against_layout(third, lay)
    assert load(lay, tmp_path).info["cache_hit"] is True


def test_changed_option_invalidates_the_cache(tmp_path):
    lay = make_dataset(tmp_path)
    a = load(lay, tmp_path)
    b = load(lay, tmp_path, text_alignment="reference_order")
    assert b.info["cache_hit"] is False and a.info["cache_key"] != b.info["cache_key"]
    assert not np.array_equal(a.text, b.text)
    assert load(lay, tmp_path, text_alignment="reference_order").info["cache_hit"] is True
    assert load(lay, tmp_path).info["cache_hit"] is True


def test_cache_off_and_broken_cache_is_reread(tmp_path):
    lay = make_dataset(tmp_path)
    bench = load(lay, tmp_path, cache=False)
    assert bench.info["cache_hit"] is False and not (tmp_path / "cache").exists()
    first = load(lay, tmp_path)
    cache = tmp_path / "cache" / f"UCF-{first.info['cache_key']}"
    (cache / "stage_1_train" / "audio.npy").write_bytes(b"garbage")
    again = load(lay, tmp_path)
    assert again.info["cache_hit"] is False
    assert_same_benchmark(first, again)
    assert load(lay, tmp_path).info["cache_hit"] is True


def test_interrupted_cache_write_never_loads(tmp_path):
    lay = make_dataset(tmp_path)
    first = load(lay, tmp_path)
    cache = tmp_path / "cache" / f"UCF-{first.info['cache_key']}"
    (cache / MANIFEST).unlink()  # what a folder looks like before its manifest is written
    assert load(lay, tmp_path).info["cache_hit"] is False


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    lay = make_dataset(tmp_path)
    monkeypatch.setenv("AVGZSL_CACHE", str(tmp_path / "envcache"))
    bench = load_benchmark(lay.root)
    assert bench.info["cache_path"].startswith(str(tmp_path / "envcache"))
    assert load_benchmark(lay.root).info["cache_hit"] is True


# --------------------------------------------------------------------------------------------------
# native format

@pytest.mark.parametrize("temporal", [False, True])
def test_convert_then_load_gives_identical_arrays(tmp_path, temporal):
    lay = make_dataset(tmp_path, feature_set="clipclap", temporal=temporal)
    src = load(lay, tmp_path, cache=False)
    out = convert(lay.root, tmp_path / "native")
    assert (out / MANIFEST).is_file() and not (tmp_path / "cache").exists()
    native = load_benchmark(out)
    assert_same_benchmark(src, native)
    assert native.info["source"] == "native" and native.info["split"] == "cls_split"
    mm = load_native(out, copy=False)
    if not temporal:
        assert isinstance(mm.splits["stage_1_train"].audio, np.memmap)
    assert_same_benchmark(src, mm)


def test_native_option_mismatch_and_overwrite(tmp_path):
    lay = make_dataset(tmp_path)
    out = convert(lay.root, tmp_path / "native", text_alignment="reference_order")
    assert load_benchmark(out, text_alignment="reference_order").info["text_alignment"] == "reference_order"
    with pytest.raises(ConfigError, match="text_alignment='reference_order'"):
        load_benchmark(out, text_alignment="by_name")
    with pytest.raises(DataError, match="already exists"):
        convert(lay.root, out)
    convert(lay.root, out, overwrite=True)
    assert load_benchmark(out).info["text_alignment"] == "by_name"
    other = tmp_path / "userdir"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(DataError, match="not a native benchmark"):
        convert(lay.root, other, overwrite=True)
    assert (other / "keep.txt").exists()


# --------------------------------------------------------------------------------------------------
# errors: each names the file and the problem, and nothing is cached

def _rm(path):
    shutil.rmtree(path) if path.is_dir() else path.unlink()


def _edit_pkl(lay, mod, stage, cls, **changes):
    path = lay.file(mod, stage, cls)
    with open(path, "rb") as f:
        obj = pickle.load(f)
    obj.update(changes)
    with open(path, "wb") as f:
        pickle.dump(obj, f)
    return path


def _first(lay, mod="audio", stage="stage_1_train", cls="Archery"):
    with open(lay.file(mod, stage, cls), "rb") as f:
        return pickle.load(f)


ERROR_CASES = {
    "missing root": (lambda lay: _rm(lay.root), lambda lay: lay.root, "dataset root does not exist"),
    "missing split file": (lambda lay: _rm(lay.root / "class-split/cls_split/stage_1_val_seen.txt"),
                           lambda lay: lay.root / "class-split/cls_split/stage_1_val_seen.txt", "missing split file"),
    "missing split folder": (lambda lay: _rm(lay.root / "class-split/cls_split"),
                             lambda lay: lay.root / "class-split/cls_split", "missing split folder"),
    "missing class table": (lambda lay: _rm(lay.root / "class-split/ucf_w2v_class_names.csv"),
                            lambda lay: lay.root / "class-split/ucf_w2v_class_names.csv", "missing class-name table"),
    "table without manual": (lambda lay: write_table(lay.root / "class-split/ucf_w2v_class_names.csv",
                                                     [{"original": c, "name": c} for c in CLASSES]),
                             lambda lay: lay.root / "class-split/ucf_w2v_class_names.csv", "lacks column(s) manual"),
    "missing features": (lambda lay: _rm(lay.root / "features"), lambda lay: lay.root / "features",
                         "missing feature folder"),
    "missing stage folder": (lambda lay: _rm(lay.feat / "video/stage_2_train"),
                             lambda lay: lay.feat / "video/stage_2_train", "missing feature folder"),
    "missing text file": (lambda lay: _rm(lay.text_file()), lambda lay: lay.text_file(),
                          "missing text-embedding file"),
    "empty split": (lambda lay: write_lines(lay.root / "class-split/cls_split/stage_1_val_unseen.txt", []),
                    lambda lay: lay.root / "class-split/cls_split/stage_1_val_unseen.txt", "empty split"),
    "split class not in all_class": (
        lambda lay: write_lines(lay.root / "class-split/cls_split/stage_1_train.txt", ["Archery", "Nope"]),
        lambda lay: lay.root / "class-split/cls_split/stage_1_train.txt", "class 'Nope' is not in"),
    "listed class without feature file": (lambda lay: _rm(lay.file("audio", "stage_2_test_seen", "BMX")),
                                          lambda lay: lay.feat / "audio/stage_2_test_seen",
                                          "no audio feature file for class 'BMX'"),
    "feature file of unknown class": (
        lambda lay: shutil.copy(lay.file("video", "stage_1_train", "BMX"), lay.feat / "video/stage_1_train/Ghost.pkl"),
        lambda lay: lay.feat / "video/stage_1_train/Ghost.pkl", "class 'Ghost' is in no class list"),
    "dims differ between classes": (
        lambda lay: write_pkl(lay.file("audio", "stage_2_train", "BMX"), [np.ones(64, np.float32)] * 2,
                              _first(lay, "audio", "stage_2_train", "BMX")["video_names"], 25),
        lambda lay: lay.feat / "audio/stage_2_train/BMX.pkl", "audio features are 64-d but"),
    "dims differ between videos": (
        lambda lay: write_pkl(lay.file("audio", "stage_1_train", "BMX"), [np.ones(128), np.ones(127)],
                              _first(lay, "audio", "stage_1_train", "BMX")["video_names"], 25),
        lambda lay: lay.feat / "audio/stage_1_train/BMX.pkl", "feature dims differ between videos"),
    "nan values": (
        lambda lay: write_pkl(lay.file("video", "stage_1_val_seen", "BMX"),
                              [np.full(4096, np.nan, np.float32), np.ones(4096, np.float32)],
                              _first(lay, "video", "stage_1_val_seen", "BMX")["video_names"], 25),
        lambda lay: lay.feat / "video/stage_1_val_seen/BMX.pkl", "4096 NaN/inf values in 1 video(s)"),
    "inf values": (
        lambda lay: write_pkl(lay.file("audio", "stage_1_val_seen", "BMX"),
                              [np.array([np.inf] * 3 + [0.0] * 125), np.ones(128)],
                              _first(lay, "audio", "stage_1_val_seen", "BMX")["video_names"], 25),
        lambda lay: lay.feat / "audio/stage_1_val_seen/BMX.pkl", "3 NaN/inf values"),
    "truncated pkl": (
        lambda lay: lay.file("audio", "stage_1_train", "BMX").write_bytes(
            lay.file("audio", "stage_1_train", "BMX").read_bytes()[:100]),
        lambda lay: lay.feat / "audio/stage_1_train/BMX.pkl", "truncated or corrupt pickle"),
    "truncated npy": (
        lambda lay: lay.text_file().write_bytes(lay.text_file().read_bytes()[:300]),
        lambda lay: lay.text_file(), "truncated or corrupt"),
    "zero time steps": (
        lambda lay: write_pkl(lay.file("audio", "stage_1_train", "BMX"), [np.ones((2, 128)), np.ones((0, 128))],
                              _first(lay, "audio", "stage_1_train", "BMX")["video_names"], 25),
        lambda lay: lay.feat / "audio/stage_1_train/BMX.pkl", "zero time steps"),
    "video name not a string": (
        lambda lay: _edit_pkl(lay, "video", "stage_1_train", "BMX", video_names=["ok", 7]),
        lambda lay: lay.feat / "video/stage_1_train/BMX.pkl", "video name #1 is not a string"),
    "names differ audio vs video": (
        lambda lay: _edit_pkl(lay, "video", "stage_1_train", "BMX", video_names=["x1", "x2"]),
        lambda lay: lay.feat / "audio/stage_1_train/BMX.pkl", "list different videos: 2 only in audio"),
    "fewer features than names": (
        lambda lay: _edit_pkl(lay, "audio", "stage_1_train", "BMX", features=[np.ones(128)]),
        lambda lay: lay.feat / "audio/stage_1_train/BMX.pkl", "1 feature rows but 2 video names"),
    "duplicate classes differing in case": (
        lambda lay: write_lines(lay.root / "class-split/all_class.txt", CLASSES + ["archery"]),
        lambda lay: lay.root / "class-split/all_class.txt", "differs from 'Archery' only in case"),
    "class in split without text": (
        lambda lay: write_text(lay.text_file(), {k: v for k, v in lay.text["word_embeddings"].items()
                                                 if k != MANUAL["JumpRope"]}),
        lambda lay: lay.text_file(), "no text embedding for class 'JumpRope'"),
    "ambiguous feature set": (
        lambda lay: write_text(lay.text_file(), {k: np.ones(512) for k in lay.text["word_embeddings"]}),
        lambda lay: lay.feat, "cannot tell the feature set", {"feature_set": "main"}),
    "text not a dict": (lambda lay: np.save(lay.text_file(), np.ones((3, 300))), lambda lay: lay.text_file(),
                        "expected a pickled dict"),
    "pkl not a dict": (
        lambda lay: lay.file("audio", "stage_1_train", "BMX").write_bytes(pickle.dumps([1, 2])),
        lambda lay: lay.feat / "audio/stage_1_train/BMX.pkl", "expected a dict"),
    "mixed temporal and averaged": (
        lambda lay: write_pkl(lay.file("audio", "stage_2_train", "BMX"), [np.ones((3, 128))] * 2,
                              _first(lay, "audio", "stage_2_train", "BMX")["video_names"], 25),
        lambda lay: lay.feat / "audio/stage_2_train/BMX.pkl", "temporal audio features but"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_data_errors_name_the_file_and_problem(tmp_path, case):
    breaker, where, problem, *options = ERROR_CASES[case]
    lay = make_dataset(tmp_path, **(options[0] if options else {}))
    breaker(lay)
    with pytest.raises(DataError) as e:
        load(lay, tmp_path)
    msg = str(e.value)
    assert "\n" not in msg
    assert str(where(lay)) in msg, msg
    assert problem in msg, msg
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_h5_errors(tmp_path):
    lay = make_dataset(tmp_path, fmt="h5")
    path = lay.file("audio", "stage_1_train", "BMX")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match="truncated or corrupt HDF5") as e:
        load(lay, tmp_path)
    assert str(path) in str(e.value)
    write_h5(path, np.ones((2, 128)), ["a", "b"])
    with h5py.File(path, "a") as f:
        del f["video_urls"]
    with pytest.raises(DataError, match=r"BMX\.h5: missing dataset\(s\) video_urls"):
        load(lay, tmp_path)


def test_bad_options(tmp_path):
    lay = make_dataset(tmp_path)
    with pytest.raises(ConfigError, match="text_alignment"):
        load(lay, tmp_path, text_alignment="by_position")
    with pytest.raises(ConfigError, match="split must be a folder name"):
        load(lay, tmp_path, split="../x")
    with pytest.raises(DataError, match=r"cls_splat: missing split folder \(available: cls_split\)"):
        load(lay, tmp_path, split="cls_splat")
