"""Loss terms by name. `embedding` holds ClipClap-GZSL's and MFT's terms, `ranking` the comparison
methods' ranking and triplet losses, `apn` APN's double-softmax CE; each registers itself in `LOSSES`
(`registry.py`)."""
from __future__ import annotations

from .registry import LOSSES, register_loss
from .embedding import (
    embedding_cross_entropy, regression, reconstruction, kl_divergence, smoothed_target,
    semantic_target, nontarget_target, mixed_target, kl_target, pairwise_cosine, cosine_consistency, KL_TARGETS,
)
from .ranking import (
    margin_violations, devise_rank_loss, ale_rank_weights, ale_rank_loss, sje_max_loss,
    triplet_margin, random_negatives, hardest_negatives, NegativePicker, NEGATIVES,
)
from .apn import double_softmax_cross_entropy

__all__ = [
    "embedding_cross_entropy",
    "regression",
    "reconstruction",
    "kl_divergence",
    "smoothed_target",
    "semantic_target",
    "nontarget_target",
    "mixed_target",
    "kl_target",
    "pairwise_cosine",
    "cosine_consistency",
    "KL_TARGETS",
    "margin_violations",
    "devise_rank_loss",
    "ale_rank_weights",
    "ale_rank_loss",
    "sje_max_loss",
    "triplet_margin",
    "random_negatives",
    "hardest_negatives",
    "NegativePicker",
    "NEGATIVES",
    "double_softmax_cross_entropy",
    "LOSSES",
    "register_loss",
]
