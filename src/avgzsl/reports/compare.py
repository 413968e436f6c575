"""Several finished runs side by side: one plain-text table and one PNG.

    table, png = compare_runs(["runs/a", "runs/b"])            # png: ./compare.png
    table, png = compare_runs(run_dirs, out="cmp/seeds.png")   # also writes cmp/seeds.txt (the table)

Table columns: name, model, dataset, seed, test S / U / HM / ZSL (percent), beta, AUSUC (percent).
PNG: left, each run's test S (solid) and U (dashed) over the beta grid with its chosen beta marked; right, each
run's seen-unseen curve (exact, from eval/test.npz; the beta-grid points joined when the npz is missing) with
the chosen operating point as a star.

Seeds: runs whose resolved configs (config.yaml) and datasets differ only by `seed` (and `name`) form a
group; for every group of two or more the table gets a second part, mean ± sample std over the seeds
(`format_mean_std`: one run says "(1 seed)"), and ``<stem>-hm.png`` overlays every group's HM-vs-β curves
(each seed thin, the mean bold with a ±1 std band).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import AvgzslError, ConfigError
from ..io import write_text
from ..metrics import seen_unseen_curve
from ..settings import load_yaml
from . import plots
from .runfiles import load_run, nearest_from_npz
from .tables import format_mean_std

COLUMNS = ("name", "model", "dataset", "seed", "S", "U", "HM", "ZSL", "beta", "AUSUC")


def _names(paths: list[Path]) -> list[str]:
    """Folder names; where two runs share one, add parent folders until they differ."""
    parts = [p.resolve().parts for p in paths]
    depth = [1] * len(paths)
    for _ in range(max(len(p) for p in parts)):
        names = ["/".join(p[-d:]) for p, d in zip(parts, depth)]
        dup = {n for n in names if names.count(n) > 1}
        if not dup:
            return names
        depth = [d + 1 if n in dup and d < len(p) else d for n, d, p in zip(names, depth, parts)]
    return ["/".join(p[-d:]) for p, d in zip(parts, depth)]


def format_table(rows: list[dict]) -> str:
    """Fixed-width plain text; metrics in percent with two decimals, beta with three."""
    def cell(row, col):
        v = row.get(col)
        if v is None:
            return "-"
        if col in ("S", "U", "HM", "ZSL", "AUSUC"):
            return f"{100 * v:.2f}"
        if col == "beta":
            return f"{v:.3f}"
        return str(v)

    cells = [[cell(r, c) for c in COLUMNS] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(COLUMNS)]
    left = {"name", "model", "dataset"}

    def line(vals):
        return "  ".join(v.ljust(w) if c in left else v.rjust(w) for v, w, c in zip(vals, widths, COLUMNS)).rstrip()

    out = [line(COLUMNS), line(["-" * w for w in widths])] + [line(r) for r in cells]
    return "\n".join(out) + "\n"


METRIC_COLUMNS = ("S", "U", "HM", "ZSL", "AUSUC")


def seed_group_key(run) -> str:
    """What must agree for two runs to differ only by seed: the resolved config without seed and name,
    and the dataset (name, feature set, split) the results record."""
    try:
        cfg = load_yaml(run.config_text, str(run.path / "config.yaml")) if run.config_text else {}
    except ConfigError:  # an unreadable config.yaml: the run stays in a group of its own
        cfg = {"_unreadable": str(run.path)}
    cfg = {k: v for k, v in (cfg or {}).items() if k not in ("seed", "name")}
    r = run.results
    return repr((sorted(cfg.items(), key=str), r.get("dataset"), r.get("feature_set"), r.get("split")))


def seed_groups(rows: list[dict], keys: list[str]) -> list[dict]:
    """Rows grouped by key, in first-seen order: [{"name", "rows", "index"}]."""
    groups: dict[str, dict] = {}
    for i, (row, key) in enumerate(zip(rows, keys)):
        g = groups.setdefault(key, {"name": f"{row['model']} / {row['dataset']}", "rows": [], "index": []})
        g["rows"].append(row)
        g["index"].append(i)
    names = [g["name"] for g in groups.values()]
    for j, g in enumerate(groups.values()):  # two groups of one model and dataset: number them
        if names.count(g["name"]) > 1:
            g["name"] += f" #{names[:j + 1].count(g['name'])}"
    return list(groups.values())


def format_seed_table(groups: list[dict]) -> str:
    """Mean ± std over each group's seeds, metrics in percent."""
    head = ("group", "seeds", *METRIC_COLUMNS)
    body = []
    for g in groups:
        cells = [g["name"], ",".join(str(r["seed"]) for r in g["rows"])]
        for m in METRIC_COLUMNS:
            vals = np.array([100 * r[m] for r in g["rows"] if r.get(m) is not None], float)
            cells.append(format_mean_std(float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
                                         len(vals)) if len(vals) else "-")
        body.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in body)) for i, h in enumerate(head)]

    def line(vals):
        return "  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(vals, widths))).rstrip()

    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(c) for c in body]) + "\n"


def compare_runs(run_dirs, out: str | Path | None = None) -> tuple[str, Path]:
    """Compare finished runs. Returns (plain-text table, path of the PNG).

    out: the PNG path (default ./compare.png); the table is also written beside it as <stem>.txt.
    Raises AvgzslError if no run is given or a folder is not a finished run folder (naming it).
    """
    paths = [Path(p) for p in ([run_dirs] if isinstance(run_dirs, (str, Path)) else list(run_dirs))]
    if not paths:
        raise AvgzslError("compare: give at least one run folder")
    runs = [load_run(p, need_results=True) for p in paths]
    rows, plot_runs = [], []
    for name, run in zip(_names(paths), runs):
        r, t = run.results, run.results["test"]
        rows.append({"name": name, "model": r.get("model"), "dataset": r.get("dataset"), "seed": r.get("seed"),
                     "S": t.get("seen"), "U": t.get("unseen"), "HM": t.get("hm"), "ZSL": t.get("zsl"),
                     "beta": t.get("beta"), "AUSUC": t.get("ausuc")})
        curve = None
        if run.test is not None:
            class_ids = np.asarray(run.test["class_ids"])
            label_cols = np.searchsorted(class_ids, np.asarray(run.test["labels"]))
            curve = seen_unseen_curve(nearest_from_npz(run.test), label_cols, np.asarray(run.test["seen_mask"], bool))
        plot_runs.append({"name": name, "test": t, "grid": (r.get("curves") or {}).get("test_grid"), "curve": curve})
    table = format_table(rows)
    out = Path(out) if out is not None else Path("compare.png")
    png = plots.plot_compare(plot_runs, out)
    groups = seed_groups(rows, [seed_group_key(run) for run in runs])
    if any(len(g["rows"]) > 1 for g in groups):
        table += "\nover seeds (runs that differ only by seed; mean ± sample std):\n" + format_seed_table(groups)
        hm_png = plots.plot_hm_beta([{"name": g["name"], "runs": [plot_runs[i] for i in g["index"]]}
                                     for g in groups], out.with_name(out.stem + "-hm.png"))
        table += f"HM vs β over seeds: {hm_png}\n"
    write_text(out.with_suffix(".txt"), table)
    return table, png


__all__ = ["compare_runs", "format_table", "format_seed_table", "seed_groups", "seed_group_key"]
