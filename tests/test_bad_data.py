"""Every kind of broken dataset, made from a good synthetic one: through the CLI each gives one line that
names the file and the problem, exit code 2, no traceback, and no cache or run folder left behind."""
import pickle
import shutil
import unicodedata
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


# -- hostile and oversized files (Reliability II)

def _forge_object_dtype(raw: bytes) -> bytes:
    """The pickle's one float64 dtype becomes an object dtype whose BUILD state keeps flags 0, so numpy
    would copy the array's raw bytes in as object pointers (reading them segfaults)."""
    for old, new in ((b"\x8c\x02f8", b"\x8c\x02O8"), (b"\x8c\x01<", b"\x8c\x01|")):
        assert raw.count(old) == 1, old
        raw = raw.replace(old, new)
    return raw


def _forged_dtype_pickle(r):
    p = first_pkl(r)
    with open(p, "rb") as f:
        d = pickle.load(f)
    d["features"] = [np.asarray(x, np.float64) for x in d["features"]]
    p.write_bytes(_forge_object_dtype(pickle.dumps(d, protocol=4)))
    return p.name, "forged BUILD state"


def _forged_dtype_text(r):
    path = feat_dir(r) / "text" / "word_embeddings_ucf_normed.npy"
    edit_text(r, lambda d: d.update({k: np.asarray(v, np.float64) for k, v in d.items()}))
    path.write_bytes(_forge_object_dtype(path.read_bytes()))
    return path.name, "forged BUILD state"


def _shared_reference_bomb(r):
    p = first_pkl(r)
    inner = [0] * 12000  # ~48 KB naming one list 12,000 times: 144 million elements once expanded
    p.write_bytes(pickle.dumps({"features": [inner] * 12000, "video_names": ["v"], "fps": [1.0]}, protocol=4))
    return p.name, "expands to more than"


def _npy_declares_huge_shape(r):
    from numpy.lib import format as npy_format
    path = feat_dir(r) / "text" / "word_embeddings_ucf_normed.npy"
    with open(path, "wb") as f:
        npy_format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (10**15,)})
        f.write(b"\0" * 64)
    return path.name, r"declares \d+ bytes but the file holds 64"


def as_h5(r, build) -> Path:
    """Replace the first audio .pkl by an .h5 whose datasets `build(f, data, urls, outside_folder)` writes."""
    import h5py
    p = first_pkl(r)
    with open(p, "rb") as f:
        d = pickle.load(f)
    h5 = p.with_suffix(".h5")
    with h5py.File(h5, "w") as f:
        build(f, np.stack(d["features"]), np.asarray([n.encode() for n in d["video_names"]]), r.parent)
    p.unlink()
    return h5


def _outside_h5(folder: Path, data) -> Path:
    import h5py
    path = folder / "outside.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=data)
    return path


def _h5_external_link(r):
    import h5py

    def build(f, data, urls, out):
        f["data"] = h5py.ExternalLink(str(_outside_h5(out, data)), "/data")
        f.create_dataset("video_urls", data=urls)
    return as_h5(r, build).name, "'data' is an external link to .*outside.h5"


def _h5_virtual_dataset(r):
    import h5py

    def build(f, data, urls, out):
        layout = h5py.VirtualLayout(shape=data.shape, dtype=data.dtype)
        layout[:] = h5py.VirtualSource(str(_outside_h5(out, data)), "data", shape=data.shape)
        f.create_virtual_dataset("data", layout)
        f.create_dataset("video_urls", data=urls)
    return as_h5(r, build).name, "'data' is a virtual dataset .*outside.h5"


def _h5_external_storage(r):
    def build(f, data, urls, out):
        raw = out / "outside.raw"
        raw.write_bytes(data.tobytes())
        f.create_dataset("data", shape=data.shape, dtype=data.dtype, external=[(str(raw), 0, data.nbytes)])
        f.create_dataset("video_urls", data=urls)
    return as_h5(r, build).name, "'data' keeps its values in external file.*outside.raw"


