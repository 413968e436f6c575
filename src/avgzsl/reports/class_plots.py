"""Per-class figures of a run report: accuracy per class, and a 2-D map of video and class embeddings.

Drawn with the report's one theme (`plots.themed`); curves over epochs and β are in `plots.py`."""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
from matplotlib.text import Text

from .plots import MAX_BARS, MAX_LABELS, SEEN_COLOR, UNSEEN_COLOR, new_figure, save_figure, themed


def _shown(order: np.ndarray, cap: int) -> tuple[np.ndarray, bool]:
    """At most `cap` entries of a sorted order: all, or the cap//2 lowest and cap - cap//2 highest."""
    if len(order) <= cap:
        return order, False
    lo = cap // 2
    return np.r_[order[:lo], order[len(order) - (cap - lo):]], True


@themed
def plot_class_accuracy(names: list[str], acc: np.ndarray, seen: np.ndarray, beta: float, path: str | Path,
                        cap: int = MAX_BARS) -> Path:
    """Horizontal bars, one panel for seen and one for unseen classes, each sorted (lowest at the top).

    Classes without test videos (NaN accuracy) are left out, as in the S/U means. More than `cap` classes in
    a panel: the cap/2 lowest and cap/2 highest are drawn, separated by a dashed line, and the title says so.
    The dashed vertical line is the panel's mean: S for the seen panel, U for the unseen one.
    """
    acc = np.asarray(acc, dtype=np.float64)
    seen = np.asarray(seen, dtype=bool)
    panels = []
    for is_seen, color, label in ((True, SEEN_COLOR, "seen"), (False, UNSEEN_COLOR, "unseen")):
        cols = np.flatnonzero((seen == is_seen) & ~np.isnan(acc))
        order = cols[np.lexsort((cols, acc[cols]))]  # ascending accuracy, ties by column
        shown, capped = _shown(order, cap)
        panels.append((label, color, cols, shown, capped))
    n_rows = max([len(p[3]) for p in panels] + [1])
    fig = new_figure(13.0, max(3.0, 1.3 + 0.24 * n_rows))
    axes = fig.subplots(1, 2)
    for ax, (label, color, cols, shown, capped) in zip(axes, panels):
        if len(cols) == 0:
            ax.text(0.5, 0.5, f"no {label} test classes", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        # lowest accuracy at the top; every panel has n_rows slots, so a panel of few classes gets bars as
        # thick as the other panel's, from the top, not a few bars stretched over its whole height
        y = n_rows - 1 - np.arange(len(shown))
        vals = 100 * acc[shown]
        ax.barh(y, vals, color=color, alpha=0.85, height=0.75)
        ax.set_yticks(y)
        ax.set_yticklabels([names[c] for c in shown], fontsize=8 if len(shown) > 25 else 9)
        for yi, v in zip(y, vals):
            ax.text(min(v + 1, 101), yi, f"{v:.0f}", va="center", fontsize=7.5)
        if capped:
            lo = cap // 2
            ax.axhline(y[lo - 1] - 0.5, color="black", ls="--", lw=0.8)
        mean = 100 * float(np.mean(acc[cols]))
        ax.axvline(mean, color="black", ls="--", lw=1.2)
        title = (f"{label.capitalize()} classes ({len(cols)}) at β = {beta:.3f}; "
                 f"mean {'S' if label == 'seen' else 'U'} = {mean:.1f} (dashed)")
        if capped:
            title += f"\nshowing the {cap // 2} lowest and {cap - cap // 2} highest of {len(cols)}"
        ax.set_title(title)
        ax.set_xlabel("per-class accuracy (%)")
        ax.set_xlim(0, 108)
        ax.set_ylim(-0.7, n_rows - 0.3)
        ax.grid(True, axis="x", alpha=0.3, linewidth=0.6)
    return save_figure(fig, path)


# ------------------------------------------------------------------------------------------------------
# embedding map
# ------------------------------------------------------------------------------------------------------
def project_2d(x: np.ndarray, method: str = "pca", seed: int = 0) -> tuple[np.ndarray, str]:
    """(N, D) -> (N, 2) and the method actually used ("pca", or "tsne" when scikit-learn is installed).

    PCA: centre, then the top two right singular vectors (signs fixed so the largest |loading| is positive,
    which makes the map deterministic). t-SNE needs scikit-learn, which is not a dependency: asking for it
    without scikit-learn falls back to PCA (the returned method says which was used).
    """
    x = np.asarray(x, dtype=np.float64)
    if method not in ("pca", "tsne"):
        raise ValueError(f"unknown projection {method!r}; use 'pca' or 'tsne'")
    if method == "tsne":
        try:
            from sklearn.manifold import TSNE  # optional (scikit-learn is not a dependency): PCA without it
        except ImportError:
            method = "pca"
        else:
            perplexity = float(max(2.0, min(30.0, (len(x) - 1) / 3)))
            if len(x) > 3:
                y = TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed).fit_transform(x)
                return np.asarray(y, dtype=np.float64), "tsne"
            method = "pca"
    xc = x - x.mean(axis=0, keepdims=True)
    if xc.shape[1] < 2 or not np.any(xc):
        out = np.zeros((len(x), 2))
        out[:, : min(2, xc.shape[1])] = xc[:, :2]
        return out, "pca"
    _, sv, vt = np.linalg.svd(xc, full_matrices=False)
    comps = vt[:2]
    signs = np.sign(comps[np.arange(len(comps)), np.abs(comps).argmax(axis=1)])
    comps = comps * np.where(signs == 0, 1, signs)[:, None]
    y = xc @ comps.T
    if y.shape[1] < 2:
        y = np.c_[y, np.zeros(len(y))]
    return y, "pca"


