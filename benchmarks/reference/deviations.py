"""How much each reference behaviour moves S/U/HM: reference mode, reference mode with one behaviour
turned back to ours (`reference_off=[name]`), and our default, on one dataset root, one seed.

    python benchmarks/reference/deviations.py --data ROOT --out results/deviations_ucf.json \
        [--config clipclap_ucf] [--set epochs=10 --set n_batches=100] [--threads 1]

Behaviours whose code path a run does not reach (modality ablations, batch_norm=false, CJME's modes, a
stage-2 list that agrees with the stage-1 lists) are listed as such, not run: turning them off cannot
change a number there. best_epoch_rule only acts while validation HM is 0: `val_hm_per_epoch` shows it. Each variant is one run of the whole protocol (Python API,
no run folder); the JSON keeps every run's validation and test numbers and its wall time.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

EXERCISED = ["text_pairing", "per_tensor_adam", "rng_stream", "call_order", "double_bn", "metric_arithmetic",
             "stage2_scheduler"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--config", default="clipclap_ucf")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)

    import torch
    torch.set_num_threads(a.threads)
    from avgzsl.config import REFERENCE_BEHAVIOURS, load_config, resolve_config
    from avgzsl.data import load_benchmark
    from avgzsl.protocol import run_protocol

    variants = [("ours (default)", [])] + [("reference mode", ["reference_mode=true"])]
    variants += [(f"reference mode, {b} ours", ["reference_mode=true", f"reference_off=[{b}]"]) for b in EXERCISED]
    rows, benches = [], {}
    for label, extra in variants:
        cfg = load_config(resolve_config(a.config), a.set + extra)
        if cfg.text_alignment not in benches:
            benches[cfg.text_alignment] = load_benchmark(a.data, cache=False, split=cfg.split,
                                                         feature_dir=cfg.feature_dir, text_alignment=cfg.text_alignment)
        t0 = time.perf_counter()
        epochs = []
        r = run_protocol(cfg, benches[cfg.text_alignment], on_epoch=epochs.append)
        row = {"variant": label, "sets": extra, "best_epoch": r["best_epoch"], "stage2_epochs": r["stage2_epochs"],
               "val": {k: round(100 * r["val"][k], 2) for k in ("seen", "unseen", "hm")},
               "test": {k: round(100 * r["test"][k], 2) for k in ("seen", "unseen", "hm", "zsl")},
               "beta": r["val"]["beta"], "val_hm_per_epoch": [round(100 * e["val"]["hm"], 2) for e in epochs],
               "wall_s": round(time.perf_counter() - t0, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    payload = {"data": a.data.name, "config": a.config, "sets": a.set, "threads": a.threads, "runs": rows,
               "not_run": sorted(set(REFERENCE_BEHAVIOURS) - set(EXERCISED))}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(payload, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
