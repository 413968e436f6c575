"""Ray executor and Ray Tune sweeps on local Ray (2 CPUs, tiny synthetic data), against the sequential path.

The Ray tests share one Ray session (module fixture) and are skipped when ray is not installed
(`pip install "avgzsl[ray]"`); the others run everywhere. Results must be bit-identical to the sequential
executor's: a Ray task uses 1 torch thread (its CPU share), so the sequential reference runs with 1 too.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from _procs import kill_when
from avgzsl.errors import AvgzslError, ConfigError
from avgzsl.executors import LocalRunner, make_runner
from avgzsl.reproduce import Experiment, Variant

TINY = ("epochs=2", "n_batches=4", "bs=16", "eval_bs=512")
SWEEP = """\
base: mft_ucf
synthetic: {like: ucf, scale: 0.1}
set: [epochs=3, n_batches=8, bs=32, eval_bs=512]
metric: val_hm
space:
  mft.d_model: {grid: [32, 64]}
  lr: {loguniform: [1e-3, 1e-2]}
num_samples: 2
seed: 0
"""


class one_thread:
    """torch with 1 thread (as a 1-CPU Ray task has), restored afterwards."""

    def __enter__(self):
        self.n = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.n)


@pytest.fixture(scope="module")
def ray_session(tmp_path_factory):
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.tune")
    cache = tmp_path_factory.mktemp("cache")
    old = os.environ.get("AVGZSL_CACHE")
    os.environ["AVGZSL_CACHE"] = str(cache)  # before init: the workers inherit it
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    try:
        yield {"cache": cache, "address": ray.get_runtime_context().gcs_address}
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop("AVGZSL_CACHE", None)
        else:
            os.environ["AVGZSL_CACHE"] = old


# ---- reproduce ---------------------------------------------------------------------------------

def test_reproduce_on_ray_is_bit_identical_to_sequential(ray_session, tmp_path):
    from avgzsl.reproduce import reproduce
    kw = dict(datasets=["ucf"], tables=[3], seeds=[0, 1], synthetic_scale=0.1, cache=ray_session["cache"],
              extra_sets=TINY, progress=False)
    reproduce(out=tmp_path / "ray", runner=make_runner("ray"), **kw)  # uses the fixture's Ray session
    with one_thread():
        reproduce(out=tmp_path / "seq", runner=make_runner("local", progress=False), **kw)
    seq = sorted((tmp_path / "seq").glob("ucf/*/seed*/results.json"))
    assert len(seq) == 4  # MFT and w/o attention, 2 seeds each
    for f in seq:
        other = tmp_path / "ray" / f.relative_to(tmp_path / "seq")
        assert other.read_bytes() == f.read_bytes(), f
    assert (tmp_path / "ray" / "tables.csv").read_text() == (tmp_path / "seq" / "tables.csv").read_text()


def _experiments(tmp_path, n):
    return [Experiment("ucf", Variant(f"v{i}", "mft"), 0, tmp_path, tmp_path / f"run{i}") for i in range(n)]


def flaky():
    """A stand-in for run_experiment. run0: fails once then works; run1: always fails; run2: works;
    run3: a user error (never retried). A local function, so that cloudpickle sends it to Ray by value."""
    def run(exp, device, progress):
        tries = exp.out.with_suffix(".tries")
        n = int(tries.read_text()) + 1 if tries.exists() else 1
        tries.write_text(str(n))
        i = int(exp.out.name[-1])
        if i == 3:
            raise AvgzslError("bad data")
        if (i == 0 and n == 1) or i == 1:
            raise RuntimeError(f"boom {i}")
    return run


def test_ray_runner_retries_once_then_reports(ray_session, tmp_path):
    from avgzsl.executors import RayRunner
    exps = _experiments(tmp_path, 4)
    failures = RayRunner(num_cpus=1, fn=flaky())(exps, "cpu")
    tries = [int(e.out.with_suffix(".tries").read_text()) for e in exps]
    assert tries == [2, 2, 1, 1]
    assert sorted((e.out.name, msg) for e, msg in failures) == [("run1", "RuntimeError: boom 1 (after 1 retry)"),
                                                                ("run3", "AvgzslError: bad data")]


def test_local_runner_retries_once_then_reports(tmp_path):
    exps = _experiments(tmp_path, 3)
    failures = LocalRunner(progress=False, fn=flaky())(exps, "cpu")
    assert [int(e.out.with_suffix(".tries").read_text()) for e in exps] == [2, 2, 1]
    assert [(e.out.name, msg) for e, msg in failures] == [("run1", "RuntimeError: boom 1")]
    with pytest.raises(AvgzslError, match="bad data"):  # user errors stop the sequential run at once
        LocalRunner(progress=False, fn=flaky())(_experiments(tmp_path, 4)[3:], "cpu")
    assert (tmp_path / "run3.tries").read_text() == "1"


# ---- sweep ---------------------------------------------------------------------------------------

def _sweep_cli(cfg: Path, out: Path, address: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_DEDUP_LOGS": "0"}
    return subprocess.Popen([sys.executable, "-m", "avgzsl.cli", "sweep", "--config", str(cfg), "--out", str(out),
                             "--ray-address", address, "--quiet"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def test_sweep_resumes_after_kill_and_matches_sequential(ray_session, tmp_path):
    from avgzsl.data import load_benchmark
    from avgzsl.sweep import load_sweep, train_stage1, trial_config
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text(SWEEP)
    out = tmp_path / "out"
    done = lambda: sorted(out.glob("trials/*/result.json"))  # noqa: E731

    p = _sweep_cli(cfg, out, ray_session["address"])
    kill_when(p, lambda: bool(done()), timeout=600)  # a busy 2-core machine took > 150 s
    first = done()
    assert 1 <= len(first) < 4 and not (out / "summary.json").exists()
    stamps = {f: f.stat().st_mtime_ns for f in first}

    p = _sweep_cli(cfg, out, ray_session["address"])
    log = p.communicate(timeout=300)[0].decode()
    assert p.returncode == 0, log[-3000:]
    assert "resuming the sweep" in log  # Tune's restore, not a fresh search
    summary = json.loads((out / "summary.json").read_text())
    trials = summary["trials"]
    assert len(trials) == 4 and all(t["status"] == "ok" for t in trials), trials
    assert sorted(t["overrides"]["mft.d_model"] for t in trials) == [32, 32, 64, 64]
    assert len({t["key"] for t in trials}) == 4
    # trials finished before the kill were not trained again
    for f in first:
        assert f.stat().st_mtime_ns == stamps[f]
        assert len((f.parent / "attempts.jsonl").read_text().splitlines()) == 1

    # every trial's validation numbers equal a sequential stage-1 run of its config
    spec = load_sweep(cfg)
    root = Path(summary["data"])
    with one_thread():
        for t in trials:
            c = trial_config(spec, t["overrides"])
            bench = load_benchmark(root, split=c.split, feature_dir=c.feature_dir, text_alignment=c.text_alignment)
            ref = train_stage1(c, bench)
            assert ref["val"] == t["val"] and ref["best_epoch"] == t["best_epoch"], t["overrides"]
    # the best config went through the full protocol; its stage 1 is the trial's
    best = summary["best"]
    assert best["value"] == max(t["value"] for t in trials) > 0
    res = json.loads((out / "best" / "results.json").read_text())
    assert res["val"] == best["val"] and best["test"] == res["test"]
    assert (out / "best" / "report.html").exists()  # the sweep's full run writes its report, as train does
    assert (out / "trials.csv").read_text().count("\n") == 5


# ---- no Ray needed -------------------------------------------------------------------------------

def test_train_stage1_equals_the_protocols_stage1(tiny_bench):
    from avgzsl.config import load_config
    from avgzsl.protocol import run_protocol
    from avgzsl.sweep import train_stage1
    sets = ["epochs=3", "n_batches=10", "bs=16", "lr=1e-3", "clipclap.hidden=64"]
    full = run_protocol(load_config(None, sets), tiny_bench)
    s1 = train_stage1(load_config(None, sets), tiny_bench)
    assert s1["val"] == full["val"] and s1["best_epoch"] == full["best_epoch"] and len(s1["epochs"]) == 3


def test_sweep_file_is_checked(tmp_path):
    from avgzsl.sweep import load_sweep
    p = tmp_path / "s.yaml"
    p.write_text(SWEEP)
    spec = load_sweep(p)
    assert spec.space["lr"] == {"loguniform": [1e-3, 1e-2]}  # YAML's "1e-3" strings become numbers
    for bad, msg in [(SWEEP.replace("mft.d_model", "mft.d_modle"), "d_modle"),
                     (SWEEP + "metric: test_hm\n", "stage-1 validation only"),
                     (SWEEP + "colour: red\n", "unknown key"),
                     (SWEEP.replace("{grid: [32, 64]}", "[32, 64]"), "grid"),
                     (SWEEP.replace("1e-3, 1e-2", "1e-2, 1e-3"), "low < high")]:
        p.write_text(bad)
        with pytest.raises(ConfigError, match=msg):
            load_sweep(p)
    shipped = Path(__file__).resolve().parents[1] / "src" / "avgzsl" / "configs" / "sweeps" / "example.yaml"
    assert load_sweep(shipped).num_samples >= 1


def test_without_ray_the_cli_says_what_to_install(monkeypatch, capsys, tmp_path):
    from avgzsl.cli import main
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    assert main(["reproduce", "--executor", "ray", "--dry-run", "--tables", "3", "--datasets", "ucf",
                 "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'pip install "avgzsl[ray]"' in err
    p = tmp_path / "s.yaml"
    p.write_text(SWEEP)
    assert main(["sweep", "--config", str(p), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'pip install "avgzsl[ray]"' in err
