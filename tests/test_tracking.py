"""Experiment trackers (avgzsl.tracking): a tiny protocol with each logger, its files read back; the rows the
trackers get are the run folder's own (log.jsonl, steps.jsonl, results.json)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import tiny_benchmark  # noqa: E402

from avgzsl.config import load_config  # noqa: E402
from avgzsl.errors import ConfigError  # noqa: E402
from avgzsl.protocol import run_protocol  # noqa: E402
from avgzsl.tracking import epoch_scalars, result_scalars, step_scalars, tracker_names  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py
FAST = ["epochs=2", "n_batches=3", "bs=8", "clipclap.hidden=16"]


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _run(tmp_path, logger):
    out = tmp_path / f"run-{logger}"
    run_protocol(load_config(None, FAST + [f"logger={logger}"]), tiny_benchmark(), out)
    return out


def test_steps_jsonl_holds_every_steps_loss_and_its_mean_is_the_epoch_row(tmp_path):
    out = _run(tmp_path, "none")
    steps, epochs = _rows(out / "steps.jsonl"), _rows(out / "log.jsonl")
    assert [(r["stage"], r["epoch"]) for r in steps] == [(r["stage"], r["epoch"]) for r in epochs]
    for s, e in zip(steps, epochs):
        assert s["first_step"] == 3 * s["epoch"]
        assert set(s["terms"]) == set(e["loss"]) and all(len(v) == 3 for v in s["terms"].values())
        for term, values in s["terms"].items():  # the epoch row is the mean of its steps
            assert sum(values) / 3 == pytest.approx(e["loss"][term], rel=1e-5)
    assert not (out / "tensorboard").exists()


def test_scalars_from_rows():
    row = {"stage": 1, "epoch": 4, "lr": 1e-3, "loss": {"ce": 2.0, "total": 3.0},
           "val": {"seen": 0.5, "unseen": 0.25, "hm": 1 / 3, "zsl": 0.3, "beta": 0.1, "ausuc": 0.2}}
    assert epoch_scalars(row) == {"stage1/loss/ce": 2.0, "stage1/loss/total": 3.0, "stage1/lr": 1e-3,
                                  "stage1/val/S": 0.5, "stage1/val/U": 0.25, "stage1/val/HM": 1 / 3,
                                  "stage1/val/ZSL": 0.3, "stage1/val/beta": 0.1, "stage1/val/AUSUC": 0.2}
    assert step_scalars({"stage": 2, "first_step": 6, "terms": {"ce": [1.0, 2.0]}}) == \
        [(6, {"stage2/step/ce": 1.0}), (7, {"stage2/step/ce": 2.0})]
    final, curve = result_scalars({"test": {"hm": 0.4, "seen": 0.5}, "curves": {"test_grid": {
        "beta": [0.0, 1.0], "seen": [0.9, 0.5], "unseen": [0.1, 0.4], "hm": [0.18, 0.44]}}})
    assert final == {"test/S": 0.5, "test/HM": 0.4}
    assert curve[1] == (1, {"test/curve/beta": 1.0, "test/curve/S": 0.5, "test/curve/U": 0.4, "test/curve/HM": 0.44})


def test_logger_names_are_checked():
    assert tracker_names("none") == [] and tracker_names("") == []
    with pytest.raises(ConfigError, match=r"unknown logger 'tensorbord' \(did you mean 'tensorboard'\?\)"):
        tracker_names("tensorbord")
    with pytest.raises(ConfigError, match="logger"):
        load_config(None, ["logger=tensorbord"])


def test_tensorboard_event_file_holds_the_runs_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    assert tracker_names("auto") == ["tensorboard"]
    out = _run(tmp_path, "auto")
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    epochs, results = _rows(out / "log.jsonl"), json.loads((out / "results.json").read_text())
    for tag in ("stage1/loss/total", "stage1/lr", "stage1/val/HM", "stage2/loss/total", "stage1/step/total",
                "test/HM", "test/curve/HM"):
        assert tag in tags, tag
    hm = [(e.step, e.value) for e in acc.Scalars("stage1/val/HM")]
    assert hm == [(r["epoch"], pytest.approx(r["val"]["hm"], rel=1e-6)) for r in epochs if r["stage"] == 1]
    assert acc.Scalars("test/HM")[0].value == pytest.approx(results["test"]["hm"], rel=1e-6)
    assert len(acc.Scalars("stage1/step/total")) == 2 * 3  # 2 epochs x 3 steps
    assert len(acc.Scalars("test/curve/HM")) == len(results["curves"]["test_grid"]["beta"])


def _wandb_history(path):
    """The history rows of an offline .wandb file: W&B's record log (LevelDB log format: a 7-byte file
    header, 32 KiB blocks, records of <crc u32, length u16, type u8> + payload, split FIRST/MIDDLE/LAST
    across blocks), each record a wandb_internal_pb2.Record."""
    import struct
    from wandb.proto import wandb_internal_pb2 as pb
    data, pos, payloads, buf = path.read_bytes(), 7, [], b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 1:
            payloads.append(chunk)
        elif kind in (2, 3):
            buf = chunk if kind == 2 else buf + chunk
        elif kind == 4:
            payloads.append(buf + chunk)
    rows = []
    for p in payloads:
        r = pb.Record()
        r.ParseFromString(p)
        if r.WhichOneof("record_type") == "history":
            rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item})
    return rows


def test_wandb_offline_run_records_the_scalars(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = _run(tmp_path, "wandb")
    (f,) = list((out / "wandb").glob("offline-run-*/run-*.wandb"))
    rows = _wandb_history(f)
    results, epochs = json.loads((out / "results.json").read_text()), _rows(out / "log.jsonl")
    (test,) = [r for r in rows if "test/HM" in r]
    assert test["test/HM"] == pytest.approx(results["test"]["hm"], rel=1e-6) and test["test/_step"] == 0
    val = [(r["stage1/val/_step"], r["stage1/val/HM"]) for r in rows if "stage1/val/HM" in r]
    assert val == [(e["epoch"], pytest.approx(e["val"]["hm"], rel=1e-6)) for e in epochs if e["stage"] == 1]
    assert len([r for r in rows if "stage1/step/total" in r]) == 2 * 3


def test_mlflow_local_store_records_metrics(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = _run(tmp_path, "mlflow")
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{(out / 'mlflow.db').resolve()}")
    (run,) = client.search_runs([client.get_experiment_by_name("avgzsl").experiment_id])
    results = json.loads((out / "results.json").read_text())
    assert run.data.metrics["test/HM"] == pytest.approx(results["test"]["hm"], rel=1e-6)
    hist = client.get_metric_history(run.info.run_id, "stage1/val/HM")
    assert [m.step for m in hist] == [0, 1]
    assert run.data.params["model"] == "clipclap"


def test_a_failing_tracker_is_dropped_and_the_run_goes_on(tmp_path, monkeypatch, caplog):
    pytest.importorskip("tensorboard")
    from avgzsl import tracking

    def boom(self, values, step):
        raise RuntimeError("dashboard down")
    monkeypatch.setattr(tracking.TensorBoardTracker, "scalars", boom)
    out = _run(tmp_path, "tensorboard")
    assert (out / "results.json").is_file() and "dashboard down" in caplog.text


def test_cli_logger_flag(tmp_path):
    pytest.importorskip("tensorboard")
    from avgzsl.cli import main
    from avgzsl.data.native import write_native
    root = write_native(tiny_benchmark(), tmp_path / "data")
    sets = [x for kv in FAST for x in ("--set", kv)]
    assert main(["train", "--data", str(root), "--out", str(tmp_path / "tb"), "--quiet", *sets]) == 0
    assert list((tmp_path / "tb" / "tensorboard").glob("events.out.tfevents.*"))  # auto: installed -> on
    assert main(["train", "--data", str(root), "--out", str(tmp_path / "off"), "--quiet", "--logger", "none",
                 *sets]) == 0
    assert not (tmp_path / "off" / "tensorboard").exists()
    assert main(["train", "--data", str(root), "--out", str(tmp_path / "bad"), "--logger", "tensorbord", *sets]) == 2