# where a label may sit relative to its point: (dx, dy) direction, text alignment; nearest rings first
_LABEL_SPOTS = [((1, 1), "left", "bottom"), ((1, -1), "left", "top"), ((-1, 1), "right", "bottom"),
                ((-1, -1), "right", "top"), ((0, 1), "center", "bottom"), ((0, -1), "center", "top"),
                ((1, 0), "left", "center"), ((-1, 0), "right", "center")]
_LABEL_RINGS = (6, 14, 26, 40, 56)  # offsets in points


def text_box(annotation, renderer):
    """An annotation's text box in pixels, without its leader line (Annotation.get_window_extent adds it)."""
    annotation.update_positions(renderer)
    return Text.get_window_extent(annotation, renderer)


def place_labels(ax, points: np.ndarray, names: list[str], obstacles: np.ndarray | None = None,
                 marker_pt: float = 9.0, fontsize: float = 8.5) -> list:
    """Name each point (data coordinates, (n, 2)) with a label that overlaps no earlier label, no other
    `obstacles` marker (a square of `marker_pt` points around each) and stays inside the axes: the first free
    spot of `_LABEL_SPOTS` on the nearest ring of `_LABEL_RINGS`, else the spot with the least overlap. A
    label off the first ring gets a thin leader line. Earlier names win (pass them by priority). Returns
    the annotations."""
    fig = ax.figure
    fig.tight_layout()  # the final axes geometry: save_figure's tight_layout then changes nothing
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    half = marker_pt / 2 * fig.dpi / 72
    markers = ax.transData.transform(np.asarray(obstacles, np.float64).reshape(-1, 2)) if obstacles is not None \
        else np.empty((0, 2))
    labels: list[tuple] = []  # (x0, y0, x1, y1) of the labels placed so far, in pixels

    def cost(b, me) -> float:  # area (px²) outside the axes or on another marker or label
        inside = max(0.0, min(b.x1, frame.x1) - max(b.x0, frame.x0)) * max(0.0, min(b.y1, frame.y1) - max(b.y0, frame.y0))
        boxes = [(x - half, y - half, x + half, y + half) for x, y in markers if abs(x - me[0]) + abs(y - me[1]) > 0.5]
        return b.width * b.height - inside + sum(
            max(0.0, min(b.x1, x1) - max(b.x0, x0)) * max(0.0, min(b.y1, y1) - max(b.y0, y0))
            for x0, y0, x1, y1 in boxes + labels)

    texts = []
    for p, name in zip(np.asarray(points, np.float64).reshape(-1, 2), names):
        me = ax.transData.transform(p)
        best = None  # (cost, annotation): the spot with the least overlap so far
        for r, ((dx, dy), ha, va) in itertools.product(_LABEL_RINGS, _LABEL_SPOTS):  # nearest ring first
            t = ax.annotate(name, tuple(p), textcoords="offset points", xytext=(dx * r, dy * r), ha=ha, va=va,
                            fontsize=fontsize, zorder=5, annotation_clip=True,
                            bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.75),
                            arrowprops=None if r == _LABEL_RINGS[0] else
                            dict(arrowstyle="-", color="0.4", lw=0.6, shrinkA=0, shrinkB=4))
            c = cost(text_box(t, renderer), me)
            if best is not None and c >= best[0]:
                t.remove()
                continue
            if best is not None:
                best[1].remove()
            best = (c, t)
            if c == 0:
                break
        b = text_box(best[1], renderer)
        labels.append((b.x0, b.y0, b.x1, b.y1))
        texts.append(best[1])
    return texts