def _h5_declares_huge_dataset(r):
    def build(f, data, urls, out):
        f.create_dataset("data", shape=(10**9, 1024), dtype="f4", chunks=(1, 1024))  # nothing written
        f.create_dataset("video_urls", data=urls)
    return as_h5(r, build).name, r"'data' declares \d+ bytes .*but the file holds \d+"


def _h5_group_not_dataset(r):
    def build(f, data, urls, out):
        f.create_group("data")
        f.create_dataset("video_urls", data=urls)
    return as_h5(r, build).name, "'data' is a group, not a dataset"


def _float32_overflow(r):
    def change(d):
        a = np.asarray(d["features"][0], np.float64)
        a[1] = 1e39
        d["features"][0] = a
    rewrite_pkl(first_pkl(r), change)
    return first_pkl(r).name, "out of float32 range"


CASES = [_missing_root, _missing_split, _missing_table, _missing_feature_folder, _missing_text, _empty_split,
         _class_without_features, _features_of_unlisted_class, _text_missing_for_class, _case_duplicate,
         _dims_differ_between_classes, _dims_differ_between_videos, _nan_values, _inf_values, _truncated_pickle,
         _corrupt_h5, _corrupt_npy, _malicious_pickle, _malicious_text, _video_name_not_string,
         _forged_dtype_pickle, _forged_dtype_text, _shared_reference_bomb, _npy_declares_huge_shape,
         _h5_external_link, _h5_virtual_dataset, _h5_external_storage, _h5_declares_huge_dataset,
         _h5_group_not_dataset, _float32_overflow]


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

def _respell_class(root: Path, old: str, *, listed: str, split: str | None = None, file: str | None = None,
                   original: str | None = None, text: str | None = None) -> None:
    """Rename class `old`: `listed` in all_class.txt, `split` in the split lists, `file` for its feature
    files, `original` in the class-name tables; `text` (if given) renames its text names in the tables
    (manual, clip_class_name) and, spelled as given, its keys in both text dicts. Defaults: `listed`."""
    import csv
    split, file, original = (listed if x is None else x for x in (split, file, original))
    cs = root / "class-split"
    for path, name in [(cs / "all_class.txt", listed)] + [(p, split) for p in cs.glob("*_split/*.txt")]:
        lines = path.read_text(encoding="utf-8").split("\n")
        path.write_text("\n".join(name if x == old else x for x in lines), encoding="utf-8")
    old_text = set()
    for path in cs.glob("*_class_names.csv"):
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        for row in rows:
            if row["original"] == old:
                row["original"] = original
                for col in ("manual", "clip_class_name"):
                    if text is not None and col in row:
                        old_text.add(row[col])
                        row[col] = unicodedata.normalize("NFC", text)
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    if text is not None:
        for stem in ("word_embeddings", "wavcaps_word_embeddings"):
            path = feat_dir(root) / "text" / f"{stem}_ucf_normed.npy"
            d = np.load(path, allow_pickle=True).item()  # our own test file: trusted
            [key] = [k for k in d if k in old_text]
            d[text] = d.pop(key)
            np.save(path, d, allow_pickle=True)
    for p in (root / "features").glob(f"*/*/*/{old}.pkl"):
        p.rename(p.with_name(file + ".pkl"))


@pytest.mark.parametrize("name", ["..", ".hidden", "Foo\u2028Bar", "Foo\x0cBar", "Foo\x85Bar"],
                         ids=["dotdot", "hidden", "u2028", "formfeed", "nel"])
def test_class_names_that_are_odd_but_valid_file_names_load(name, good_roots, tmp_path):
    from avgzsl.data import load_benchmark
    root = tmp_path / "UCF"
    shutil.copytree(good_roots["averaged"], root)
    old = first_pkl(root).stem
    decoy = feat_dir(root) / "audio" / f"{old}.pkl"  # where a '..' joined into a path would lead
    shutil.copy(first_pkl(root), decoy)
    _respell_class(root, old, listed=name)
    bench = load_benchmark(root, cache=False)
    assert name in bench.class_names and old not in bench.class_names
    c = bench.class_names.index(name)
    assert (bench.splits["stage_1_train"].labels == c).sum() > 0
    assert str(decoy) not in str(bench.info)


