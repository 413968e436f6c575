"""Time one training step (forward + backward + Adam) of every Table-2 model on CPU; writes JSON.

    python benchmarks/baseline_step.py [--out FILE.json] [--rounds 5] [--steps 5] [--threads 1] [--only NAME...]
    # docs/baselines.md ("Measured training-step times"):
    #   --threads 1 --out benchmarks/results/baseline_step_1thread.json

Batch 64 of random ClipClap-dim features (audio 1024, video 512, text 1536), K = 30 training classes,
default model configs; the variants run in interleaved rounds (mft_step.Runner's steps), so load from
other processes hits all of them alike; ms_per_step is each model's best round MEAN (a round of 5 steps
holds exactly one of fvaegan's generator steps, critic_iter 5, so the mean is its average step).
"""
from __future__ import annotations

import argparse
import statistics

import torch

from _common import write
from mft_step import Runner

from avgzsl.reports import paper


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    ap.add_argument("--steps", type=int, default=5, help="steps per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--only", nargs="*", help="registry names to time (default: every Table-2 model)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from avgzsl.models import list_models
    names = [n for n, _, _ in paper.TABLE2.values() if n in list_models()]
    names = [n for n in names if not args.only or n in args.only]
    runners = []
    for name in names:
        r = Runner(name, "clipclap", 0, 30, {}, False)
        for _ in range(args.warmup):
            r.step()
        runners.append(r)
    means = {name: ([], []) for name in names}
    for _ in range(args.rounds):
        for name, r in zip(names, runners):
            wall, cpu = zip(*(r.step() for _ in range(args.steps)))
            means[name][0].append(statistics.mean(wall))
            means[name][1].append(statistics.mean(cpu))
    rows = []
    for name, r in zip(names, runners):
        wall, cpu = means[name]
        ms, ms_all, cpu_ms = min(wall) * 1e3, statistics.median(wall) * 1e3, min(cpu) * 1e3
        rows.append(dict(model=name, ms_per_step=round(ms, 2), ms_median_of_rounds=round(ms_all, 2),
                         cpu_ms_per_step=round(cpu_ms, 2), params=r.params))
        print(f"{name:12s} {ms:7.2f} ms/step (median of rounds {ms_all:7.2f}, CPU {cpu_ms:7.2f})  "
              f"{r.params / 1e6:5.2f} M params", flush=True)
    path = write("baseline_step", {"batch": 64, "K": 30, "dims": "clipclap", "rows": rows,
                                   "steps": args.steps, "rounds": args.rounds}, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
