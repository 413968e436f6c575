"""Profile training batches of a preset (torch profiler, CPU): where the time goes.

    python benchmarks/profile_epoch.py [--model mft] [--batches 50]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mft")
    ap.add_argument("--batches", type=int, default=50)
    ap.add_argument("--rows", type=int, default=18)
    a = ap.parse_args()
    from avgzsl.config import resolve_config
    from avgzsl.config import load_config
    from avgzsl.data import load_benchmark
    from avgzsl.data.sampler import ClassBalancedSampler
    from avgzsl.models import build_model
    from avgzsl.protocol import _local_index
    from avgzsl.train import SplitTensors, train_one_epoch
    cfg = load_config(resolve_config(f"{a.model}_ucf"))
    bench = load_benchmark(_common.synthetic("ucf", 1.0))
    train = bench.splits["stage_1_train"]
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.model_cfg, bench.dims)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=cfg.fused_adam)
    data = SplitTensors.from_split(train)
    text = torch.from_numpy(bench.text)
    args = (text[torch.as_tensor(train.classes)], _local_index(len(bench.class_names), train.classes, "cpu"))
    sampler = ClassBalancedSampler(train.labels, a.batches, cfg.bs, 0)
    train_one_epoch(model, opt, data, sampler.epoch()[:10], *args)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        train_one_epoch(model, opt, data, sampler.epoch(), *args)
    print(f"{a.model}, {a.batches} batches of {cfg.bs}, {torch.get_num_threads()} thread(s)")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=a.rows, max_name_column_width=38))


if __name__ == "__main__":
    main()
