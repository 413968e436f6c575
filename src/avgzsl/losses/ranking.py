"""Loss terms of the comparison methods (docs/baselines.md), registered in `avgzsl.losses.LOSSES`.

Ranking losses over compatibility scores (DeViSE, ALE, SJE), the triplet margin loss of CJME,
AVGZSLNet and AVCA, and the in-batch negative selection those triplets use. Each function is
vectorised (no Python loop over samples) and checked against an explicit loop in
tests/test_baselines.py.

Scores: `scores` (B, K) are compatibilities (larger = more compatible) of B videos with the K
training classes; `target` (B,) indexes the true class. The margin violation of class j is
    v_ij = max(0, margin + s_ij - s_iy)  for j != y_i,   v_iy = 0.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .registry import register_loss

NEGATIVES = ("random", "hardest")


def margin_violations(scores: torch.Tensor, target: torch.Tensor, margin: float) -> torch.Tensor:
    """(B, K) hinge violations v_ij (0 on the true class)."""
    pos = scores.gather(1, target.unsqueeze(1))  # (B, 1) score of the true class
    v = (margin + scores - pos).clamp_min(0.0)  # (B, K)
    is_pos = F.one_hot(target, scores.shape[1]).bool()  # (B, K)
    return v.masked_fill(is_pos, 0.0)


@register_loss("devise")
def devise_rank_loss(scores: torch.Tensor, target: torch.Tensor, margin: float = 0.1) -> torch.Tensor:
    """DeViSE (Frome et al. 2013): sum over classes of the margin violations, mean over the batch."""
    return margin_violations(scores, target, margin).sum(dim=1).mean()


def ale_rank_weights(rank: torch.Tensor) -> torch.Tensor:
    """ALE's rank weight l(k)/k with l(k) = sum_{i<=k} 1/i (the harmonic number), and 0 for k = 0.

    rank: integer tensor of any shape (the number of violating classes of each sample)."""
    k = rank.to(torch.float64)
    n = int(rank.max().item()) if rank.numel() else 0
    harmonic = torch.cat([torch.zeros(1, dtype=torch.float64, device=rank.device),
                          torch.cumsum(1.0 / torch.arange(1, n + 1, dtype=torch.float64, device=rank.device), 0)])
    h = harmonic[rank.long()]  # l(k), with l(0) = 0
    return torch.where(rank > 0, h / k.clamp_min(1.0), torch.zeros_like(h))


@register_loss("ale")
def ale_rank_loss(scores: torch.Tensor, target: torch.Tensor, margin: float = 0.1) -> torch.Tensor:
    """ALE (Akata et al. 2013/2016, the WSABIE-style weighted approximate-rank loss):
    (l(r_i) / r_i) * sum_j v_ij with r_i = #{j : v_ij > 0}; mean over the batch."""
    v = margin_violations(scores, target, margin)  # (B, K)
    rank = (v > 0).sum(dim=1)  # (B,) number of violating classes
    w = ale_rank_weights(rank).to(v.dtype)  # (B,) a constant of the step (the rank is not differentiated)
    return (w * v.sum(dim=1)).mean()


@register_loss("sje")
def sje_max_loss(scores: torch.Tensor, target: torch.Tensor, margin: float = 0.1) -> torch.Tensor:
    """SJE (Akata et al. 2015): the most violating class only, max_j v_ij; mean over the batch."""
    return margin_violations(scores, target, margin).max(dim=1).values.mean()


@register_loss("triplet")
def triplet_margin(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                   margin: float = 1.0, valid: torch.Tensor | None = None,
                   weight: torch.Tensor | None = None) -> torch.Tensor:
    """max(0, margin + ||a - p|| - ||a - n||) per row (all (B, E)), as torch.nn.TripletMarginLoss
    (p = 2, eps = 1e-6 inside the norm, so the gradient is finite at a = p).

    weight (B,): per-row factor (CJME's modality attention); valid (B,) bool: rows that have a
    negative. Returns the mean over valid rows (0, with a graph, when none is valid)."""
    d_ap = F.pairwise_distance(anchor, positive)  # (B,)
    d_an = F.pairwise_distance(anchor, negative)  # (B,)
    per = (margin + d_ap - d_an).clamp_min(0.0)  # (B,)
    if weight is not None:
        per = per * weight
    if valid is None:
        return per.mean()
    valid = valid.to(per.dtype)
    return (per * valid).sum() / valid.sum().clamp_min(1.0)


def random_negatives(target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each sample i, a uniformly random batch index j with target_j != target_i.

    This is the negative of AVGZSLNet/CJME/AVCA: a random video of another class (the reference
    draws it from the dataset; we draw it from the batch, which class-balanced sampling fills with
    many classes). Returns idx (B,) and valid (B,) bool (False where the batch holds no other class;
    idx is then arbitrary and the row must be left out). Uses the global torch RNG, so runs are
    reproducible and resumable with the protocol's saved RNG state."""
    other = target.unsqueeze(0) != target.unsqueeze(1)  # (B, B): other[i, j] = class of j differs
    valid = other.any(dim=1)  # (B,)
    w = other.float()
    w[~valid] = 1.0  # any index; the row is masked out by `valid`
    idx = torch.multinomial(w, 1).squeeze(1)  # (B,)
    return idx, valid


def hardest_negatives(anchor: torch.Tensor, pool: torch.Tensor, target: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """For each anchor i (B, E), the row j of `pool` (B, E; row j belongs to class target_j) with
    target_j != target_i nearest to the anchor (L2). Selection only: no gradient flows through it."""
    with torch.no_grad():
        d = torch.cdist(anchor.float(), pool.float())  # (B, B)
        same = target.unsqueeze(0) == target.unsqueeze(1)  # (B, B)
        d = d.masked_fill(same, float("inf"))
        idx = d.argmin(dim=1)  # (B,)
        valid = (~same).any(dim=1)  # (B,)
    return idx, valid


class NegativePicker:
    """One step's negatives. `random`: one random other-class sample j per anchor, shared by every
    triplet of the step (the reference draws one negative video per positive and uses its audio,
    video and class text in all triplets). `hardest`: each triplet takes, per anchor, the nearest
    other-class row of its own negative pool (batch-hard mining)."""

    def __init__(self, mode: str, target: torch.Tensor):
        if mode not in NEGATIVES:
            raise ValueError(f"negatives={mode!r}: expected one of {', '.join(NEGATIVES)}")
        self.mode, self.target = mode, target
        self._random = random_negatives(target) if mode == "random" else None

    @property
    def random_index(self) -> torch.Tensor | None:
        """(B,) the batch row of each anchor's random negative (`random` mode), else None."""
        return None if self._random is None else self._random[0]

    def __call__(self, anchor: torch.Tensor, pool: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Negatives (B, E) for `anchor` taken from `pool` (rows aligned with the batch), and valid."""
        idx, valid = self._random if self._random is not None else hardest_negatives(anchor, pool, self.target)
        return pool[idx], valid

    def triplet(self, anchor: torch.Tensor, positive: torch.Tensor, pool: torch.Tensor, margin: float,
                weight: torch.Tensor | None = None) -> torch.Tensor:
        neg, valid = self(anchor, pool)
        return triplet_margin(anchor, positive, neg, margin, valid=valid, weight=weight)
