"""Each protocol step by a test that fails if the step is wrong."""
import json
from types import SimpleNamespace

import numpy as np
import torch
import pytest

import avgzsl.protocol as protocol
from avgzsl.config import load_config
from avgzsl.data.sampler import ClassBalancedSampler
from avgzsl.errors import LeakageError
from avgzsl.train import train_one_epoch as real_train_one_epoch

FAST = ["epochs=4", "n_batches=3", "bs=8", "lr=1e-3", "clipclap.hidden=16", "clipclap.dim_out=8"]


def scripted_eval(monkeypatch, hms, betas):
    """Replace validation evaluation by a script of HM values (one per call) and chosen betas."""
    calls = iter(zip(hms, betas))

    def fake(model, data, text, class_ids, seen_mask, grid, eval_bs=4096, progress=False, **kw):
        hm, beta = next(calls)
        summ = {"seen": hm, "unseen": hm, "hm": hm, "zsl": 0.0, "beta": beta, "ausuc": 0.0}
        res = SimpleNamespace(summary=lambda: summ, betas=np.array([beta]), seen=np.array([hm]),
                              unseen=np.array([hm]), hm=np.array([hm]))
        return res, None

    monkeypatch.setattr(protocol, "evaluate", fake)


def record_training(monkeypatch):
    calls = []

    def spy(model, optimizer, data, batches, class_text, local_index, progress=False, desc="", **hooks):
        batches = batches if isinstance(batches, torch.Tensor) else torch.stack(list(batches))
        calls.append(SimpleNamespace(desc=desc, labels=data.labels.clone(), batches=batches.clone(),
                                     n_classes=class_text.shape[0], lr=optimizer.param_groups[0]["lr"],
                                     class_text=class_text.clone()))
        return real_train_one_epoch(model, optimizer, data, batches, class_text, local_index, False, desc, **hooks)

    monkeypatch.setattr(protocol, "train_one_epoch", spy)
    return calls


def test_best_epoch_is_first_max_and_stage2_runs_best_plus_one(monkeypatch, tiny_bench):
    scripted_eval(monkeypatch, [0.1, 0.3, 0.3, 0.2], [0.5, 1.0, 2.0, 3.0])
    calls = record_training(monkeypatch)
    r = protocol.run_protocol(load_config(None, FAST), tiny_bench)
    assert r["best_epoch"] == 1  # epochs 1 and 2 tie at 0.3: the first wins
    assert r["val"]["beta"] == 1.0
    assert r["stage2_epochs"] == 2
    assert [c.desc.split(" epoch")[0] for c in calls] == ["stage 1"] * 4 + ["stage 2"] * 2


def test_stage2_trains_on_all_three_stage1_folders(monkeypatch, tiny_bench):
    scripted_eval(monkeypatch, [0.5, 0.1, 0.1, 0.1], [0.0] * 4)
    calls = record_training(monkeypatch)
    protocol.run_protocol(load_config(None, FAST), tiny_bench)
    s = tiny_bench.splits
    stage2 = [c for c in calls if c.desc.startswith("stage 2")]
    want = np.concatenate([s["stage_1_train"].labels, s["stage_1_val_seen"].labels, s["stage_1_val_unseen"].labels])
    assert sorted(stage2[0].labels.tolist()) == sorted(want.tolist())
    assert stage2[0].n_classes == len(s["stage_2_train"].classes) == 6
    stage1 = [c for c in calls if c.desc.startswith("stage 1")]
    assert sorted(stage1[0].labels.tolist()) == sorted(s["stage_1_train"].labels.tolist())
    assert stage1[0].n_classes == 4
    # no test video ever reaches training
    assert not set(stage2[0].labels.tolist()) & set(s["stage_2_test_unseen"].classes.tolist())


def test_test_uses_validation_beta_not_a_test_search(monkeypatch, tiny_bench):
    seen_betas = []
    real = protocol.gzsl_metrics

    def spy(nearest, labels, class_ids, seen_mask, betas, arithmetic="float64"):
        seen_betas.append(np.asarray(betas).copy())
        return real(nearest, labels, class_ids, seen_mask, betas, arithmetic)

    monkeypatch.setattr(protocol, "gzsl_metrics", spy)
    scripted_eval(monkeypatch, [0.2, 0.4, 0.1, 0.1], [0.7, 1.3, 2.0, 2.0])
    r = protocol.run_protocol(load_config(None, FAST), tiny_bench)
    assert r["test"]["beta"] == 1.3 == r["val"]["beta"]
    fixed = [b for b in seen_betas if len(b) == 1]
    assert len(fixed) == 1 and fixed[0][0] == 1.3  # the reported test numbers come from that beta alone


