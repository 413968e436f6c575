"""GZSL metrics with calibrated stacking: S, U, HM, ZSL over a beta grid, and AUSUC.

Semantics follow the field's reference evaluation (ClipClap-GZSL / AVCA / TCAF):
- candidate classes are a sorted list of class ids; each has a distance per video (smaller = closer);
- calibrated stacking adds beta to the distance of every *seen* candidate; prediction = argmin, ties
  going to the lower column (torch.argmin / np.argmin);
- per-class accuracy = correct / videos of that class; S and U are means over the seen and the unseen
  candidate classes; HM = 2SU / (S + U), 0 when both are 0;
- ZSL = argmin over the unseen candidates only (no beta), mean per-class accuracy over unseen classes;
- the chosen beta is the first one that maximises HM.

Fast path: at any beta a video's prediction is either its nearest seen or its nearest unseen class, so
we reduce each distance chunk to those two (index and distance) and never hold the (N, C) matrix.
Every beta then costs O(N). tests/test_metrics.py checks this against the straightforward argmin.

Our choices (documented in docs/protocol.md): a candidate class with no videos is left out of the mean
(the reference would divide by zero); AUSUC is the exact area under the full seen-unseen curve over
all beta in (-inf, inf) (Chao et al., ECCV 2016), not only the grid.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Nearest:
    """Per video: the closest seen and closest unseen candidate (column index and distance)."""

    seen_col: np.ndarray  # (N,) int64, column into the candidate list (-1 if there are no seen)
    seen_dist: np.ndarray  # (N,) float32 (+inf if there are no seen candidates)
    unseen_col: np.ndarray  # (N,) int64
    unseen_dist: np.ndarray  # (N,) float32

    @staticmethod
    def concat(parts: list["Nearest"]) -> "Nearest":
        return Nearest(*[np.concatenate([getattr(p, f) for p in parts])
                         for f in ("seen_col", "seen_dist", "unseen_col", "unseen_dist")])


def nearest_seen_unseen(dist: np.ndarray, seen_mask: np.ndarray) -> Nearest:
    """Reduce a (N, C) distance block to each row's nearest seen and nearest unseen column."""
    dist = np.asarray(dist, dtype=np.float32)
    seen_mask = np.asarray(seen_mask, dtype=bool)
    cols = np.arange(dist.shape[1])
    out = []
    for mask in (seen_mask, ~seen_mask):
        if not mask.any():
            out += [np.full(len(dist), -1, np.int64), np.full(len(dist), np.inf, np.float32)]
            continue
        sub = dist[:, mask]  # (N, C_part)
        j = sub.argmin(axis=1)
        out += [cols[mask][j].astype(np.int64), sub[np.arange(len(sub)), j]]
    return Nearest(*out)


def predict_columns(nearest: Nearest, beta: float) -> np.ndarray:
    """Predicted candidate column at calibration `beta` (same result as argmin(dist + beta*seen))."""
    return np.where(_predicts_seen(nearest, np.asarray([beta]))[0], nearest.seen_col, nearest.unseen_col)


def _predicts_seen(nearest: Nearest, betas: np.ndarray) -> np.ndarray:
    """(n_beta, N) bool: does the video go to its nearest seen class at each beta?"""
    # float32 like the reference, which adds beta to a float32 distance matrix
    shifted = nearest.seen_dist[None, :] + betas.astype(np.float32)[:, None]  # (n_beta, N)
    u = nearest.unseen_dist[None, :]
    return (shifted < u) | ((shifted == u) & (nearest.seen_col < nearest.unseen_col)[None, :])


def harmonic_mean(seen, unseen):
    seen, unseen = np.asarray(seen, dtype=np.float64), np.asarray(unseen, dtype=np.float64)
    total = seen + unseen
    with np.errstate(invalid="ignore", divide="ignore"):
        hm = np.where(total > 0, 2 * seen * unseen / np.where(total > 0, total, 1), 0.0)
    return hm if hm.ndim else float(hm)


