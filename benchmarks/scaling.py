"""How a training epoch and a validation pass scale with the dataset size and the class count.

    python benchmarks/scaling.py [--model mft] [--scales 0.25,0.5,1,2,4] [--batches 100]

Training draws a fixed number of batches per epoch, so its cost should stay flat as the number of stored
videos grows; evaluation visits every video, so it should grow linearly. The class-count sweep uses the
UCF-, ActivityNet- and VGGSound-like shapes (30 / 99 / 138 training classes) at one scale.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def single(model_name: str, like: str, scale: float, batches: int) -> dict:
    from avgzsl.config import resolve_config
    from avgzsl.config import load_config
    from avgzsl.data import load_benchmark
    from avgzsl.data.sampler import ClassBalancedSampler
    from avgzsl.models import build_model
    from avgzsl.protocol import EvalSet, _local_index
    from avgzsl.train import SplitTensors, evaluate, train_one_epoch
    cfg = load_config(resolve_config(f"{model_name}_{like}"))
    bench = load_benchmark(_common.synthetic(like, scale))
    s = bench.splits
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.model_cfg, bench.dims)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=cfg.fused_adam)
    train = s["stage_1_train"]
    data = SplitTensors.from_split(train)
    text = torch.from_numpy(bench.text)
    classes = train.classes
    sampler = ClassBalancedSampler(train.labels, batches, cfg.bs, 0)
    args = (text[torch.as_tensor(classes)], _local_index(len(bench.class_names), classes, "cpu"))
    train_one_epoch(model, opt, data, sampler.epoch()[:10], *args)  # warm-up
    t = time.perf_counter()
    train_one_epoch(model, opt, data, sampler.epoch(), *args)
    train_s = time.perf_counter() - t
    val = EvalSet.build(s["stage_1_val_seen"], s["stage_1_val_unseen"], "cpu")
    t = time.perf_counter()
    evaluate(model, val.data, text, val.class_ids, val.seen_mask, cfg.betas(), cfg.eval_bs)
    eval_s = time.perf_counter() - t
    return {"model": model_name, "like": like, "scale": scale, "train_videos": len(train),
            "train_classes": len(classes), "val_videos": len(val.data), "batches": batches, "bs": cfg.bs,
            "train_epoch_s": round(train_s, 3), "train_ms_per_batch": round(1000 * train_s / batches, 2),
            "eval_s": round(eval_s, 3), "eval_us_per_video": round(1e6 * eval_s / len(val.data), 2),
            "peak_rss_mib": round(_common.peak_rss_mib(), 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mft")
    ap.add_argument("--scales", default="0.25,0.5,1,2,4")
    ap.add_argument("--batches", type=int, default=100)
    ap.add_argument("--single", nargs=3)
    ap.add_argument("--out")
    a = ap.parse_args()
    if a.single:
        m, like, scale = a.single
        print(json.dumps(single(m, like, float(scale), a.batches)))
        return
    size, classes = [], []
    for sc in map(float, a.scales.split(",")):
        r = _common.in_subprocess(__file__, "--single", a.model, "ucf", str(sc), "--batches", str(a.batches))
        size.append(r)
        print(f"ucf x{sc:<5g} {r['train_videos']:6d} train videos: {r['train_ms_per_batch']:.1f} ms/batch, "
              f"eval {r['eval_s']:.3f}s for {r['val_videos']} videos, peak {r['peak_rss_mib']:.0f} MiB", flush=True)
    for like in ("ucf", "activitynet", "vggsound"):
        r = _common.in_subprocess(__file__, "--single", a.model, like, "0.25", "--batches", str(a.batches))
        classes.append(r)
        print(f"{like:12s} {r['train_classes']:3d} classes: {r['train_ms_per_batch']:.1f} ms/batch, "
              f"eval {r['eval_us_per_video']:.1f} us/video", flush=True)
    ms = np.array([r["train_ms_per_batch"] for r in size])
    us = np.array([r["eval_us_per_video"] for r in size])
    summary = {"train_ms_per_batch_max_over_min": round(float(ms.max() / ms.min()), 3),
               "eval_us_per_video_max_over_min": round(float(us.max() / us.min()), 3)}
    print(summary)
    print(f"wrote {_common.write('scaling', {'by_size': size, 'by_classes': classes, 'summary': summary}, a.out)}")


if __name__ == "__main__":
    main()
