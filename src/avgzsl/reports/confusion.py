"""The test confusion matrix of a run at its β, as counts and as a heatmap (report section "confusions").

Rows are true classes, columns predicted ones, both over the candidate classes in one order: seen classes
first, then unseen, each group by name, so the seen→unseen and unseen→seen blocks (the cells β moves) are
the off-diagonal quadrants. A cell's colour is the share of the true class's test videos (rows sum to 1).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .plots import new_figure, save_figure
from .runfiles import TestAnalysis

__all__ = ["confusion_matrix", "class_order", "plot_confusion", "MAX_TICK_LABELS"]

MAX_TICK_LABELS = 60  # class names on the axes up to this many classes; beyond, the groups only


def class_order(an: TestAnalysis) -> np.ndarray:
    """Candidate columns, seen first then unseen, each by case-insensitive name."""
    cols = np.arange(len(an.class_ids))
    return np.asarray(sorted(cols, key=lambda c: (not an.seen_mask[c], an.class_names[c].lower(), c)), np.int64)


def confusion_matrix(an: TestAnalysis) -> np.ndarray:
    """(C, C) counts over the candidate columns: [true, predicted]."""
    c = len(an.class_ids)
    m = np.zeros((c, c), np.int64)
    np.add.at(m, (an.label_cols, an.pred_cols), 1)
    return m


def plot_confusion(an: TestAnalysis, path: str | Path) -> Path:
    order = class_order(an)
    counts = confusion_matrix(an)[np.ix_(order, order)]  # (C, C) in display order
    totals = counts.sum(axis=1, keepdims=True)  # (C, 1) test videos per true class
    share = np.divide(counts, totals, out=np.full(counts.shape, np.nan), where=totals > 0)
    n, n_seen = len(order), int(an.seen_mask.sum())
    side = min(12.0, max(5.5, 0.16 * n + 3.0))
    fig = new_figure(side + 1.2, side)
    ax = fig.subplots()
    im = ax.imshow(share * 100, cmap="viridis", vmin=0, vmax=100, interpolation="nearest", aspect="equal")
    for pos in (n_seen - 0.5,):  # the seen | unseen border
        ax.axhline(pos, color="white", lw=1.5)
        ax.axvline(pos, color="white", lw=1.5)
    if n <= MAX_TICK_LABELS:
        names = [an.class_names[c] for c in order]
        size = 8 if n <= 30 else 6
        ax.set_xticks(range(n), names, rotation=90, fontsize=size)
        ax.set_yticks(range(n), names, fontsize=size)
    else:
        ax.set_xticks([(n_seen - 1) / 2, n_seen + (n - n_seen - 1) / 2], ["seen", "unseen"])
        ax.set_yticks([(n_seen - 1) / 2, n_seen + (n - n_seen - 1) / 2], ["seen", "unseen"])
    ax.set_xlabel("predicted class (seen | unseen)")
    ax.set_ylabel("true class (seen | unseen)")
    ax.set_title(f"Test confusion at β = {an.beta:.3g}: share of each true class's videos (%)")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02, label="% of the true class")
    return save_figure(fig, path)
