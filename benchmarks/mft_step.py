"""Time one MFT training step (forward + backward + Adam) on CPU; writes JSON.

    python benchmarks/mft_step.py [--out FILE.json] [--rounds 6] [--steps 15] [--threads N] [--only LABEL...]
    # docs/method.md: --threads 1 --rounds 6 --steps 10 --out benchmarks/results/mft_step_1thread.json

Each variant: batch 64 of random features, K training classes, `--set`-style model overrides. The machine is
shared, so the variants run in interleaved rounds of `--steps` steps; ms_per_step is a variant's best
round median (least disturbed), ms_median_of_rounds the median over its rounds, cpu_ms_per_step the
best round median of this process's CPU time (robust to other processes when run with --threads 1).
docs/method.md quotes these numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch

from avgzsl.models import Batch, build_model

DIMS = {"clipclap": dict(audio=1024, video=512, text=1536), "main": dict(audio=512, video=512, text=300),
        "cls": dict(audio=128, video=4096, text=300)}

VARIANTS = [  # (label, model, feature set, temporal T or 0, K classes, model overrides, adam foreach)
    ("clipclap baseline (reference)", "clipclap", "clipclap", 0, 30, {}, False),
    ("MFT default: d128 depth2 h4 mlp2", "mft", "clipclap", 0, 30, {}, False),
    ("default, K=207 (VGGSound stage 2)", "mft", "clipclap", 0, 207, {}, False),
    ("default, Adam(foreach=True)", "mft", "clipclap", 0, 30, {}, True),
    ("text_branch=shared", "mft", "clipclap", 0, 30, dict(text_branch="shared"), False),
    ("text_branch=shared, K=207", "mft", "clipclap", 0, 207, dict(text_branch="shared"), False),
    ("d128 depth1", "mft", "clipclap", 0, 30, dict(depth=1), False),
    ("d128 depth2 mlp4", "mft", "clipclap", 0, 30, dict(mlp_ratio=4.0), False),
    ("d256 depth1 h4", "mft", "clipclap", 0, 30, dict(d_model=256, depth=1), False),
    ("d256 depth2 h4", "mft", "clipclap", 0, 30, dict(d_model=256), False),
    ("d512 depth2 h8", "mft", "clipclap", 0, 30, dict(d_model=512, heads=8), False),
    ("attention=cross", "mft", "clipclap", 0, 30, dict(attention="cross"), False),
    ("attention=none", "mft", "clipclap", 0, 30, dict(attention="none"), False),
    ("modalities=audio", "mft", "clipclap", 0, 30, dict(modalities="audio"), False),
    ("modalities=video", "mft", "clipclap", 0, 30, dict(modalities="video"), False),
    ("lambda_kl=0 lambda_cos=0", "mft", "clipclap", 0, 30, dict(lambda_kl=0.0, lambda_cos=0.0), False),
    ("temporal T=16, main dims", "mft", "main", 16, 30, {}, False),
    ("temporal T=60, main dims", "mft", "main", 60, 30, {}, False),
    ("temporal T=60, attention=none", "mft", "main", 60, 30, dict(attention="none"), False),
]


def make_batch(dims: dict, B: int, T: int, g: torch.Generator) -> Batch:
    if not T:
        return Batch(torch.randn(B, dims["audio"], generator=g), torch.randn(B, dims["video"], generator=g))
    lengths = torch.randint(T // 2, T + 1, (B,), generator=g)
    mask = torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)
    times = torch.arange(T, dtype=torch.float32).expand(B, T) * mask
    return Batch(torch.randn(B, T, dims["audio"], generator=g) * mask.unsqueeze(-1),
                 torch.randn(B, T, dims["video"], generator=g) * mask.unsqueeze(-1), mask, mask, times, times)


class Runner:
    """One variant's model, optimiser and fixed batches; `round(steps)` times `steps` training steps."""

    def __init__(self, name, feature_set, T, K, overrides, foreach, bs=64):
        torch.manual_seed(0)
        g = torch.Generator().manual_seed(0)
        dims = DIMS[feature_set]
        self.model = build_model(name, overrides, dict(**dims, temporal=bool(T), feature_set=feature_set))
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-4, weight_decay=1e-5, foreach=foreach)
        self.model.train()
        self.text = torch.randn(K, dims["text"], generator=g)
        self.batches = [(make_batch(dims, bs, T, g), torch.randint(K, (bs,), generator=g)) for _ in range(4)]
        self.params = sum(p.numel() for p in self.model.parameters())
        self.medians: list[float] = []
        self.cpu_medians: list[float] = []
        self.i = 0

    def step(self) -> tuple[float, float]:
        """(wall seconds, CPU seconds of this process) of one training step."""
        batch, y = self.batches[self.i % len(self.batches)]
        self.i += 1
        t0, c0 = time.perf_counter(), time.process_time()
        self.opt.zero_grad(set_to_none=True)
        loss, _ = self.model.loss(batch, self.text, y)
        loss.backward()
        self.opt.step()
        return time.perf_counter() - t0, time.process_time() - c0

    def gflop(self) -> float:
        """Matmul/attention FLOPs of one forward + backward (torch's FlopCounterMode; not Adam)."""
        from torch.utils.flop_counter import FlopCounterMode
        batch, y = self.batches[0]
        with FlopCounterMode(display=False) as counter:
            self.model.loss(batch, self.text, y)[0].backward()
        self.opt.zero_grad(set_to_none=True)
        return counter.get_total_flops() / 1e9

    def round(self, steps: int) -> None:
        wall, cpu = zip(*(self.step() for _ in range(steps)))
        self.medians.append(statistics.median(wall))
        self.cpu_medians.append(statistics.median(cpu))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/results/mft_step.json")
    ap.add_argument("--steps", type=int, default=15, help="steps per round")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--only", nargs="*", help="run only variants whose label contains one of these")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    chosen = [v for v in VARIANTS if not args.only or any(o in v[0] for o in args.only)]
    runners = []
    for label, name, fs, T, K, over, foreach in chosen:
        r = Runner(name, fs, T, K, over, foreach)
        for _ in range(args.warmup):
            r.step()
        r.gflop_per_step = r.gflop()
        runners.append(r)
    # rounds interleave the variants, so a burst of load from other processes hits all of them alike;
    # the reported number is each variant's best round (least disturbed)
    for _ in range(args.rounds):
        for r in runners:
            r.round(args.steps)
    rows = []
    for (label, name, fs, T, K, over, foreach), r in zip(chosen, runners):
        ms, ms_all = min(r.medians) * 1e3, statistics.median(r.medians) * 1e3
        cpu_ms = min(r.cpu_medians) * 1e3
        rows.append(dict(variant=label, model=name, feature_set=fs, T=T, K=K, overrides=over,
                         adam_foreach=foreach, ms_per_step=round(ms, 2), ms_median_of_rounds=round(ms_all, 2),
                         cpu_ms_per_step=round(cpu_ms, 2),
                         params=r.params, gflop_per_step=round(r.gflop_per_step, 3),
                         protocol_minutes_12000_steps=round(ms * 12000 / 6e4, 2)))
        print(f"{label:36s} {ms:7.2f} ms/step (median of rounds {ms_all:7.2f}, CPU {cpu_ms:7.2f})"
              f"  {r.gflop_per_step:6.3f} GFLOP"
              f"  {r.params/1e6:5.2f} M params",
              flush=True)
    out = dict(torch=torch.__version__, threads=torch.get_num_threads(), machine=platform.machine(),
               processor=platform.processor(), bs=64, steps_per_round=args.steps, rounds=args.rounds,
               loadavg_after=os.getloadavg(), rows=rows)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
