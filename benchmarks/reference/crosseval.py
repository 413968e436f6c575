"""Evaluate a reference checkpoint (its stage-1 `*_score.pt`) with OUR validation code.

    python benchmarks/reference/crosseval.py --data ROOT --ckpt REF_LOG_DIR/ClipClap_model_score.pt \
        [--text-alignment by_name|reference_order] [--label TEXT] [--out results/crosseval.json]

The reference's ClipClap model and ours have the same modules in the same order (56 state_dict tensors), so
its weights load into our model by position. If our validation (candidates, seen/unseen, beta grid, argmin,
per-class means) and our class/text pairing are the reference's, the S/U/HM/ZSL/beta printed here equal the
ones the reference logged for that epoch. --out appends one entry to a JSON list.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--ckpt", type=Path, required=True)
    ap.add_argument("--text-alignment", default="by_name")
    ap.add_argument("--label", default="")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    from avgzsl.config import load_config
    from avgzsl.data import load_benchmark
    from avgzsl.models import build_model
    from avgzsl.protocol import EvalSet
    from avgzsl.train import evaluate

    cfg = load_config(None)
    bench = load_benchmark(a.data, cache=False, text_alignment=a.text_alignment)
    s = bench.splits
    val = EvalSet.build(s["stage_1_val_seen"], s["stage_1_val_unseen"], "cpu")
    text = torch.from_numpy(np.ascontiguousarray(bench.text, dtype=np.float32))
    saved = torch.load(a.ckpt, map_location="cpu", weights_only=False)  # the reference's own file
    model = build_model(cfg.model, cfg.model_cfg, bench.dims)
    keys = list(model.state_dict())
    model.load_state_dict(dict(zip(keys, saved["model"].values())))
    res, _ = evaluate(model, val.data, text, val.class_ids, val.seen_mask, cfg.betas())
    entry = {"label": a.label, "data": a.data.name, "text_alignment": a.text_alignment,
             "reference_epoch": int(saved["epoch"]) - 1,
             "ours_val": {k: v for k, v in res.summary().items() if k != "ausuc"}}
    print(json.dumps(entry))
    if a.out:
        rows = json.loads(a.out.read_text()) if a.out.exists() else []
        rows.append(entry)
        a.out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