@themed
def plot_embedding_map(video_emb: np.ndarray, video_seen: np.ndarray, class_emb: np.ndarray,
                       class_names: list[str], class_seen: np.ndarray, path: str | Path, method: str = "pca",
                       n_total: int | None = None, max_labels: int = MAX_LABELS,
                       label_priority: np.ndarray | None = None,
                       label_note: str = "unseen first") -> tuple[Path, str]:
    """Videos (small dots) and class embeddings (large diamonds, labelled) in one 2-D projection.

    Colour: blue = the video's true class / the class is seen, orange = unseen. Both sets are projected
    together, so distances between a video and a class diamond are comparable (they are what the model
    ranks). With more than `max_labels` classes only that many are named: those first in `label_priority`
    (class columns; default: unseen classes first). Returns (path, method used).
    """
    video_emb, class_emb = np.asarray(video_emb, np.float64), np.asarray(class_emb, np.float64)
    video_seen, class_seen = np.asarray(video_seen, bool), np.asarray(class_seen, bool)
    xy, used = project_2d(np.vstack([video_emb, class_emb]), method)
    v, c = xy[: len(video_emb)], xy[len(video_emb):]
    fig = new_figure(9.0, 7.6)
    ax = fig.subplots()
    for is_seen, color, label in ((True, SEEN_COLOR, "seen"), (False, UNSEEN_COLOR, "unseen")):
        m = video_seen == is_seen
        if m.any():
            ax.scatter(v[m, 0], v[m, 1], s=18, color=color, alpha=0.55, lw=0,
                       label=f"test videos of {label} classes ({int(m.sum())})")
    for is_seen, color, label in ((True, SEEN_COLOR, "seen"), (False, UNSEEN_COLOR, "unseen")):
        m = class_seen == is_seen
        if m.any():
            ax.scatter(c[m, 0], c[m, 1], s=110 if len(class_emb) <= 40 else 55, marker="D", color=color,
                       edgecolor="black", lw=1.0, zorder=4,
                       label=f"{label} class embeddings ({int(m.sum())})")
    # labels: every class if few; otherwise the first max_labels of label_priority (default: unseen first)
    if label_priority is None:
        label_priority = np.r_[np.flatnonzero(~class_seen), np.flatnonzero(class_seen)]
    shown = np.asarray(label_priority, dtype=int)[:max_labels]
    place_labels(ax, c[shown], [class_names[i] if len(class_names[i]) <= 28 else class_names[i][:27] + "…"
                                for i in shown], obstacles=c)
    name = {"pca": "PCA", "tsne": "t-SNE"}[used]
    title = f"Test embeddings: 2-D {name} of videos and class embeddings together"
    if n_total is not None and n_total > len(video_emb):
        title += f"\n{len(video_emb)} of {n_total} test videos (those stored in eval/test.npz)"
    if len(class_names) > max_labels:
        title += f"\nnames shown for {max_labels} of {len(class_names)} classes ({label_note})"
    ax.set_title(title)
    ax.set_xlabel(f"{name} 1")
    ax.set_ylabel(f"{name} 2")
    ax.grid(True, alpha=0.3, linewidth=0.6)
    leg = ax.legend(loc="best", framealpha=0.85)
    for h in leg.legend_handles:
        if h is not None and hasattr(h, "set_sizes") and h.get_sizes()[0] < 50:
            h.set_sizes([40])  # video dots: legible in the legend
    return save_figure(fig, path), used


# ------------------------------------------------------------------------------------------------------
# several runs
# ------------------------------------------------------------------------------------------------------


__all__ = ["plot_class_accuracy", "project_2d", "plot_embedding_map", "place_labels", "text_box"]