def test_stage2_replays_stage1_learning_rates(monkeypatch, tiny_bench):
    # with patience 0 the plateau scheduler cuts the rate (x0.1) after every epoch without a new best
    scripted_eval(monkeypatch, [0.1, 0.2, 0.05, 0.05, 0.05, 0.3], [0.0] * 6)
    calls = record_training(monkeypatch)
    cfg = load_config(None, FAST + ["epochs=6", "scheduler_patience=0"])
    r = protocol.run_protocol(cfg, tiny_bench)
    lrs1 = [c.lr for c in calls if c.desc.startswith("stage 1")]
    lrs2 = [c.lr for c in calls if c.desc.startswith("stage 2")]
    assert r["best_epoch"] == 5 and len(lrs2) == 6
    assert lrs1[3] < lrs1[0]  # the plateau scheduler did reduce the rate
    assert lrs2 == pytest.approx(lrs1)


def test_end_to_end_run_folder(tmp_path, tiny_bench):
    out = tmp_path / "run"
    r = protocol.run_protocol(load_config(None, FAST), tiny_bench, out)
    for name in ("config.yaml", "env.json", "log.jsonl", "results.json", "checkpoints/stage1_best.pt",
                 "checkpoints/stage2_final.pt", "eval/test.npz"):
        assert (out / name).exists(), name
    saved = json.loads((out / "results.json").read_text())
    for part in ("test", "val"):
        assert set(saved[part]) >= {"seen", "unseen", "hm", "zsl", "beta", "ausuc"}
        assert all(0.0 <= saved[part][k] <= 1.0 for k in ("seen", "unseen", "hm", "zsl", "ausuc"))
    rows = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [row["stage"] for row in rows] == [1] * 4 + [2] * saved["stage2_epochs"]
    assert set(rows[0]["loss"]) >= {"ce", "reg", "rec", "total"}
    # the stored model reproduces the test numbers
    assert protocol.evaluate_run(out, tiny_bench) == pytest.approx(saved["test"])
    assert r["test"] == pytest.approx(saved["test"])


def test_same_seed_same_results_different_seed_differs(tiny_bench):
    a = protocol.run_protocol(load_config(None, FAST), tiny_bench)
    b = protocol.run_protocol(load_config(None, FAST), tiny_bench)
    c = protocol.run_protocol(load_config(None, FAST + ["seed=7"]), tiny_bench)
    assert a == b
    assert a["curves"] != c["curves"]


def test_leakage_guard_refuses_test_unseen_class_in_training(tiny_bench):
    s = tiny_bench.splits
    s["stage_2_train"].classes = np.union1d(s["stage_2_train"].classes, [6])
    with pytest.raises(LeakageError, match="test-unseen"):
        protocol.run_protocol(load_config(None, FAST), tiny_bench)
    r = protocol.run_protocol(load_config(None, FAST + ["allow_leakage=true"]), tiny_bench)
    assert "test" in r


def test_sampler_is_class_balanced_with_replacement():
    labels = np.array([0] * 90 + [1] * 9 + [2] * 1)
    idx = ClassBalancedSampler(labels, n_batches=300, bs=100, seed=0).epoch()
    assert idx.shape == (300, 100)
    drawn = labels[idx.flatten().numpy()]
    freq = np.bincount(drawn, minlength=3) / drawn.size
    assert np.allclose(freq, 1 / 3, atol=0.01)  # classes equally likely despite 90:9:1 counts
    within = np.bincount(idx.flatten().numpy()[drawn == 0], minlength=90)[:90]
    assert within.min() > 0 and within.std() / within.mean() < 0.15  # videos uniform within a class


def test_leakage_guard_refuses_a_class_both_seen_and_unseen(tiny_bench):
    s = tiny_bench.splits
    s["stage_1_val_unseen"].classes = np.union1d(s["stage_1_val_unseen"].classes, [0])
    with pytest.raises(LeakageError, match="both stage_1_val_seen and stage_1_val_unseen"):
        protocol.run_protocol(load_config(None, FAST), tiny_bench)


