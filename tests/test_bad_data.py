"""Every kind of broken dataset, made from a good synthetic one: through the CLI each gives one line that
names the file and the problem, exit code 2, no traceback, and no cache or run folder left behind."""
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from avgzsl.cli import main
from avgzsl.data.synthetic import make_synthetic

FAST = ["--set", "epochs=1", "--set", "n_batches=2", "--set", "bs=8"]


@pytest.fixture(scope="module")
def good_roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("good")
    return {"averaged": make_synthetic("ucf", base / "UCF", scale=0.05, seed=0),
            "temporal": make_synthetic("ucf", base / "UCF_t", scale=0.05, seed=0, temporal=True)}


def feat_dir(root: Path) -> Path:
    return next((root / "features").iterdir())


def first_pkl(root: Path, modality="audio", stage="stage_1_train") -> Path:
    return sorted((feat_dir(root) / modality / stage).glob("*.pkl"))[0]


def rewrite_pkl(path: Path, change) -> None:
    with open(path, "rb") as f:
        d = pickle.load(f)
    change(d)
    with open(path, "wb") as f:
        pickle.dump(d, f)


def edit_text(root: Path, change) -> Path:
    path = feat_dir(root) / "text" / "word_embeddings_ucf_normed.npy"
    d = np.load(path, allow_pickle=True).item()  # our own test file: trusted
    change(d)
    np.save(path, d, allow_pickle=True)
    return path


class Evil:
    def __reduce__(self):
        import os
        return os.system, ("touch PWNED_MARKER",)


def _missing_root(r):
    shutil.rmtree(r)
    return r.name, "not found|does not exist|missing"


def _missing_split(r):
    p = r / "class-split" / "cls_split" / "stage_1_val_seen.txt"
    p.unlink()
    return "stage_1_val_seen.txt", "missing|not found"


def _missing_table(r):
    p = r / "class-split" / "ucf_w2v_class_names.csv"
    p.unlink()
    return "class_names", "missing|not found|no class-name"


def _missing_feature_folder(r):
    shutil.rmtree(feat_dir(r) / "video" / "stage_2_test_seen")
    return "stage_2_test_seen", "missing|not found"


def _missing_text(r):
    (feat_dir(r) / "text" / "wavcaps_word_embeddings_ucf_normed.npy").unlink()
    return "wavcaps_word_embeddings_ucf_normed.npy", "missing|not found"


def _empty_split(r):
    (r / "class-split" / "cls_split" / "stage_1_train.txt").write_text("")
    return "stage_1_train.txt", "empty"


def _class_without_features(r):
    p = first_pkl(r, "video")
    p.unlink()
    return p.stem, "no (video )?feature file|missing"


def _features_of_unlisted_class(r):
    shutil.copy(first_pkl(r), first_pkl(r).parent / "Zzzunknownclass.pkl")
    return "Zzzunknownclass", "in no|not in|unknown"


def _text_missing_for_class(r):
    cls = first_pkl(r).stem
    names = {}
    for line in (r / "class-split" / "ucf_clip_class_names.csv").read_text().splitlines()[1:]:
        o, m, c = line.split(",")
        names[o.lower()] = c
    path = edit_text(r, lambda d: d.pop(names[cls.lower()]))
    return path.name, "no text|missing"


def _case_duplicate(r):
    p = r / "class-split" / "all_class.txt"
    first = p.read_text().splitlines()[0]
    p.write_text(p.read_text().rstrip("\n") + "\n" + first.swapcase() + "\n")
    return "all_class.txt", "case"


def _dims_differ_between_classes(r):
    rewrite_pkl(first_pkl(r), lambda d: d.update(features=[np.zeros(77, np.float32) for _ in d["features"]]))
    return first_pkl(r).name, "dim"


def _dims_differ_between_videos(r):
    def change(d):
        d["features"][0] = np.zeros(5, np.float32)
    rewrite_pkl(first_pkl(r), change)
    return first_pkl(r).name, "dim|shape"


def _nan_values(r):
    def change(d):
        d["features"][0] = np.full_like(d["features"][0], np.nan)
    rewrite_pkl(first_pkl(r), change)
    return first_pkl(r).name, "NaN"


def _inf_values(r):
    def change(d):
        d["features"][0] = np.where(np.arange(d["features"][0].size) < 3, np.inf, d["features"][0]).astype(d["features"][0].dtype)
    rewrite_pkl(first_pkl(r), change)
    return first_pkl(r).name, "inf"