def test_class_name_that_cannot_be_a_file_name_says_so(good_roots, tmp_path):
    from avgzsl.data import load_benchmark
    from avgzsl.errors import DataError
    root = tmp_path / "UCF"
    shutil.copytree(good_roots["averaged"], root)
    old = first_pkl(root).stem
    shutil.copy(first_pkl(root), feat_dir(root) / "audio" / f"{old}.pkl")  # '../Old' must not find this
    _respell_class(root, old, listed=f"../{old}", file=old)
    for p in (root / "features").glob(f"*/*/*/{old}.pkl"):
        p.unlink()
    with pytest.raises(DataError, match=r"class '\.\./\w+' .*cannot be a file name \(it holds '/'\)"):
        load_benchmark(root, cache=False)


def test_nfc_and_nfd_spellings_of_a_class_name_match_everywhere(good_roots, tmp_path):
    from avgzsl.data import load_benchmark
    nfc, nfd = (unicodedata.normalize(form, "Caf\u00e9Cr\u00e8me") for form in ("NFC", "NFD"))
    assert nfc != nfd
    root = tmp_path / "UCF"
    shutil.copytree(good_roots["averaged"], root)
    old = first_pkl(root).stem
    want = load_benchmark(root, cache=False)
    _respell_class(root, old, listed=nfc, split=nfd, file=nfd, original=nfd,
                   text=unicodedata.normalize("NFD", "caf\u00e9 cr\u00e8me"))
    bench = load_benchmark(root, cache=False)
    assert nfc in bench.class_names and nfd not in bench.class_names
    c, c_old = bench.class_names.index(nfc), want.class_names.index(old)
    assert bench.has_text[c] and np.array_equal(bench.text[c], want.text[c_old])
    assert (bench.splits["stage_1_train"].labels == c).sum() == (want.splits["stage_1_train"].labels == c_old).sum()


def test_float32_overflow_is_one_line_and_no_warning(good_roots, tmp_path, capsys, monkeypatch):
    import warnings
    root = tmp_path / "UCF"
    shutil.copytree(good_roots["averaged"], root)
    name, _ = _float32_overflow(root)
    monkeypatch.setenv("AVGZSL_CACHE", str(tmp_path / "cache"))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        code = main(["train", "--data", str(root), "--config", "clipclap_ucf", "--out", str(tmp_path / "r"),
                     "--quiet", *FAST])
    err = capsys.readouterr().err
    assert code == 2 and "Warning" not in err, err
    assert not [w for w in seen if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in seen]
    assert f"{name}: 1 value(s) out of float32 range" in err, err


def test_h5_soft_links_inside_the_file_still_load(good_roots, tmp_path):
    from avgzsl.data import load_benchmark
    import h5py
    root = tmp_path / "UCF"
    shutil.copytree(good_roots["averaged"], root)
    want = load_benchmark(root, cache=False)

    def build(f, data, urls, out):
        f.create_dataset("store/features", data=data)
        f["data"] = h5py.SoftLink("/store/features")
        f.create_dataset("video_urls", data=urls)
    as_h5(root, build)
    got = load_benchmark(root, cache=False)
    assert np.array_equal(got.splits["stage_1_train"].audio, want.splits["stage_1_train"].audio)


def test_h5_soft_link_through_an_external_link_is_refused(good_roots, tmp_path):
    from avgzsl.data import load_benchmark
    from avgzsl.errors import DataError
    import h5py
    root = tmp_path / "UCF"
    shutil.copytree(good_roots["averaged"], root)

    def build(f, data, urls, out):
        f["elsewhere"] = h5py.ExternalLink(str(_outside_h5(out, data)), "/")
        f["data"] = h5py.SoftLink("/elsewhere/data")
        f.create_dataset("video_urls", data=urls)
    path = as_h5(root, build)
    with pytest.raises(DataError, match=r"'data' leads through the external link /elsewhere to .*outside\.h5") as e:
        load_benchmark(root, cache=False)
    assert str(path) in str(e.value)


