"""ALE, audio-visual version (registry name `ale`).

Akata, Perronnin, Harchaoui, Schmid: "Label-Embedding for Attribute-Based Classification", CVPR 2013
(and "Label-Embedding for Image Classification", TPAMI 2016); audio-visual version of the AVCA-GZSL
benchmark (Mercea et al., CVPR 2022).

    z = W concat[video, audio]   (B, Dv+Da) -> (B, Dt), bias-free (models/linear_compat.py)
    v_ij = max(0, margin + z_i·t_j - z_i·t_{y_i}),  r_i = #{j : v_ij > 0}
    loss = mean_i (l(r_i) / r_i) sum_j v_ij,  l(k) = sum_{i<=k} 1/i     (ranking.ale_rank_loss)

The rank weighting (WSABIE's approximate-rank loss) puts more weight on samples whose true class is
ranked low. Evaluation: L2 distance between z and the raw class text.

Differences from the reference implementation: none in the model or loss (the reference divides by
rank + 1e-8 where we special-case rank 0, whose violations are all 0 anyway).
"""
from __future__ import annotations

from ..losses import ranking
from . import register_model
from .linear_compat import LinearCompatModel


@register_model("ale")
class ALE(LinearCompatModel):
    rank_loss = staticmethod(ranking.ale_rank_loss)
    loss_name = "ale"