def _truncated_pickle(r):
    p = first_pkl(r)
    p.write_bytes(p.read_bytes()[: 100])
    return p.name, "truncated|corrupt"


def _corrupt_h5(r):
    p = first_pkl(r)
    p.with_suffix(".h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"garbage" * 20)
    p.unlink()
    return p.stem + ".h5", "corrupt|truncated|not"


def _corrupt_npy(r):
    p = feat_dir(r) / "text" / "word_embeddings_ucf_normed.npy"
    p.write_bytes(p.read_bytes()[:60])
    return p.name, "truncated|corrupt|not a valid"


def _malicious_pickle(r):
    p = first_pkl(r)
    p.write_bytes(pickle.dumps({"features": Evil(), "video_names": ["a"], "fps": 1.0}))
    return p.name, "forbidden|unsafe|not allowed"


def _malicious_text(r):
    p = feat_dir(r) / "text" / "word_embeddings_ucf_normed.npy"
    np.save(p, np.array([Evil()], dtype=object), allow_pickle=True)
    return p.name, "forbidden|unsafe|not allowed"


def _video_name_not_string(r):
    def change(d):
        d["video_names"][0] = 12345
    rewrite_pkl(first_pkl(r), change)
    return first_pkl(r).name, "name"


def _zero_time_steps(r):
    def change(d):
        d["features"][0] = np.zeros((0, d["features"][0].shape[1]), np.float32)
    rewrite_pkl(first_pkl(r), change)
    return first_pkl(r).name, "zero|no time steps|empty"


CASES = [_missing_root, _missing_split, _missing_table, _missing_feature_folder, _missing_text, _empty_split,
         _class_without_features, _features_of_unlisted_class, _text_missing_for_class, _case_duplicate,
         _dims_differ_between_classes, _dims_differ_between_videos, _nan_values, _inf_values, _truncated_pickle,
         _corrupt_h5, _corrupt_npy, _malicious_pickle, _malicious_text, _video_name_not_string]


@pytest.mark.parametrize("break_it", CASES + [_zero_time_steps], ids=lambda f: f.__name__.strip("_"))
def test_broken_dataset_gives_one_clear_line(break_it, good_roots, tmp_path, capsys, monkeypatch):
    kind = "temporal" if break_it is _zero_time_steps else "averaged"
    root = tmp_path / "UCF"
    shutil.copytree(good_roots[kind], root)
    must_name, problem = break_it(root)
    cache, runs = tmp_path / "cache", tmp_path / "runs"
    monkeypatch.setenv("AVGZSL_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)
    code = main(["train", "--data", str(root), "--config", "clipclap_ucf", "--out", str(runs / "r"), "--quiet", *FAST])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "Traceback" not in err
    lines = [x for x in err.splitlines() if x.startswith("avgzsl: error:")]
    assert len(lines) == 1, err
    import re
    assert must_name.lower() in lines[0].lower(), lines[0]
    assert re.search(problem, lines[0], re.I), lines[0]
    assert not runs.exists()
    assert not cache.exists() or not any(p.is_file() for p in cache.rglob("*")), list(cache.rglob("*"))
    assert not (tmp_path / "PWNED_MARKER").exists()


def test_model_dims_must_match_the_data(good_roots, tmp_path, capsys, monkeypatch):
    """A checkpoint evaluated on features of other dims: one line naming both, not a shape traceback."""
    monkeypatch.setenv("AVGZSL_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    assert main(["train", "--data", str(good_roots["averaged"]), "--config", "clipclap_ucf", "--out", str(run),
                 "--quiet", *FAST]) == 0
    other = make_synthetic("ucf", tmp_path / "UCF_cls", scale=0.05, seed=0, feature_set="cls")
    capsys.readouterr()
    assert main(["eval", str(run), "--data", str(other)]) == 2
    err = capsys.readouterr().err
    assert "dim" in err and "stage2_final.pt" in err and "Traceback" not in err


# ---- Reliability II (issue 13): hostile files (data readers) -------------------------------------------
# (data-file cases join CASES above)


# ---- Reliability II (issue 13): run folders, resume, write errors, leftovers, file modes ---------------


# ---- Reliability II (issue 13): settings and checkpoints -----------------------------------------------
