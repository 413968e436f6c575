"""Threads and the local executor's parallel runs (threads.py, executors.LocalRunner with jobs > 1)."""
from __future__ import annotations

import os

import pytest
import torch

from avgzsl import threads
from avgzsl.errors import AvgzslError, ConfigError
from avgzsl.executors import LocalRunner
from avgzsl.reproduce import Experiment, Variant


def test_available_cores_is_the_affinity_not_the_machine(monkeypatch):
    assert threads.available_cores() == len(os.sched_getaffinity(0))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)  # as under `taskset -c 3`
    assert threads.available_cores() == 1
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads.default_threads() == 1


@pytest.mark.parametrize("env,expected", [("3", 3), ("", 1), ("zero", 1), ("0", 1)])
def test_omp_num_threads_wins_when_it_is_a_count(monkeypatch, env, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", env)
    assert threads.default_threads() == expected


def test_set_threads_sets_torch_and_refuses_nonsense():
    before = torch.get_num_threads()
    try:
        assert threads.set_threads(1) == 1 and torch.get_num_threads() == 1
        for bad in (0, -2, 1.5, True, "2"):
            with pytest.raises(ConfigError, match="--threads"):
                threads.set_threads(bad)
    finally:
        torch.set_num_threads(before)


def test_local_jobs(monkeypatch):
    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads.local_jobs("auto", "cpu", 10) == (4, 1)
    assert threads.local_jobs("auto", "cpu", 3) == (3, 1)  # never more workers than runs
    assert threads.local_jobs("auto", "cpu", 10, threads=2) == (2, 2)
    assert threads.local_jobs("auto", "cuda", 10) == (1, 4)  # runs would share the one GPU
    assert threads.local_jobs("2", "cpu", 10) == (2, 2)
    assert threads.local_jobs(1, "cpu", 10) == (1, 4)
    for bad in ("many", 0, "-1"):
        with pytest.raises(ConfigError, match="--jobs"):
            threads.local_jobs(bad, "cpu", 10)


def _experiments(tmp_path, n):
    return [Experiment("ucf", Variant(f"v{i}", "mft"), 0, tmp_path, tmp_path / f"run{i}") for i in range(n)]


def record_worker(exp, device, progress):
    """A stand-in for run_experiment (module level: a spawned worker imports it). run1 fails once, run2
    always, run9 is a user error; every call appends its pid and torch threads to the run's .tries file."""
    tries = exp.out.with_suffix(".tries")
    with open(tries, "a") as f:
        f.write(f"{os.getpid()} {torch.get_num_threads()}\n")
    n = len(tries.read_text().splitlines())
    i = int(exp.out.name[3:])
    if i == 9:
        raise AvgzslError("bad data")
    if (i == 1 and n == 1) or i == 2:
        raise RuntimeError(f"boom {i}")


def test_parallel_local_runner_runs_in_workers_at_their_threads_and_retries_once(tmp_path):
    exps = _experiments(tmp_path, 4)
    failures = LocalRunner(progress=False, fn=record_worker, jobs=2, threads=1)(exps, "cpu")
    calls = {e.out.name: [line.split() for line in e.out.with_suffix(".tries").read_text().splitlines()]
             for e in exps}
    assert {k: len(v) for k, v in calls.items()} == {"run0": 1, "run1": 2, "run2": 2, "run3": 1}
    pids = {pid for v in calls.values() for pid, _ in v}
    assert str(os.getpid()) not in pids and 1 <= len(pids) <= 2  # worker processes, at most `jobs` of them
    assert {t for v in calls.values() for _, t in v} == {"1"}
    assert [(e.out.name, msg) for e, msg in failures] == [("run2", "RuntimeError: boom 2")]


def test_parallel_local_runner_stops_on_a_user_error(tmp_path):
    exps = _experiments(tmp_path, 10)[8:]  # run8 works, run9 is bad data
    with pytest.raises(AvgzslError, match="bad data"):
        LocalRunner(progress=False, fn=record_worker, jobs=2, threads=1)(exps, "cpu")
    assert len((tmp_path / "run9.tries").read_text().splitlines()) == 1  # never retried


def test_parallel_reproduce_is_bit_identical_to_one_thread_sequential(tmp_path, monkeypatch):
    from avgzsl.executors import make_runner
    from avgzsl.reproduce import reproduce

    kw = dict(datasets=["ucf"], tables=[3], seeds=[0], synthetic_scale=0.1, cache=tmp_path / "cache",
              extra_sets=("epochs=2", "n_batches=4", "bs=16", "eval_bs=512"), progress=False)
    monkeypatch.setenv("AVGZSL_CACHE", str(tmp_path / "cache"))  # the spawned workers read the same cache
    before = torch.get_num_threads()
    try:
        reproduce(out=tmp_path / "par", runner=make_runner("local", progress=False, jobs=2, threads=1), **kw)
        reproduce(out=tmp_path / "seq", runner=make_runner("local", progress=False, jobs=1, threads=1), **kw)
    finally:
        torch.set_num_threads(before)
    seq = sorted((tmp_path / "seq").glob("ucf/*/seed*/results.json"))
    assert len(seq) == 2  # MFT and w/o attention
    for f in seq:
        assert (tmp_path / "par" / f.relative_to(tmp_path / "seq")).read_bytes() == f.read_bytes(), f


def sleeper(exp, device, progress):
    exp.out.with_suffix(".pid").write_text(str(os.getpid()))
    import time
    time.sleep(120)


def test_workers_die_with_a_killed_parent(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from avgzsl.io import pid_alive

    code = ("import sys; sys.path.insert(0, %r)\n"
            "from pathlib import Path\n"
            "from test_local_jobs import _experiments, sleeper\n"
            "from avgzsl.executors import LocalRunner\n"
            "LocalRunner(progress=False, fn=sleeper, jobs=2, threads=1)(_experiments(Path(%r), 2), 'cpu')\n"
            % (os.path.dirname(__file__), str(tmp_path)))
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid_files = [tmp_path / "run0.pid", tmp_path / "run1.pid"]
    deadline = time.time() + 120
    while not all(f.exists() and f.read_text() for f in pid_files) and time.time() < deadline:
        time.sleep(0.05)
    workers = [int(f.read_text()) for f in pid_files]
    assert all(pid_alive(w) for w in workers)
    p.send_signal(signal.SIGKILL)
    p.wait()
    deadline = time.time() + 10
    while any(pid_alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(pid_alive(w) for w in workers)
