"""Packed runs (pack.py) against solo runs: k seeds of one preset in one stacked model vs one solo run.

    python benchmarks/pack.py [--models clipclap,mft] [--ks 2,3,4,6] [--set epochs=3 --set n_batches=100]
                              [--threads N] [--device cpu] [--scale 1.0]

For each model's UCF preset (`<model>_ucf`, synthetic UCF-like data at --scale, the settings given to
every run), in one process, one after another: one solo run (`run_protocol`, seed 0), then for each k a
pack of seeds 0..k-1 (`pack.run_packed`, the whole protocol: stage 1, stage 2, test), each from its
first step to its last result. Reports the wall seconds, `ratio` = pack wall / solo wall (the issue's
bound: <= 1.5 for k = 3), `per_run` = ratio / k (< 1: packing beats running the k seeds one after
another) and the pack's vmapped/solo step counts. The solo run is repeated at the end (`solo_again`)
so a drifting machine shows. Writes benchmarks/results/pack_<device>.json.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="clipclap,mft")
    ap.add_argument("--ks", default="2,3,4,6")
    ap.add_argument("--set", action="append", default=[], help="run settings (default: epochs=3, n_batches=100)")
    ap.add_argument("--threads", type=int, help="torch threads (default: threads.default_threads)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--out")
    a = ap.parse_args()
    sets = a.set or ["epochs=3", "n_batches=100"]

    import torch
    from avgzsl import pack as packing
    from avgzsl.config import load_config, resolve_config
    from avgzsl.data import load_benchmark
    from avgzsl.protocol import run_protocol
    from avgzsl.threads import set_threads
    threads = set_threads(a.threads)
    root = _common.synthetic("ucf", a.scale)
    rows = {}
    for model in a.models.split(","):
        cfg0 = load_config(resolve_config(f"{model}_ucf"), sets + ["logger=none"])
        bench = load_benchmark(root, cache=False, split=cfg0.split, feature_dir=cfg0.feature_dir,
                               text_alignment=cfg0.text_alignment)

        def cfgs(k):
            return [load_config(resolve_config(f"{model}_ucf"), sets + ["logger=none", f"seed={s}"]) for s in range(k)]

        def solo():
            t = time.perf_counter()
            r = run_protocol(cfgs(1)[0], bench, None, device=a.device)
            return round(time.perf_counter() - t, 2), r["test"]["hm"]

        run_protocol(load_config(resolve_config(f"{model}_ucf"), ["epochs=1", "n_batches=2", "logger=none"]),
                     bench, None, device=a.device, stages=0)  # warm-up: kernels, allocator
        solo_s, solo_hm = solo()
        row = {"solo_s": solo_s, "solo_test_hm": round(100 * solo_hm, 2), "packs": {}}
        print(model, "solo", solo_s, flush=True)
        for k in (int(x) for x in a.ks.split(",")):
            stats: dict = {}
            t = time.perf_counter()
            res = packing.run_packed(cfgs(k), bench, device=a.device, stats=stats)
            wall = round(time.perf_counter() - t, 2)
            row["packs"][str(k)] = {"wall_s": wall, "ratio": round(wall / solo_s, 3),
                                    "per_run": round(wall / solo_s / k, 3), **stats,
                                    "test_hm": [round(100 * r["test"]["hm"], 2) for r in res]}
            print(model, k, row["packs"][str(k)], flush=True)
        row["solo_again_s"] = solo()[0]
        rows[model] = row
    payload = {"sets": sets, "scale": a.scale, "device": a.device, "threads": threads,
               "torch": torch.__version__, "models": rows}
    print(_common.write(f"pack_{a.device.split(':')[0]}", payload, a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