def test_leakage_guard_refuses_a_training_video_in_the_test_set(tiny_bench):
    s = tiny_bench.splits
    s["stage_2_test_seen"].video_names[0] = s["stage_1_train"].video_names[3]
    with pytest.raises(LeakageError, match="also test videos"):
        protocol.run_protocol(load_config(None, FAST), tiny_bench)


def test_duplicate_video_names_are_a_counted_warning(tiny_bench, caplog):
    s = tiny_bench.splits
    s["stage_1_train"].video_names[1] = s["stage_1_train"].video_names[0]
    errors, warnings = protocol.check_leakage(tiny_bench)
    assert not errors and warnings == ["stage_1_train: 1 duplicate video name(s)"]


def test_overridden_leakage_is_recorded_in_the_run_folder(tmp_path, tiny_bench):
    s = tiny_bench.splits
    s["stage_2_test_seen"].video_names[0] = s["stage_1_train"].video_names[3]
    protocol.run_protocol(load_config(None, FAST + ["allow_leakage=true"]), tiny_bench, tmp_path / "run")
    env = json.loads((tmp_path / "run" / "env.json").read_text())
    # the video is in stage_1_train and, as in the real layout, in stage_2_train too
    assert [m.split(" are ")[0] for m in env["leakage_overridden"]] == [
        "1 video(s) of stage_1_train", "1 video(s) of stage_2_train"]


@pytest.mark.parametrize("model,sets", [("avgzslnet", ["avgzslnet.hidden=16", "avgzslnet.dim_out=8"]),
                                        ("mft", ["mft.d_model=8", "mft.heads=2", "mft.depth=1", "mft.hidden=16",
                                                 "mft.dim_out=8"])])
def test_modality_breakdown_scores_the_final_model_from_each_modality(tmp_path, tiny_bench, model, sets):
    from avgzsl.checkpoint import load_model
    from avgzsl.metrics import ausuc_exact, nearest_seen_unseen

    out = tmp_path / model
    cfg = load_config(None, ["epochs=2", "n_batches=3", "bs=8", "lr=1e-3", f"model={model}", *sets])
    r = protocol.run_protocol(cfg, tiny_bench, out)
    modes = r["modalities"]
    assert set(modes) == {"both", "audio", "video"}
    assert modes["both"]["zsl"] == pytest.approx(r["test"]["zsl"])
    assert modes["both"]["ausuc"] == pytest.approx(r["test"]["ausuc"])
    assert json.loads((out / "results.json").read_text())["modalities"] == json.loads(json.dumps(modes))
    # re-derived here: each test video, one at a time, scored by the stored model from one modality
    net, _ = load_model(out / "checkpoints" / "stage2_final.pt")
    test = protocol.EvalSet.build(tiny_bench.splits["stage_2_test_seen"], tiny_bench.splits["stage_2_test_unseen"],
                                  "cpu")
    text = torch.from_numpy(tiny_bench.text)
    emb = net.embed_classes(text[torch.as_tensor(test.class_ids)])
    labels = test.data.labels.numpy()
    for m in ("audio", "video"):
        with torch.no_grad():
            dist = np.concatenate([net.mode_distances(test.data.take(torch.tensor([i])), emb)[m].numpy()
                                   for i in range(len(labels))])  # (N, C)
        label_cols = np.searchsorted(test.class_ids, labels)
        right = np.flatnonzero(test.seen_mask)[dist[:, test.seen_mask].argmin(1)] == label_cols
        per_class = [right[(label_cols == c)].mean() for c in np.flatnonzero(test.seen_mask)]
        assert modes[m]["seen_only"] == pytest.approx(np.mean(per_class))
        right_u = np.flatnonzero(~test.seen_mask)[dist[:, ~test.seen_mask].argmin(1)] == label_cols
        assert modes[m]["zsl"] == pytest.approx(np.mean([right_u[label_cols == c].mean()
                                                         for c in np.flatnonzero(~test.seen_mask)]))
        assert modes[m]["ausuc"] == pytest.approx(ausuc_exact(nearest_seen_unseen(dist, test.seen_mask), label_cols,
                                                              test.seen_mask), abs=1e-6)
    assert modes["audio"] != modes["video"]


def test_no_modality_breakdown_for_a_model_without_single_modality_scoring(tiny_bench):
    assert "modalities" not in protocol.run_protocol(load_config(None, ["epochs=1", "n_batches=2", "bs=8"]), tiny_bench)
