"""The local executor: one run at a time on every core vs one run per core at 1 thread, idle and contended.

    python benchmarks/local_jobs.py [--runs 4] [--set epochs=4 --set n_batches=50] [--scale 0.25]

Times `avgzsl reproduce --tables 3 --datasets ucf` (MFT and MFT w/o attention, `--runs / 2` seeds each,
synthetic UCF-like data) as a whole command, from a fresh output folder each time:

- `jobs1`: `--jobs 1` (the runs one after another, torch at the default threads: every available core);
- `jobs1_threads1`: `--jobs 1 --threads 1` (one after another at 1 thread);
- `jobsN`: `--jobs auto` (threads.local_jobs: one run per available core, 1 thread each);

each once on the idle machine and once while another process keeps one core busy (`contended`: a Python
busy loop, started before and stopped after the command). Writes benchmarks/results/local_jobs.json
(wall seconds per configuration and the ratios). The synthetic data are made once, before any timing.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def _busy(stop) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def timed(cmd: list[str], env: dict, contended: bool) -> float:
    stop, hog = None, None
    if contended:
        stop = mp.Event()
        hog = mp.Process(target=_busy, args=(stop,), daemon=True)
        hog.start()
        time.sleep(1.0)  # the hog is on its core before the command starts
    try:
        t = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - t
    finally:
        if hog is not None:
            stop.set()
            hog.join(5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=4, help="runs per reproduce (2 variants x runs/2 seeds)")
    ap.add_argument("--scale", type=float, default=0.25)
    ap.add_argument("--set", action="append", default=[], help="run settings (default: epochs=4, n_batches=50)")
    ap.add_argument("--out")
    a = ap.parse_args()
    sets = a.set or ["epochs=4", "n_batches=50"]
    seeds = ",".join(str(s) for s in range(max(1, a.runs // 2)))
    from avgzsl.threads import available_cores, local_jobs
    cores = available_cores()
    auto = local_jobs("auto", "cpu", a.runs)
    tmp = Path(tempfile.mkdtemp(prefix="avgzsl-jobs-"))
    env = {**os.environ, "AVGZSL_CACHE": str(tmp / "cache")}
    env.pop("OMP_NUM_THREADS", None)  # the defaults under test decide the threads
    base = [sys.executable, "-m", "avgzsl.cli", "reproduce", "--tables", "3", "--datasets", "ucf", "--seeds", seeds,
            "--synthetic-scale", str(a.scale), "--quiet", *[x for s in sets for x in ("--set", s)]]
    try:
        subprocess.run([sys.executable, "-c", f"from avgzsl.data.synthetic import synthetic_root; "
                        f"synthetic_root('ucf', {a.scale}, 0)"], env=env, check=True)
        wall = {}
        for contended in (False, True):
            for name, flags in (("jobs1", ["--jobs", "1"]), ("jobs1_threads1", ["--jobs", "1", "--threads", "1"]),
                                ("jobsN", ["--jobs", "auto"])):
                out = tmp / f"{name}-{contended}"
                shutil.rmtree(out, ignore_errors=True)
                key = f"{name}{'_contended' if contended else ''}"
                wall[key] = round(timed(base + [*flags, "--out", str(out)], env, contended), 2)
                print(key, wall[key], flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    payload = {"runs": a.runs, "sets": sets, "scale": a.scale, "available_cores": cores,
               "auto_jobs_threads": list(auto), "wall_s": wall,
               "speedup_idle": round(wall["jobs1"] / wall["jobsN"], 3),
               "speedup_contended": round(wall["jobs1_contended"] / wall["jobsN_contended"], 3),
               # how much slower a run is beside another than alone, both at 1 thread (the dry run's T / J
               # assumes 1.0): jobs = auto's wall x runs at once / the 1-thread sequential wall
               "slowdown_side_by_side": round(wall["jobsN"] * auto[0] / wall["jobs1_threads1"], 3)}
    print(_common.write("local_jobs", payload, a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
