"""APN's classification term as the AVCA-GZSL benchmark trains it (models/apn.py; docs/baselines.md).

Registered in `avgzsl.losses.LOSSES` as `apn_ce`; checked against an explicit per-sample loop in
tests/test_apn.py. APN's other term, the attribute regression, is the plain MSE of `embedding.regression`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .registry import register_loss


@register_loss("apn_ce")
def double_softmax_cross_entropy(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of p = softmax(scores) used as logits: mean_i -log softmax(p_i)_{y_i}.

    scores (B, K) compatibilities, target (B,) rows. The reference's model returns softmax
    probabilities and its nn.CrossEntropyLoss applies log-softmax again (APN's own code does the same).
    Because p lies in [0, 1], the term is bounded below by log(1 + (K - 1)/e) (reached at p = one-hot),
    and at equal scores (APN's tiny initialisation) the extra softmax's Jacobian scales the gradient
    by exactly 1/K relative to F.cross_entropy(scores, target)."""
    probs = scores.softmax(dim=1)  # (B, K) the model's output in the reference
    return F.cross_entropy(probs, target)  # the second (log-)softmax, as nn.CrossEntropyLoss