def per_class_accuracy(correct: np.ndarray, label_cols: np.ndarray, n_classes: int) -> np.ndarray:
    """(..., N) bool correct -> (..., n_classes) accuracy; NaN for a class with no videos."""
    counts = np.bincount(label_cols, minlength=n_classes).astype(np.float64)
    correct = np.atleast_2d(correct)
    rows = correct.shape[0]
    flat = (np.arange(rows)[:, None] * n_classes + label_cols[None, :]).ravel()
    hits = np.bincount(flat, weights=correct.ravel().astype(np.float64), minlength=rows * n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = hits.reshape(rows, n_classes) / counts[None, :]
    return acc


def _mean_over(acc: np.ndarray, cols: np.ndarray) -> np.ndarray:
    part = acc[..., cols]
    valid = ~np.isnan(part)
    n = valid.sum(axis=-1)
    return np.where(n > 0, np.nansum(part, axis=-1) / np.maximum(n, 1), 0.0)


@dataclass
class GZSLResult:
    """S, U, HM at every beta of the grid, the chosen beta, ZSL and AUSUC (all fractions in [0, 1])."""

    betas: np.ndarray
    seen: np.ndarray  # (n_beta,)
    unseen: np.ndarray
    hm: np.ndarray
    zsl: float
    ausuc: float
    best: int  # index of the chosen beta
    class_ids: np.ndarray  # candidate class ids (columns)
    seen_mask: np.ndarray
    class_accuracy: np.ndarray = field(repr=False)  # (C,) per-class accuracy at the chosen beta
    zsl_class_accuracy: np.ndarray = field(repr=False)  # (C,) ZSL per-class accuracy (NaN for seen)

    @property
    def beta(self) -> float:
        return float(self.betas[self.best])

    def summary(self) -> dict:
        b = self.best
        return {"seen": float(self.seen[b]), "unseen": float(self.unseen[b]), "hm": float(self.hm[b]),
                "zsl": float(self.zsl), "beta": float(self.betas[b]), "ausuc": float(self.ausuc)}


def gzsl_metrics(nearest: Nearest, labels: np.ndarray, class_ids: np.ndarray, seen_mask: np.ndarray,
                 betas: np.ndarray, arithmetic: str = "float64") -> GZSLResult:
    """All metrics from each video's nearest seen/unseen candidate.

    labels: (N,) true class ids; class_ids: (C,) sorted candidate ids; seen_mask: (C,) bool.
    Pass a one-element `betas` to evaluate at a fixed beta (test time: the beta chosen on validation).
    arithmetic: float64 (ours) | float32 (the reference's src/utils.py:get_best_evaluation: per-class
    recall, S, U and HM = 2SU / (S + U + eps) in float32 tensors, a class without videos NaN).
    """
    class_ids = np.asarray(class_ids)
    seen_mask = np.asarray(seen_mask, dtype=bool)
    betas = np.atleast_1d(np.asarray(betas, dtype=np.float64))
    label_cols = np.searchsorted(class_ids, labels)
    if np.any(label_cols >= len(class_ids)) or np.any(class_ids[np.minimum(label_cols, len(class_ids) - 1)] != labels):
        raise ValueError("a video's label is not among the candidate classes")
    C = len(class_ids)
    seen_cols, unseen_cols = np.flatnonzero(seen_mask), np.flatnonzero(~seen_mask)
    label_seen = seen_mask[label_cols]
    hit_seen = nearest.seen_col == label_cols  # right class if the video goes to the seen side
    hit_unseen = nearest.unseen_col == label_cols

    goes_seen = _predicts_seen(nearest, betas)  # (n_beta, N)
    correct = np.where(label_seen[None, :], goes_seen & hit_seen[None, :], ~goes_seen & hit_unseen[None, :])
    acc = per_class_accuracy(correct, label_cols, C)  # (n_beta, C)
    zsl_acc = per_class_accuracy(hit_unseen & ~label_seen, label_cols, C)[0]
    if arithmetic == "float32":
        s, u, hm, zsl = _float32_summary(correct, hit_unseen & ~label_seen, label_cols, C, seen_cols, unseen_cols)
    elif arithmetic == "float64":
        s, u = _mean_over(acc, seen_cols), _mean_over(acc, unseen_cols)
        hm = harmonic_mean(s, u)
        zsl = float(_mean_over(zsl_acc, unseen_cols)) if len(unseen_cols) else 0.0
    else:
        raise ValueError(f"arithmetic={arithmetic!r}: expected float64 or float32")
    best = int(np.argmax(hm))  # first maximum
    zsl_acc[seen_cols] = np.nan
    return GZSLResult(betas=betas, seen=s, unseen=u, hm=hm, zsl=zsl,
                      ausuc=ausuc_exact(nearest, label_cols, seen_mask), best=best, class_ids=class_ids,
                      seen_mask=seen_mask, class_accuracy=acc[best], zsl_class_accuracy=zsl_acc)


def _float32_summary(correct, zsl_correct, label_cols, C, seen_cols, unseen_cols):
    """S, U, HM per beta and ZSL as the reference computes them: float32 torch tensors throughout."""
    import torch  # only here: the float64 path needs no torch

    counts = torch.from_numpy(np.bincount(label_cols, minlength=C))  # (C,) int64

    def recall(hits_bool):  # (N,) bool -> (C,) float32, match_counts / target_counts as the reference
        hits = torch.from_numpy(np.bincount(label_cols, weights=hits_bool.astype(np.float64), minlength=C)
                                .astype(np.int64))
        return hits / counts  # int64 / int64 -> float32 (0/0 = NaN)

    eps = np.finfo(float).eps
    s, u, hm = [], [], []
    for row in np.atleast_2d(correct):
        r = recall(row)
        si, ui = r[torch.from_numpy(seen_cols)].mean(), r[torch.from_numpy(unseen_cols)].mean()
        s.append(si.item()), u.append(ui.item()), hm.append(((2 * ui * si) / ((ui + si) + eps)).item())
    zsl = recall(zsl_correct)[torch.from_numpy(unseen_cols)].mean().item() if len(unseen_cols) else 0.0
    return np.array(s), np.array(u), np.array(hm), zsl


def seen_unseen_curve(nearest: Nearest, label_cols: np.ndarray, seen_mask: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """The exact (U, S) curve traced as beta goes from -inf (all seen) to +inf (all unseen)."""
    C = len(seen_mask)
    counts = np.bincount(label_cols, minlength=C).astype(np.float64)
    seen_valid = seen_mask & (counts > 0)
    unseen_valid = ~seen_mask & (counts > 0)
    n_s, n_u = max(seen_valid.sum(), 1), max(unseen_valid.sum(), 1)
    label_seen = seen_mask[label_cols]
    weight = 1.0 / counts[label_cols]
    # each correct video's contribution to S (while it goes seen) or to U (once it goes unseen)
    ds = np.where(label_seen & (nearest.seen_col == label_cols), weight / n_s, 0.0)
    du = np.where(~label_seen & (nearest.unseen_col == label_cols), weight / n_u, 0.0)
    # the video flips from seen to unseen once beta passes unseen_dist - seen_dist
    t = nearest.unseen_dist.astype(np.float64) - nearest.seen_dist.astype(np.float64)
    keep = np.isfinite(t)
    order = np.argsort(t[keep], kind="stable")
    t_sorted = t[keep][order]
    dS, dU = ds[keep][order], du[keep][order]
    s0 = ds.sum()
    # videos with no finite threshold never flip (only one side exists)
    last = np.r_[np.flatnonzero(np.diff(t_sorted) > 0), len(t_sorted) - 1] if len(t_sorted) else np.array([], int)
    S = np.r_[s0, s0 - np.cumsum(dS)[last]]
    U = np.r_[0.0, np.cumsum(dU)[last]]
    return U, S


def area_under_curve(unseen: np.ndarray, seen: np.ndarray) -> float:
    """Trapezoid area of S over U for points ordered by U (AUSUC of a given curve)."""
    unseen, seen = np.asarray(unseen, np.float64), np.asarray(seen, np.float64)
    order = np.argsort(unseen, kind="stable")
    u, s = unseen[order], seen[order]
    return float(np.sum(np.diff(u) * (s[1:] + s[:-1]) / 2))


def ausuc_exact(nearest: Nearest, label_cols: np.ndarray, seen_mask: np.ndarray) -> float:
    if seen_mask.all() or (~seen_mask).all():
        return 0.0
    U, S = seen_unseen_curve(nearest, label_cols, seen_mask)
    return float(np.sum(np.diff(U) * (S[1:] + S[:-1]) / 2))


def curve_summary(nearest: Nearest, labels: np.ndarray, class_ids: np.ndarray, seen_mask: np.ndarray,
                  max_points: int = 200) -> dict:
    """β-free summary of one seen-unseen curve (the report's modality breakdown compares scorings whose
    distance scales differ, so one β means nothing across them; these numbers need no β).

    seen_only: S at β → −∞ (seen videos among seen candidates only); zsl: U at β → +∞ (= the ZSL
    accuracy); ausuc: the exact area; hm_best: the largest HM on the curve, an oracle (its β is
    chosen on this very set: a diagnostic, never a result); curve: at most `max_points` (U, S) points,
    both ends kept."""
    class_ids, seen_mask = np.asarray(class_ids), np.asarray(seen_mask, dtype=bool)
    if seen_mask.all() or (~seen_mask).all():
        raise ValueError("curve_summary needs seen and unseen candidates")
    label_cols = np.searchsorted(class_ids, labels)
    U, S = seen_unseen_curve(nearest, label_cols, seen_mask)
    keep = np.unique(np.linspace(0, len(U) - 1, min(max_points, len(U))).round().astype(np.int64))
    return {"seen_only": float(S[0]), "zsl": float(U[-1]), "ausuc": ausuc_exact(nearest, label_cols, seen_mask),
            "hm_best": float(np.max(harmonic_mean(S, U))),
            "curve": {"unseen": U[keep].tolist(), "seen": S[keep].tolist()}}