def test_class_embeddings_file_declaring_a_huge_shape(tmp_path):
    from numpy.lib import format as npy_format
    from avgzsl.errors import AvgzslError
    from avgzsl.encoders import ClassEmbeddings
    npy = ClassEmbeddings(["a", "b"], np.eye(2, 4), "minilm", "minilm-384").save(tmp_path / "emb.npy")
    with open(npy, "wb") as f:
        npy_format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 512)})
        f.write(b"\0" * 32)
    with pytest.raises(AvgzslError, match=r"declares \d+ bytes but the file holds 32") as e:
        ClassEmbeddings.load(npy)
    assert str(npy) in str(e.value)


# ---- Reliability II (issue 13): run folders, resume, write errors, leftovers, file modes ---------------
# (deeper cases: real processes, a real read-only mount and a real full disk, in tests/test_runfolder_guards.py)

HOLD_LOCK = ("import sys\nfrom avgzsl.runlock import run_lock\nwith run_lock(sys.argv[1]):\n"
             "    print('locked', flush=True)\n    sys.stdin.read()\n")


def test_second_run_into_a_folder_in_use_fails_at_once(good_roots, tmp_path, capsys, monkeypatch):
    """Case 5: another process holds the run folder; a train into it stops with one line naming that process."""
    import subprocess
    import sys
    monkeypatch.setenv("AVGZSL_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "runs" / "r"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n", holder.stderr.read()
        code = main(["train", "--data", str(good_roots["averaged"]), "--config", "clipclap_ucf", "--out", str(run),
                     "--quiet", *FAST, "--set", "seed=2"])
        line = one_error_line(capsys)
        assert code == 2
        assert f"{run} is in use by pid {holder.pid} (started " in line, line
        assert f"remove {run / '.lock'} if that process is gone" in line, line
        assert sorted(p.name for p in run.iterdir()) == [".lock"]  # nothing of the refused run
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert holder.returncode == 0 and not run.joinpath(".lock").exists()  # released on exit


class _StopAfter(Exception):
    pass


def _unfinished_run(root: Path, run: Path, epochs_done: int = 1) -> None:
    """A run of 3 stage-1 epochs stopped after `epochs_done` saved epochs (as a kill would leave it)."""
    from avgzsl.config import load_config, resolve_config
    from avgzsl.data import load_benchmark
    from avgzsl.protocol import run_protocol
    cfg = load_config(resolve_config("clipclap_ucf"), ["epochs=3", "n_batches=2", "bs=8"])
    calls = {"n": 0}

    def on_epoch(row):
        calls["n"] += 1
        if calls["n"] > epochs_done:  # before this epoch's state is saved
            raise _StopAfter()
    with pytest.raises(_StopAfter):
        run_protocol(cfg, load_benchmark(root), run, on_epoch=on_epoch)
    assert (run / "state.pt").exists() and not (run / ".lock").exists()  # the lock is released on errors too


def test_resume_with_other_data_is_refused_unless_allowed(good_roots, tmp_path, capsys, monkeypatch):
    """Case 6: --resume with another --data names both datasets; allow_data_change=true proceeds and records it."""
    import json
    import yaml
    monkeypatch.setenv("AVGZSL_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    _unfinished_run(good_roots["averaged"], run)
    other = make_synthetic("ucf", tmp_path / "UCF_other", scale=0.05, seed=1)
    env_before = (run / "env.json").read_text()
    state_before = (run / "state.pt").read_bytes()
    code = main(["train", "--resume", str(run), "--data", str(other), "--quiet"])
    line = one_error_line(capsys)
    assert code == 2
    assert str(run / "env.json") in line and str(good_roots["averaged"].resolve()) in line, line
    assert str(other.resolve()) in line and "allow_data_change=true" in line, line
    assert (run / "env.json").read_text() == env_before and (run / "state.pt").read_bytes() == state_before
    old_fp = json.loads(env_before)["data_fingerprint"]

    assert main(["train", "--resume", str(run), "--data", str(other), "--quiet",
                 "--set", "allow_data_change=true"]) == 0
    env = json.loads((run / "env.json").read_text())
    [change] = env["data_changes"]
    assert change["from"] == old_fp and change["to"] == env["data_fingerprint"] != old_fp
    assert change["from_root"] == str(good_roots["averaged"].resolve()) and change["to_root"] == str(other.resolve())
    assert (change["at_stage"], change["at_epoch"]) == (1, 1)
    assert yaml.safe_load((run / "config.yaml").read_text())["allow_data_change"] is False  # the run's own config
    assert (run / "results.json").exists()


def _fail_writes_under(monkeypatch, folder: Path, err: int) -> None:
    """Every file or folder created under `folder` fails with `err` (a read-only or full file system)."""
    import builtins
    import io
    import os
    real_mkdir, real_open, real_io_open = os.mkdir, os.open, io.open
    top = str(folder)

    def under(path) -> bool:
        return isinstance(path, (str, os.PathLike)) and os.fspath(path).startswith(top)

    def fail(path):
        raise OSError(err, os.strerror(err), os.fspath(path))

    def mkdir(path, *a, **k):
        if under(path) and not os.path.exists(path):
            fail(path)
        return real_mkdir(path, *a, **k)

    def os_open(path, flags, *a, **k):
        if under(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            fail(path)
        return real_open(path, flags, *a, **k)

    def py_open(file, mode="r", *a, **k):
        if under(file) and any(c in mode for c in "wax+"):
            fail(file)
        return real_io_open(file, mode, *a, **k)
    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(builtins, "open", py_open)
    monkeypatch.setattr(io, "open", py_open)


@pytest.fixture(scope="module")
def native_copy(good_roots, tmp_path_factory):
    out = tmp_path_factory.mktemp("native") / "UCF_native"
    assert main(["convert", str(good_roots["averaged"]), "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("command", ["train", "convert", "predict"])
@pytest.mark.parametrize("err,cause", [("EROFS", "read-only file system"), ("ENOSPC", "no space left on device")],
                         ids=["read_only", "disk_full"])
def test_write_error_is_one_line_naming_path_and_cause(command, err, cause, good_roots, finished_run, native_copy,
                                                       tmp_path, capsys, monkeypatch):
    """Case 9: a read-only --out or a full disk: one line with the path and the cause, nothing written."""
    import errno
    err = getattr(errno, err)
    monkeypatch.setenv("AVGZSL_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "bad"
    bad.mkdir()
    target = bad / {"train": "run", "convert": "native", "predict": "pred.csv"}[command]
    argv = {"train": ["train", "--data", str(good_roots["averaged"]), "--config", "clipclap_ucf", "--quiet", *FAST],
            "convert": ["convert", str(good_roots["averaged"])],
            "predict": ["predict", "--run", str(finished_run), "--features", str(native_copy), "--classes",
                        str(native_copy), "--quiet"]}[command]
    capsys.readouterr()
    _fail_writes_under(monkeypatch, bad, err)
    code = main(argv + ["--out", str(target)])
    monkeypatch.undo()
    line = one_error_line(capsys)
    assert code == 2
    assert str(target) in line and cause in line, line
    assert list(bad.iterdir()) == []


def test_resume_cleans_leftovers_and_writes_a_missing_report(finished_run, tmp_path, capsys, monkeypatch):
    """Case 10: a kill during the report: resume removes the dead writers' temporaries and writes report.html."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "report.html").unlink()
    leftovers = [run / ".state.pt.k2j3h_x.tmp", run / "checkpoints" / ".stage1_best.pt.8f2a1c.tmp",
                 run / ".report.html.q1w2e3.tmp", run / "report" / ".training.png.a1b2c3.tmp"]
    for p in leftovers:
        p.write_bytes(b"half")
    monkeypatch.setenv("AVGZSL_CACHE", str(tmp_path / "cache"))
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "already finished" in out and f"wrote the missing report {run / 'report.html'}" in out, out
    assert (run / "report.html").exists()
    assert not [p for p in run.rglob(".*.tmp")]
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == f"{run}: already finished"


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o027, 0o640)], ids=["umask022", "umask027"])
def test_written_files_follow_the_umask(umask, mode, tmp_path):
    """Case 11: files written crash-safely get the mode an ordinary write would (0666 & ~umask), not 0600."""
    import os
    import torch
    from avgzsl.io import atomic_write, write_json, write_text
    old = os.umask(umask)
    try:
        paths = [write_text(tmp_path / "a.txt", "x"), write_json(tmp_path / "sub" / "b.json", {}),
                 atomic_write(tmp_path / "c.pt", lambda p: torch.save({"x": torch.zeros(2)}, p)),
                 atomic_write(tmp_path / "d.npz", lambda p: np.savez(p.open("wb"), x=np.zeros(2)))]
    finally:
        os.umask(old)
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in paths} == {p.name: oct(mode) for p in paths}


# ---- Reliability II (issue 13): settings and checkpoints -----------------------------------------------
# (unit-level cases in tests/test_settings_guards.py)

def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    lines = [x for x in err.splitlines() if x.startswith("avgzsl: error:")]
    assert len(lines) == 1, err
    return lines[0]


BILLION_LAUGHS = """model: clipclap
clipclap:
  hidden: [&a [lol,lol,lol,lol,lol,lol,lol,lol,lol], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a],
           &c [*b,*b,*b,*b,*b,*b,*b,*b,*b], &d [*c,*c,*c,*c,*c,*c,*c,*c,*c], &e [*d,*d,*d,*d,*d,*d,*d,*d,*d],
           &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]]
"""


@pytest.mark.parametrize("where", ["file", "set"])
def test_yaml_alias_bomb_is_one_short_line(where, good_roots, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AVGZSL_CACHE", str(tmp_path / "cache"))
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BILLION_LAUGHS)
    args = ["--config", str(bomb)] if where == "file" else \
        ["--config", "clipclap_ucf", "--set", "clipclap.hidden=[&a [lol, lol], &b [*a, *a], *b]"]
    runs = tmp_path / "runs"
    code = main(["train", "--data", str(good_roots["averaged"]), "--out", str(runs / "r"), "--quiet", *args])
    line = one_error_line(capsys)
    assert code == 2
    assert "YAML aliases (&/*) are not allowed in configs" in line and len(line) < 300, line[:500]
    assert ("bomb.yaml" if where == "file" else "--set clipclap.hidden") in line
    assert not runs.exists()


@pytest.mark.parametrize("setting,key", [("lr=nan", "lr"), ("lr=inf", "lr"), ("weight_decay=-1", "weight_decay"),
                                         (f"seed={2**64}", "seed"),
                                         ("clipclap.dropout_encoder=1.5", "clipclap.dropout_encoder"),
                                         ("clipclap.hidden=-4", "clipclap.hidden")])
def test_bad_setting_stops_before_anything_is_written(setting, key, good_roots, tmp_path, capsys, monkeypatch):
    cache, runs = tmp_path / "cache", tmp_path / "runs"
    monkeypatch.setenv("AVGZSL_CACHE", str(cache))
    code = main(["train", "--data", str(good_roots["averaged"]), "--config", "clipclap_ucf", "--out",
                 str(runs / "r"), "--quiet", *FAST, "--set", setting])
    line = one_error_line(capsys)
    assert code == 2
    assert f"{key}=" in line and ("must be" in line or "finite" in line), line
    assert not runs.exists()
    assert not cache.exists() or not any(p.is_file() for p in cache.rglob("*"))


def test_non_finite_loss_is_one_line_and_the_run_stays_resumable(good_roots, tmp_path, capsys, monkeypatch):
    from avgzsl.models.clipclap import ClipClap
    monkeypatch.setenv("AVGZSL_CACHE", str(tmp_path / "cache"))
    orig = ClipClap.loss
    calls = {"n": 0}

    def loss(self, *a):  # epoch 2 of stage 1 (2 batches per epoch) goes NaN
        calls["n"] += 1
        total, terms = orig(self, *a)
        if calls["n"] > 2:
            total = total * float("nan")
            terms = {**terms, "rec": total.detach(), "total": total.detach()}
        return total, terms
    monkeypatch.setattr(ClipClap, "loss", loss)
    run = tmp_path / "run"
    code = main(["train", "--data", str(good_roots["averaged"]), "--config", "clipclap_ucf", "--out", str(run),
                 "--quiet", "--set", "epochs=3", "--set", "n_batches=2", "--set", "bs=8"])
    line = one_error_line(capsys)
    assert code == 2
    assert "stage 1 epoch 2: loss term 'rec' is nan" in line and f"--resume {run}" in line, line
    assert (run / "state.pt").exists() and not (run / "results.json").exists()
    monkeypatch.undo()
    monkeypatch.setenv("AVGZSL_CACHE", str(tmp_path / "cache"))
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert (run / "results.json").exists()


@pytest.fixture(scope="module")
def finished_run(good_roots, tmp_path_factory):
    run = tmp_path_factory.mktemp("finished") / "run"
    mp = pytest.MonkeyPatch()
    mp.setenv("AVGZSL_CACHE", str(run.parent / "cache"))
    assert main(["train", "--data", str(good_roots["averaged"]), "--config", "clipclap_ucf", "--out", str(run),
                 "--quiet", *FAST]) == 0
    mp.undo()
    return run


from test_settings_guards import _set as _ckpt_set  # noqa: E402  (one checkpoint-editing helper)


def _ckpt_bad_shape(c):
    import torch
    k = next(k for k in c["state_dict"] if k.endswith("weight") and c["state_dict"][k].ndim == 2)
    c["state_dict"][k] = torch.zeros(3, 4)
    return k


def _ckpt_missing_key(c):
    k = next(iter(c["state_dict"]))
    del c["state_dict"][k]
    return k


CHECKPOINT_CASES = [
    ("dim_1e12", _ckpt_set("dims.audio", 10**12), "dims.audio"),
    ("beta_string", _ckpt_set("beta", "x"), "beta"),
    ("wrong_shape", _ckpt_bad_shape, None),
    ("missing_key", _ckpt_missing_key, None),
    ("bad_model_setting", _ckpt_set("model_config.hidden", -4), "clipclap.hidden"),
    ("bad_run_setting", _ckpt_set("run_config.eval_bs", 0), "eval_bs"),
]


@pytest.mark.parametrize("command", ["eval", "predict"])
@pytest.mark.parametrize("change,key", [c[1:] for c in CHECKPOINT_CASES], ids=[c[0] for c in CHECKPOINT_CASES])
def test_broken_checkpoint_gives_one_clear_line(command, change, key, finished_run, good_roots, tmp_path, capsys,
                                                monkeypatch):
    import torch
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    path = run / "checkpoints" / "stage2_final.pt"
    ckpt = torch.load(path, weights_only=True)
    key = change(ckpt) or key
    torch.save(ckpt, path)
    monkeypatch.setenv("AVGZSL_CACHE", str(tmp_path / "cache"))
    argv = (["eval", str(run), "--data", str(good_roots["averaged"])] if command == "eval" else
            ["predict", "--run", str(run), "--features", str(good_roots["averaged"]), "--classes", "x.npy", "--quiet"])
    code = main(argv)
    line = one_error_line(capsys)
    assert code == 2
    assert str(path) in line and key in line, line
    assert len(line) < 500, line


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_checkpoint_with_a_pickle_payload_is_named_unsafe(command, finished_run, good_roots, tmp_path, capsys,
                                                          monkeypatch):
    import torch
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    path = run / "checkpoints" / "stage2_final.pt"
    ckpt = torch.load(path, weights_only=True)
    ckpt["extra"] = Evil()
    torch.save(ckpt, path)
    monkeypatch.chdir(tmp_path)
    argv = (["eval", str(run), "--data", str(good_roots["averaged"])] if command == "eval" else
            ["predict", "--run", str(run), "--features", str(good_roots["averaged"]), "--classes", "x.npy"])
    assert main(argv) == 2
    line = one_error_line(capsys)
    import os
    assert line == f"avgzsl: error: unsafe checkpoint: {path} refers to {os.system.__module__}.system; nothing was executed"
    assert not (tmp_path / "PWNED_MARKER").exists()
