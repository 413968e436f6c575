"""The report's figures, drawn with matplotlib's Agg canvas (no pyplot, no global backend change).

Every function takes plain arrays / dicts (no run-folder knowledge), draws one figure, writes it as a PNG
at `path` and returns the path. `avgzsl.reports.report` gathers the data; `avgzsl.reports.compare` draws
several runs together.

We build `matplotlib.figure.Figure` objects and attach a `FigureCanvasAgg` explicitly, so importing this
module never changes the backend a user's own pyplot code runs on, and figures are not kept alive by pyplot's
figure manager (nothing to leak; each is dropped after saving).
"""
from __future__ import annotations

import functools
from pathlib import Path

import matplotlib as mpl
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..io import atomic_write

DPI = 110
SEEN_COLOR = "#1f77b4"  # blue
UNSEEN_COLOR = "#ff7f0e"  # orange
HM_COLOR = "#2ca02c"  # green
CHOSEN_COLOR = "#d62728"  # red: the chosen epoch / beta
MAX_BARS = 40  # classes per per-class-accuracy panel
MAX_LABELS = 20  # class-name labels on the embedding map
RC = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 8.5,
      "xtick.labelsize": 9, "ytick.labelsize": 9}


def themed(fn):
    """Run a plot function under the report's rc settings (a local context: users' rcParams are untouched)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with mpl.rc_context(RC):
            return fn(*args, **kwargs)
    return wrapper


def new_figure(w: float, h: float) -> Figure:
    fig = Figure(figsize=(w, h), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=DPI, format="png"))  # never a half-written PNG
    fig.clear()
    return Path(path)


def percent(x) -> np.ndarray:
    return 100.0 * np.asarray(x, dtype=np.float64)


# ------------------------------------------------------------------------------------------------------
# training curves
# ------------------------------------------------------------------------------------------------------
@themed
def plot_training_curves(rows: list[dict], best_epoch: int | None, path: str | Path) -> Path:
    """Loss terms per epoch (stage 1 solid, stage 2 dashed), validation S/U/HM per epoch, learning rate.

    rows: log.jsonl rows ({stage, epoch, lr, loss: {...}, val: {...}}). The chosen epoch (0-based, as in
    results.json) is a red vertical line in every panel, with the HM value marked.
    """
    fig = new_figure(14.5, 4.3)
    ax_loss, ax_val, ax_lr = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.25, 1.25, 0.8]})
    by_stage = {s: sorted((r for r in rows if r.get("stage") == s), key=lambda r: r["epoch"]) for s in (1, 2)}
    terms = []
    for r in rows:
        for k in (r.get("loss") or {}):
            if k not in terms:
                terms.append(k)
    terms = [t for t in terms if t != "total"] + (["total"] if "total" in terms else [])
    colors = {t: f"C{i % 10}" for i, t in enumerate(terms)}
    colors["total"] = "black"
    values = []
    for stage, ls, mk in ((1, "-", "o"), (2, "--", "s")):
        for t in terms:
            pts = [(r["epoch"], r["loss"][t]) for r in by_stage[stage] if t in (r.get("loss") or {})]
            if not pts:
                continue
            x, y = zip(*pts)
            values += list(y)
            ax_loss.plot(x, y, ls, marker=mk, ms=3.5, color=colors[t], lw=2.0 if t == "total" else 1.4)
    # legend: one entry per term (colour) + one per stage (line style)
    handles = [Line2D([], [], color=colors[t], lw=2, label=t) for t in terms]
    handles += [Line2D([], [], color="grey", ls="-", marker="o", ms=3.5, label="stage 1"),
                Line2D([], [], color="grey", ls="--", marker="s", ms=3.5, label="stage 2")]
    vals = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
    if len(vals) and vals.min() > 0 and vals.max() / vals.min() > 50:
        ax_loss.set_yscale("log")
    ax_loss.set_title("Training loss per epoch (every term)")
    ax_loss.set_xlabel("epoch (0-based)")
    ax_loss.set_ylabel("loss (mean over the epoch's batches)")
    if best_epoch is not None:
        ax_loss.axvline(best_epoch, color=CHOSEN_COLOR, ls=":", lw=1.5)
        handles.append(Line2D([], [], color=CHOSEN_COLOR, ls=":", lw=1.5,
                              label=f"chosen epoch {best_epoch} (stage 2 ends here)"))
    ax_loss.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=4, framealpha=0.85)

    s1 = [r for r in by_stage[1] if r.get("val")]
    if s1:
        x = [r["epoch"] for r in s1]
        for key, color, label in (("seen", SEEN_COLOR, "S (seen)"), ("unseen", UNSEEN_COLOR, "U (unseen)"),
                                  ("hm", HM_COLOR, "HM")):
            ax_val.plot(x, percent([r["val"][key] for r in s1]), "-o", ms=3.5, color=color, label=label,
                        lw=2.0 if key == "hm" else 1.4)
        s2 = [r for r in by_stage[2] if r.get("val_trained_on")]
        if s2:
            ax_val.plot([r["epoch"] for r in s2], percent([r["val_trained_on"]["hm"] for r in s2]), ":", color=HM_COLOR,
                        alpha=0.7, label="HM, stage 2 (val videos are training data)")
        if best_epoch is not None:
            best = [r for r in s1 if r["epoch"] == best_epoch]
            ax_val.axvline(best_epoch, color=CHOSEN_COLOR, ls=":", lw=1.5, label=f"chosen epoch {best_epoch}")
            if best:
                hm = 100 * best[0]["val"]["hm"]
                ax_val.plot([best_epoch], [hm], "*", color=CHOSEN_COLOR, ms=14, mec="black", mew=0.6, zorder=5)
                ax_val.annotate(f"HM {hm:.1f}\nβ {best[0]['val']['beta']:.3f}", (best_epoch, hm),
                                textcoords="offset points", xytext=(-8, -28), ha="right", fontsize=9,
                                color=CHOSEN_COLOR)
        ax_val.set_ylim(-2, 102)
        ax_val.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=4, framealpha=0.85)
    else:
        ax_val.text(0.5, 0.5, "no validation rows in log.jsonl", ha="center", va="center", transform=ax_val.transAxes)
    ax_val.set_title("Validation per stage-1 epoch (each at its best β)")
    ax_val.set_xlabel("epoch (0-based)")
    ax_val.set_ylabel("accuracy (%)")

    for stage, ls, mk in ((1, "-", "o"), (2, "--", "s")):
        pts = [(r["epoch"], r["lr"]) for r in by_stage[stage] if r.get("lr") is not None]
        if pts:
            x, y = zip(*pts)
            ax_lr.plot(x, y, ls, marker=mk, ms=8 if stage == 1 else 4, lw=3 if stage == 1 else 1.4,
                       color="#bbbbbb" if stage == 1 else "C9", mfc="none" if stage == 1 else None,
                       label=f"stage {stage}")
    if best_epoch is not None:
        ax_lr.axvline(best_epoch, color=CHOSEN_COLOR, ls=":", lw=1.5)
    lrs = [r["lr"] for r in rows if r.get("lr")]
    if lrs and min(lrs) > 0:
        ax_lr.set_yscale("log")
    ax_lr.set_title("Learning rate")
    ax_lr.set_xlabel("epoch (0-based)")
    ax_lr.set_ylabel("learning rate")
    if lrs:
        ax_lr.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, framealpha=0.85)
    for ax in (ax_loss, ax_val, ax_lr):
        ax.grid(True, alpha=0.3, linewidth=0.6)
        if rows:
            ax.xaxis.get_major_locator().set_params(integer=True)
    return save_figure(fig, path)


# ------------------------------------------------------------------------------------------------------
# calibration (beta) and seen-unseen curves
# ------------------------------------------------------------------------------------------------------
@themed
def plot_calibration(test_grid: dict, val_grid: dict | None, beta: float, test_at_beta: dict | None,
                     ausuc_test: float | None, ausuc_val: float | None, path: str | Path) -> Path:
    """Test S/U/HM over the beta grid (solid), the validation curve (dashed), the chosen beta marked."""
    fig = new_figure(8.6, 4.8)
    ax = fig.subplots()
    b = np.asarray(test_grid["beta"], dtype=np.float64)
    for key, color, label in (("seen", SEEN_COLOR, "S"), ("unseen", UNSEEN_COLOR, "U"), ("hm", HM_COLOR, "HM")):
        ax.plot(b, percent(test_grid[key]), "-", color=color, lw=2.0, label=f"test {label}")
        if val_grid:
            ax.plot(np.asarray(val_grid["beta"]), percent(val_grid[key]), "--", color=color, lw=1.2, alpha=0.8,
                    label=f"val {label}")
    ax.axvline(beta, color=CHOSEN_COLOR, ls=":", lw=1.6, label=f"chosen β = {beta:.3f} (on val)")
    if test_at_beta:
        for key, color in (("seen", SEEN_COLOR), ("unseen", UNSEEN_COLOR), ("hm", HM_COLOR)):
            ax.plot([beta], [100 * test_at_beta[key]], "o", color=color, mec="black", ms=7, zorder=5)
        ax.annotate(f"test S {100 * test_at_beta['seen']:.1f}  U {100 * test_at_beta['unseen']:.1f}  "
                    f"HM {100 * test_at_beta['hm']:.1f}", (beta, 100 * test_at_beta["hm"]),
                    textcoords="offset points", xytext=(8, -18 if test_at_beta["hm"] > 0.85 else 8), fontsize=9,
                    color=CHOSEN_COLOR, zorder=6,
                    bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="none", alpha=0.8))
    title = "Calibration: accuracy vs β (β added to seen-class distances)"
    parts = []
    if ausuc_test is not None:
        parts.append(f"AUSUC test {100 * ausuc_test:.2f}")
    if ausuc_val is not None:
        parts.append(f"val {100 * ausuc_val:.2f}")
    if parts:
        title += "\n" + ", ".join(parts)
    ax.set_title(title)
    ax.set_xlabel("β (calibration shift)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.grid(True, alpha=0.3, linewidth=0.6)
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), framealpha=0.85)
    return save_figure(fig, path)


@themed
def plot_seen_unseen(curve_u: np.ndarray | None, curve_s: np.ndarray | None, grid: dict | None,
                     chosen: dict | None, ausuc: float | None, path: str | Path) -> Path:
    """The seen-unseen curve: U on x, S on y, exact over all beta (if given), grid points, chosen point."""
    fig = new_figure(5.8, 6.2)
    ax = fig.subplots()
    if curve_u is not None and curve_s is not None:
        u, s = percent(curve_u), percent(curve_s)
        ax.fill_between(u, s, color=SEEN_COLOR, alpha=0.12, lw=0)
        ax.plot(u, s, "-", color=SEEN_COLOR, lw=2, label="test, exact over all β")
    if grid:
        ax.plot(percent(grid["unseen"]), percent(grid["seen"]), "o", color="grey", ms=3.5, alpha=0.8,
                label="test, β grid points")
    if chosen:
        ax.plot([100 * chosen["unseen"]], [100 * chosen["seen"]], "*", color=CHOSEN_COLOR, mec="black", ms=16,
                zorder=5, label=f"chosen β = {chosen['beta']:.3f}")
        right = chosen["unseen"] > 0.6
        ax.annotate(f"U {100 * chosen['unseen']:.1f}, S {100 * chosen['seen']:.1f}",
                    (100 * chosen["unseen"], 100 * chosen["seen"]), textcoords="offset points",
                    xytext=(-10 if right else 10, -18 if chosen["seen"] > 0.85 else 8), ha="right" if right else "left",
                    fontsize=9,
                    color=CHOSEN_COLOR, zorder=6, bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="none", alpha=0.8))
    title = "Seen–unseen curve (test)"
    if ausuc is not None:
        title += f"\nAUSUC = {100 * ausuc:.2f} (area under the curve)"
    _seen_unseen_axes(ax, title, ncol=2)
    return save_figure(fig, path)


def _seen_unseen_axes(ax, title: str, ncol: int) -> None:
    """U on x, S on y, in percent, square; the legend under the axes (it never covers a curve)."""
    ax.set_title(title)
    ax.set_xlabel("U: unseen accuracy (%)")
    ax.set_ylabel("S: seen accuracy (%)")
    ax.set_xlim(-2, 102)
    ax.set_ylim(-2, 102)
    ax.set_aspect("equal")
    ax.grid(True, alpha=0.3, linewidth=0.6)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=ncol, framealpha=0.85)


MODE_STYLE = {"both": ("#333333", "-"), "audio": ("#9467bd", "--"), "video": ("#17becf", "-.")}


@themed
def plot_modalities(modes: dict, path: str | Path) -> Path:
    """One seen-unseen curve per scoring (both modalities, audio only, video only): results.json's
    `modalities`, each {"curve": {"unseen", "seen"}, "ausuc", ...}."""
    fig = new_figure(5.8, 6.2)
    ax = fig.subplots()
    for name, m in modes.items():
        color, style = MODE_STYLE.get(name, ("grey", ":"))
        ax.plot(percent(m["curve"]["unseen"]), percent(m["curve"]["seen"]), style, color=color, lw=2,
                label=f"{name}: AUSUC {100 * m['ausuc']:.2f}")
    _seen_unseen_axes(ax, "Seen–unseen curve per modality (test)", ncol=len(modes))
    return save_figure(fig, path)


# ------------------------------------------------------------------------------------------------------
# per-class accuracy
# ------------------------------------------------------------------------------------------------------
@themed
def plot_compare(runs: list[dict], path: str | Path) -> Path:
    """Several runs: test S and U over beta (left), their seen-unseen curves (right), chosen points marked.

    runs: [{"name", "grid": {beta, seen, unseen}, "test": {seen, unseen, beta, ausuc},
            "curve": (U, S) or None}]; without an exact curve the grid points are joined instead.
    """
    fig = new_figure(13.5, 6.6)
    ax_b, ax_su = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.35, 1]})
    for i, run in enumerate(runs):
        color = f"C{i % 10}"
        t = run["test"]
        g = run.get("grid")
        if g:
            ax_b.plot(g["beta"], percent(g["seen"]), "-", color=color, lw=1.8)
            ax_b.plot(g["beta"], percent(g["unseen"]), "--", color=color, lw=1.8)
        ax_b.plot([t["beta"]], [100 * t["seen"]], "o", color=color, mec="black", ms=7, zorder=5)
        ax_b.plot([t["beta"]], [100 * t["unseen"]], "s", color=color, mec="black", ms=7, zorder=5)
        label = f"{run['name']} (AUSUC {100 * t['ausuc']:.1f})"
        if run.get("curve") is not None:
            u, s = run["curve"]
            ax_su.plot(percent(u), percent(s), "-", color=color, lw=1.8, label=label)
        elif g:
            order = np.argsort(g["unseen"], kind="stable")
            ax_su.plot(percent(g["unseen"])[order], percent(g["seen"])[order], "-", color=color, lw=1.8,
                       label=label + " [β grid]")
        ax_su.plot([100 * t["unseen"]], [100 * t["seen"]], "*", color=color, mec="black", ms=14, zorder=5)
    handles = [Line2D([], [], color=f"C{i % 10}", lw=2, label=r["name"]) for i, r in enumerate(runs)]
    handles += [Line2D([], [], color="grey", ls="-", label="S (seen)"),
                Line2D([], [], color="grey", ls="--", label="U (unseen)"),
                Line2D([], [], color="grey", ls="", marker="o", mec="black", label="S at chosen β"),
                Line2D([], [], color="grey", ls="", marker="s", mec="black", label="U at chosen β")]
    ax_b.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=4, fontsize=8,
                framealpha=0.85)
    ax_b.set_title("Test calibration curves: S and U vs β (markers: each run's chosen β)")
    ax_b.set_xlabel("β (calibration shift)")
    ax_b.set_ylabel("accuracy (%)")
    ax_b.set_ylim(-2, 102)
    ax_su.set_title("Seen–unseen curves (test; ★ = chosen β)")
    ax_su.set_xlabel("U: unseen accuracy (%)")
    ax_su.set_ylabel("S: seen accuracy (%)")
    ax_su.set_xlim(-2, 102)
    ax_su.set_ylim(-2, 102)
    ax_su.set_aspect("equal")
    ax_su.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=1 if len(runs) < 4 else 2, fontsize=8,
                 framealpha=0.85)
    for ax in (ax_b, ax_su):
        ax.grid(True, alpha=0.3, linewidth=0.6)
    return save_figure(fig, path)


def plot_step_losses(steps: list[dict], path: str | Path, window: int = 25) -> Path:
    """Every optimiser step's total loss (thin) and its running mean over `window` steps (bold), stage 1
    left and stage 2 right; the other terms' running means in colour.

    steps: steps.jsonl rows ({stage, epoch, first_step, terms: {term: [value per step]}}).
    """
    fig = new_figure(14.5, 4.0)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, stage in zip(axes, (1, 2)):
        rows = sorted((r for r in steps if r.get("stage") == stage), key=lambda r: r["epoch"])
        terms: dict[str, list] = {}
        for r in rows:
            for k, v in r["terms"].items():
                terms.setdefault(k, []).extend(v)
        n = max((len(v) for v in terms.values()), default=0)
        w = max(1, min(window, n // 5))  # short runs: a window of a fifth of the steps, so the mean shows a trend
        for i, (k, v) in enumerate(sorted(terms.items(), key=lambda kv: kv[0] == "total")):
            y = np.asarray(v, float)
            smooth = np.convolve(y, np.ones(w) / w, mode="valid")  # (n - w + 1,)
            x = np.arange(len(y))
            color = "black" if k == "total" else f"C{i % 10}"
            if k == "total":
                ax.plot(x, y, "-", color="grey", lw=0.6, alpha=0.5)
            ax.plot(x[w - 1:], smooth, "-", color=color, lw=2.0 if k == "total" else 1.2, label=k)
        ax.set_title(f"stage {stage}: loss per step (running mean over {w})" if rows else
                     f"stage {stage}: no steps logged")
        ax.set_xlabel("optimiser step")
        ax.grid(True, alpha=0.3, linewidth=0.6)
        if terms:
            ax.legend(loc="upper right", fontsize=8, framealpha=0.85)
    axes[0].set_ylabel("loss")
    return save_figure(fig, path)


def plot_hm_beta(groups: list[dict], path: str | Path) -> Path:
    """Test HM over β for groups of runs that differ only by seed: each run thin, the group's mean bold
    with a ±1 std band (where its runs share one β grid), each run's chosen β marked.

    groups: [{"name", "runs": [{"grid": {beta, hm}, "test": {beta, hm}}]}]
    """
    fig = new_figure(9.5, 5.6)
    ax = fig.subplots()
    for i, g in enumerate(groups):
        color = f"C{i % 10}"
        grids = [r["grid"] for r in g["runs"] if r.get("grid")]
        for r in g["runs"]:
            if r.get("grid"):
                ax.plot(r["grid"]["beta"], percent(r["grid"]["hm"]), "-", color=color, lw=0.8, alpha=0.45)
            ax.plot([r["test"]["beta"]], [100 * r["test"]["hm"]], "o", color=color, mec="black", ms=5, zorder=5)
        n = len(g["runs"])
        label = f"{g['name']} ({n} seed{'s' if n != 1 else ''})"
        same = grids and all(np.array_equal(grids[0]["beta"], q["beta"]) for q in grids)
        if same and len(grids) > 1:
            hm = np.stack([percent(q["hm"]) for q in grids])  # (runs, betas)
            mean, sd = hm.mean(axis=0), hm.std(axis=0, ddof=1)
            ax.plot(grids[0]["beta"], mean, "-", color=color, lw=2.2, label=label + ", mean ± std")
            ax.fill_between(grids[0]["beta"], np.clip(mean - sd, 0, 100), np.clip(mean + sd, 0, 100), color=color,
                            alpha=0.18, lw=0)
        else:
            ax.plot([], [], "-", color=color, lw=2.2, label=label)
    ax.set_title("Test HM vs β (thin: each seed; bold: mean over seeds; dots: each run's chosen β)")
    ax.set_xlabel("β (calibration shift)")
    ax.set_ylabel("HM (%)")
    ax.grid(True, alpha=0.3, linewidth=0.6)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2 if len(groups) > 3 else 1, fontsize=8,
              framealpha=0.85)
    return save_figure(fig, path)


__all__ = ["plot_training_curves", "plot_calibration", "plot_seen_unseen", "plot_compare", "plot_hm_beta", "plot_step_losses", "MAX_BARS", "MAX_LABELS", "DPI"]
