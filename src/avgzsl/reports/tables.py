"""The paper's tables from finished runs: our mean ± std over seeds beside the paper's value.

Layout as in the paper: one row per method, columns = datasets × (S, U, HM, ZSL), in percent. Below each
of our rows, the paper's number and the difference (ours − paper). Std is the sample standard deviation
over seeds (ddof=1; 0 for a single seed). `exps` are the runs of `avgzsl reproduce` (src/avgzsl/reproduce.py's
Experiment: any object with dataset, variant.key, seed, out (its run folder) and done).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from ..io import write_text
from ..models import list_models
from ..runfolder import RunFolder
from . import paper

NOT_IMPLEMENTED = "not implemented"
OTHER_FEATURES = "paper number from other features (not a † row)"


def _results(exps, dataset: str, key: str) -> list[dict]:
    out = []
    for e in exps:
        if e.dataset == dataset and e.variant.key == key and e.done:
            out.append(RunFolder(e.out).read_results())
    return out


def _paper_rows(table: int) -> dict:
    return {2: {k: v[2] for k, v in paper.TABLE2.items()}, 3: paper.TABLE3, 4: paper.TABLE4, 5: paper.TABLE5}[table]


def format_mean_std(mean: float, std: float, n: int, n_planned: int | None = None) -> str:
    """"m ± s" over n ≥ 2 values ("(n=k)" when fewer than planned finished); "m (1 seed)" for one value,
    whose spread is unknown (never "± 0.00")."""
    if n == 1:
        return f"{mean:.2f} (1 seed)"
    return f"{mean:.2f} ± {std:.2f}" + (f" (n={n})" if n_planned is not None and n < n_planned else "")


def summarize(results: list[dict]) -> dict[str, tuple[float, float, int]]:
    out = {}
    for m in paper.METRICS:
        vals = np.array([100 * r["test"][m] for r in results], dtype=float)
        out[m] = (float(vals.mean()) if len(vals) else float("nan"),
                  float(vals.std(ddof=1)) if len(vals) > 1 else 0.0, len(vals))
    return out


def build_table(table: int, exps, datasets: list[str]) -> tuple[list[str], list[list[str]], list[dict]]:
    """(header, markdown rows, csv records) for one table."""
    order = [d for d in paper.DATASETS if d in datasets]
    header = ["method"] + [f"{paper.DATASET_TITLES[d]} {paper.METRIC_TITLES[m]}" for d in order for m in paper.METRICS]
    rows, records = [], []
    paper_rows = _paper_rows(table)
    for label, key in paper.table_rows(table, list_models()):
        ref = paper_rows[label]
        if key is None:
            rows.append([f"{label} ({NOT_IMPLEMENTED})"] + [f"{ref[d][m]:.2f}" for d in order for m in paper.METRICS])
            for d in order:
                for m in paper.METRICS:
                    records.append(dict(table=table, method=label, variant="", dataset=d, metric=m, mean="",
                                        std="", n=0, paper=ref[d][m], diff="", note=NOT_IMPLEMENTED))
            continue
        other = table == 2 and not paper.TABLE2[label][1]  # the paper's number is from other features
        mark = "" if table != 2 or other else "†"
        ours = [f"**{label}**{mark} (ours)"]
        theirs = ["  paper, other features (Δ = ours − paper)" if other else "  paper (Δ = ours − paper)"]
        for d in order:
            s = summarize(_results(exps, d, key))
            for m in paper.METRICS:
                mean, std, n = s[m]
                if n == 0:
                    ours.append("–")
                    theirs.append(f"{ref[d][m]:.2f}")
                else:
                    n_seeds = len({e.seed for e in exps})
                    ours.append(format_mean_std(mean, std, n, n_seeds))
                    theirs.append(f"{ref[d][m]:.2f} ({mean - ref[d][m]:+.2f})")
                records.append(dict(table=table, method=label, variant=key, dataset=d, metric=m,
                                    mean=round(mean, 4) if n else "", std=round(std, 4) if n else "", n=n,
                                    paper=ref[d][m], diff=round(mean - ref[d][m], 4) if n else "",
                                    note=OTHER_FEATURES if other else ""))
        rows += [ours, theirs]
    return header, rows, records


def _footnotes(exps, datasets: list[str], synthetic: bool, tables=(2,)) -> list[str]:
    notes = [] if 2 not in tables else ["Table 2: † marks the rows the paper ran on the same CLIP/CLAP features (ClipClap-GZSL's reruns). "
             "The other rows' paper numbers come from other feature settings (the methods' own papers, the "
             "AVCA-GZSL features), so their Δ compares across feature settings, not implementations."]
    if synthetic:
        notes.append("**Synthetic data.** These runs use avgzsl's built-in synthetic benchmarks "
                     "(`docs/synthetic.md`); the paper's columns are shown for reference only and the "
                     "differences say nothing about the method on real data.")
    for d in [d for d in paper.DATASETS if d in datasets]:
        settings = set()
        for e in exps:
            if e.dataset == d and e.done:
                r = RunFolder(e.out).read_results()
                settings.add((r.get("text_alignment"), r.get("split"), r.get("feature_set")))
        for align, split, feats in sorted(settings, key=str):
            ref = "follows the reference code's class/text pairing" if align == "reference_order" else \
                "pairs classes with text by name (differs from the reference code where its pairing is wrong)"
            notes.append(f"{paper.DATASET_TITLES[d]}: text_alignment={align} ({ref}); split={split}; "
                         f"features={feats}.")
    return notes


def write_tables(exps, tables: list[int], out: Path, synthetic: bool) -> tuple[Path, Path]:
    datasets = sorted({e.dataset for e in exps}, key=paper.DATASETS.index)
    md, records = [], []
    for t in tables:
        header, rows, recs = build_table(t, exps, datasets)
        records += recs
        md.append(f"## {paper.TITLES[t]}\n")
        md.append("| " + " | ".join(header) + " |")
        md.append("|" + "---|" * len(header))
        md += ["| " + " | ".join(r) + " |" for r in rows]
        md.append("")
    seeds = sorted({e.seed for e in exps})
    md.append(f"Mean ± sample std over seeds {', '.join(map(str, seeds))}; S, U, HM, ZSL in percent (test set, "
              f"β chosen on validation).\n")
    md += [f"- {n}" for n in _footnotes(exps, datasets, synthetic, tables)]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["table", "method", "variant", "dataset", "metric", "mean", "std", "n",
                                        "paper", "diff", "note"])
    w.writeheader()
    w.writerows(records)
    return write_text(out / "tables.md", "\n".join(md) + "\n"), write_text(out / "tables.csv", buf.getvalue())
