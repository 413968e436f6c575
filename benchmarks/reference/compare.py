"""Side-by-side tables of runs written by run_reference.py / run_ours.py (Markdown on stdout).

    python benchmarks/reference/compare.py results/A.json results/B.json [...] [--terms total,ce,reg,rec]

Tables: the headline (best epoch, stage-2 epochs, chosen beta, test S/U/HM/ZSL); per stage-1 epoch the val
HM of every run (and S/U/beta, lr, and the training-loss terms, one table each); stage 2 (lr and loss terms
per epoch). Numbers are percent for S/U/HM/ZSL, raw for losses, beta and lr.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _pct(x):
    return "" if x is None else f"{100 * x:.2f}"


def _f(x, nd=4):
    return "" if x is None else (f"{x:.{nd}g}" if abs(x) < 1e-3 and x else f"{x:.{nd}f}")


def table(header, rows) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--terms", default="total,ce,reg,rec")
    ap.add_argument("--short", action="store_true", help="headline and val HM per epoch only")
    a = ap.parse_args(argv)
    runs = [json.loads(p.read_text()) for p in a.runs]
    names = [r.get("label") or p.stem for r, p in zip(runs, a.runs)]
    tags = [f"R{i + 1}" for i in range(len(runs))]
    print("Runs: " + "; ".join(f"**{t}** = {n} ({r['impl']})" for t, n, r in zip(tags, names, runs)) + "\n")
    rows = []
    for t, r in zip(tags, runs):
        te, tv = r.get("test", {}), r.get("test_val", {})
        best = r["best_epoch"]
        rows.append([t, best, r["stage2_epochs"], _pct(tv.get("hm")), _f(te.get("beta"), 3), _pct(te.get("seen")),
                     _pct(te.get("unseen")), _pct(te.get("hm")), _pct(te.get("zsl"))])
    print(table(["run", "best epoch (0-based)", "stage-2 epochs", "val HM at best", "beta", "test S", "test U",
                 "test HM", "test ZSL"], rows) + "\n")

    def per_epoch(title, fn, stage="stage1"):
        m = max(len(r[stage]) for r in runs)
        rows = []
        for e in range(m):
            rows.append([e] + [fn(r[stage][e]) if e < len(r[stage]) else "" for r in runs])
        print(f"**{title}**\n\n" + table(["epoch"] + tags, rows) + "\n")

    per_epoch("stage 1: val HM (%)", lambda x: _pct(x.get("val", {}).get("hm")))
    if a.short:
        return 0
    per_epoch("stage 1: val S / U (%)", lambda x: f"{_pct(x['val']['seen'])} / {_pct(x['val']['unseen'])}"
              if "val" in x else "")
    per_epoch("stage 1: val beta", lambda x: _f(x.get("val", {}).get("beta"), 3))
    per_epoch("stage 1: lr", lambda x: "" if x.get("lr") is None else f"{x['lr']:.0e}")
    for term in a.terms.split(","):
        per_epoch(f"stage 1: training loss `{term}`", lambda x, t=term: _f(x["loss"].get(t)))
    per_epoch("stage 2: lr", lambda x: "" if x.get("lr") is None else f"{x['lr']:.0e}", "stage2")
    for term in a.terms.split(","):
        per_epoch(f"stage 2: training loss `{term}`", lambda x, t=term: _f(x["loss"].get(t)), "stage2")
    per_epoch("stage 2: HM (%) on the validation set (trained on in stage 2)",
              lambda x: _pct(x.get("val", {}).get("hm")), "stage2")
    return 0


if __name__ == "__main__":
    sys.exit(main())
