"""How many CPU threads a run uses, and how many runs the local executor runs at once (issue 21).

    available_cores()            cores this process may run on (its CPU affinity: taskset, cgroup cpusets)
    default_threads()            OMP_NUM_THREADS when it is set, else available_cores()
    set_threads(n)               torch's intra-op threads = n (None: default_threads()); returns n
    local_jobs(jobs, device, n)  runs at once for the local executor, and torch threads per run

Why: torch sizes its thread pool from the machine's cores, not from the cores this process is allowed to
use, so under `taskset -c 0` or a container's cpuset it starts more threads than it has cores and they
wait on one another; and OpenMP threads of one run spin on the cores another process needs (a
2-thread run slowed about 10x when another process was busy on the second core: docs/scaling.md). On
the small matrices of these models one thread per run with the runs side by side beats one run on every
core (benchmarks/results/local_jobs.json), so `jobs="auto"` on a CPU runs min(cores, runs) at a time,
one thread each. Our choice, with its switches `--jobs` and `--threads`.

The thread count changes torch's CPU reductions, so a run's last digits depend on it; env.json records
the threads each run used.
"""
from __future__ import annotations

import os

from .errors import ConfigError


def available_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)  # macOS and Windows have no affinity call


def default_threads() -> int:
    """OMP_NUM_THREADS when set (the user's explicit choice for this shell), else every available core."""
    raw = os.environ.get("OMP_NUM_THREADS", "").strip()
    if raw:
        try:
            n = int(raw)
        except ValueError:
            n = 0
        if n >= 1:
            return n
    return available_cores()


def check_threads(n, where: str = "--threads") -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"{where} must be an integer >= 1, got {n!r}")
    return n


def set_threads(n: int | None = None) -> int:
    import torch

    n = default_threads() if n is None else check_threads(n)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def local_jobs(jobs: int | str, device: str, n_runs: int, threads: int | None = None) -> tuple[int, int]:
    """(runs at once, torch threads per run) for the local executor.

    jobs "auto": on a CPU min(available cores, runs) at a time with one thread each (threads, if given,
    fixes the threads per run and auto then fits cores // threads runs); on a GPU one run at a time (the
    runs would share one device). An explicit jobs J gets threads // or cores // J threads each."""
    cores = available_cores()
    if jobs == "auto":
        if not device.startswith("cpu"):
            return 1, threads or default_threads()
        per_run = threads or 1
        return max(1, min(cores // per_run, n_runs)), per_run
    if isinstance(jobs, str):
        try:
            jobs = int(jobs)
        except ValueError:
            raise ConfigError(f"--jobs must be an integer >= 1 or auto, got {jobs!r}") from None
    jobs = check_threads(jobs, "--jobs")
    return jobs, threads or (max(1, cores // jobs) if jobs > 1 else default_threads())


__all__ = ["available_cores", "default_threads", "set_threads", "local_jobs", "check_threads"]
