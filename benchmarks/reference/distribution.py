"""Issue 15's acceptance check: reference runs vs our runs as distributions over seeds.

    python benchmarks/reference/distribution.py --ref results/ref_paired_seed{42,1,2}.json \
        --ours results/ours_refmode_paired_seed{42,1,2}.json [--also results/ours_default_paired_seed*.json] \
        --out results/distribution_refmode.json

Per side: the mean (and std) stage-1 validation-HM curve over seeds, the best epochs, the test S/U/HM
mean and std. Then the three criteria of the issue: the mean curves agree within 1.5 HM points on average
over the epochs; the mean best epochs agree within +-1; mean test S/U/HM agree within 2 points or within
one std of the reference's. Runs of the same seed are also compared number by number (max abs difference
over every loss term, validation number and test number), since reference mode is meant to be exact.
`--also` adds a third group (e.g. our default mode) measured against the reference the same way.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path


def _load(paths):
    return [json.loads(Path(p).read_text()) | {"_file": Path(p).name} for p in paths]


def _seed(run) -> int | None:
    for s in run.get("sets", []):
        if s.startswith("seed="):
            return int(s.split("=", 1)[1])
    return run.get("seed")


def _side(runs) -> dict:
    n_ep = min(len(r["stage1"]) for r in runs)
    curves = [[100 * r["stage1"][e]["val"]["hm"] for e in range(n_ep)] for r in runs]
    mean = [statistics.fmean(c[e] for c in curves) for e in range(n_ep)]
    test = {k: [100 * r["test"][k] for r in runs] for k in ("seen", "unseen", "hm", "zsl")}
    sd = (lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0)
    return {"files": [r["_file"] for r in runs], "seeds": [_seed(r) for r in runs],
            "val_hm_curve_mean": [round(x, 4) for x in mean],
            "best_epochs": [r["best_epoch"] for r in runs],
            "best_epoch_mean": statistics.fmean(r["best_epoch"] for r in runs),
            "test": {k: {"mean": round(statistics.fmean(v), 4), "std": round(sd(v), 4), "runs": [round(x, 4) for x in v]}
                     for k, v in test.items()}}


def _numbers(run) -> list[float]:
    out = []
    for st in ("stage1", "stage2"):
        for row in run[st]:
            out += [row["loss"][k] for k in sorted(row["loss"])]
            out += [row["val"][k] for k in sorted(row.get("val", {}))]
    return out + [run["test"][k] for k in sorted(run["test"])] + [run["best_epoch"], run["stage2_epochs"]]


def _against(ref: dict, side: dict, ref_runs, runs) -> dict:
    n = min(len(ref["val_hm_curve_mean"]), len(side["val_hm_curve_mean"]))
    gaps = [abs(a - b) for a, b in zip(ref["val_hm_curve_mean"][:n], side["val_hm_curve_mean"][:n])]
    test = {}
    for k in ("seen", "unseen", "hm"):
        d = side["test"][k]["mean"] - ref["test"][k]["mean"]
        test[k] = {"diff": round(d, 4), "ok": abs(d) <= 2 or abs(d) <= ref["test"][k]["std"]}
    by_seed = {}
    for r in ref_runs:
        mine = [x for x in runs if _seed(x) == _seed(r)]
        if mine:
            a, b = _numbers(r), _numbers(mine[0])
            by_seed[str(_seed(r))] = (max(abs(x - y) for x, y in zip(a, b)) if len(a) == len(b) else "different lengths")
    out = {"val_hm_curve_mean_abs_gap": round(statistics.fmean(gaps), 4),
           "best_epoch_mean_diff": round(side["best_epoch_mean"] - ref["best_epoch_mean"], 4),
           "test": test, "same_seed_max_abs_diff": by_seed}
    out["criteria"] = {"curves_within_1.5": out["val_hm_curve_mean_abs_gap"] <= 1.5,
                       "best_epoch_within_1": abs(out["best_epoch_mean_diff"]) <= 1,
                       "test_within_2_or_1std": all(v["ok"] for v in test.values())}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref", nargs="+", required=True)
    ap.add_argument("--ours", nargs="+", required=True)
    ap.add_argument("--also", nargs="*", default=[])
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    ref_runs, our_runs, also_runs = _load(a.ref), _load(a.ours), _load(a.also)
    ref, ours = _side(ref_runs), _side(our_runs)
    payload = {"reference": ref, "ours": ours, "ours_vs_reference": _against(ref, ours, ref_runs, our_runs)}
    if also_runs:
        also = _side(also_runs)
        payload |= {"also": also, "also_vs_reference": _against(ref, also, ref_runs, also_runs)}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(payload, indent=1) + "\n")
    print(json.dumps({k: v for k, v in payload.items() if k.endswith("vs_reference")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
