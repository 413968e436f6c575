"""Time one MFT training step (forward + backward + Adam) on CPU; writes JSON.

    python benchmarks/mft_step.py [--out benchmarks/results/mft_step.json] [--steps 60]

Each variant: batch 64 of random features, K training classes, `--set`-style model overrides. The number
reported is the median wall time per step after warm-up (ms). docs/method.md quotes these numbers.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from avgzsl.models import Batch, build_model

DIMS = {"clipclap": dict(audio=1024, video=512, text=1536), "main": dict(audio=512, video=512, text=300),
        "cls": dict(audio=128, video=4096, text=300)}

VARIANTS = [  # (label, feature set, temporal T or 0, K classes, model overrides)
    ("default (d256 depth1 h4) K30", "clipclap", 0, 30, {}),
    ("default K207", "clipclap", 0, 207, {}),
    ("d128 depth1 h4", "clipclap", 0, 30, dict(d_model=128)),
    ("d128 depth2 h4", "clipclap", 0, 30, dict(d_model=128, depth=2)),
    ("d256 depth2 h4", "clipclap", 0, 30, dict(depth=2)),
    ("d512 depth1 h8", "clipclap", 0, 30, dict(d_model=512, heads=8)),
    ("d512 depth2 h8", "clipclap", 0, 30, dict(d_model=512, depth=2, heads=8)),
    ("attention=cross", "clipclap", 0, 30, dict(attention="cross")),
    ("attention=none", "clipclap", 0, 30, dict(attention="none")),
    ("modalities=audio", "clipclap", 0, 30, dict(modalities="audio")),
    ("lambda_kl=0 lambda_cos=0", "clipclap", 0, 30, dict(lambda_kl=0.0, lambda_cos=0.0)),
    ("temporal T=16 main dims", "main", 16, 30, {}),
    ("temporal T=60 main dims", "main", 60, 30, {}),
    ("temporal T=60 cross", "main", 60, 30, dict(attention="cross")),
]


def make_batch(dims: dict, B: int, T: int, g: torch.Generator) -> Batch:
    if not T:
        return Batch(torch.randn(B, dims["audio"], generator=g), torch.randn(B, dims["video"], generator=g))
    lengths = torch.randint(T // 2, T + 1, (B,), generator=g)
    mask = torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)
    times = torch.arange(T, dtype=torch.float32).expand(B, T) * mask
    return Batch(torch.randn(B, T, dims["audio"], generator=g) * mask.unsqueeze(-1),
                 torch.randn(B, T, dims["video"], generator=g) * mask.unsqueeze(-1), mask, mask, times, times)


def time_variant(feature_set, T, K, overrides, steps, warmup, bs=64):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    dims = DIMS[feature_set]
    model = build_model("mft", overrides, dict(**dims, temporal=bool(T), feature_set=feature_set))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-5)
    model.train()
    text = torch.randn(K, dims["text"], generator=g)
    batches = [(make_batch(dims, bs, T, g), torch.randint(K, (bs,), generator=g)) for _ in range(4)]
    times = []
    for i in range(warmup + steps):
        batch, y = batches[i % len(batches)]
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss, _ = model.loss(batch, text, y)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    n_params = sum(p.numel() for p in model.parameters())
    return statistics.median(times) * 1e3, n_params


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/results/mft_step.json")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10)
    args = ap.parse_args()
    rows = []
    for label, fs, T, K, over in VARIANTS:
        ms, n = time_variant(fs, T, K, over, args.steps, args.warmup)
        rows.append(dict(variant=label, feature_set=fs, T=T, K=K, overrides=over, ms_per_step=round(ms, 2),
                         params=n, protocol_minutes_12000_steps=round(ms * 12000 / 6e4, 2)))
        print(f"{label:32s} {ms:7.2f} ms/step  {n/1e6:5.2f} M params", flush=True)
    out = dict(torch=torch.__version__, threads=torch.get_num_threads(), machine=platform.machine(),
               processor=platform.processor(), bs=64, rows=rows)
    import os
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
