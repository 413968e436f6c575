"""SJE, audio-visual version (registry name `sje`).

Akata, Reed, Walter, Lee, Schiele: "Evaluation of Output Embeddings for Fine-Grained Image
Classification", CVPR 2015; audio-visual version of the AVCA-GZSL benchmark (Mercea et al., CVPR 2022).

    z = W concat[video, audio]   (B, Dv+Da) -> (B, Dt), bias-free (models/linear_compat.py)
    loss = mean_i max_{j != y_i} max(0, margin + z_i·t_j - z_i·t_{y_i})   (ranking.sje_max_loss)

Only the most violating class contributes (structured SVM). Evaluation: L2 distance between z and the
raw class text.

Differences from the reference implementation: none in the model or loss.
"""
from __future__ import annotations

from ..losses import ranking
from . import register_model
from .linear_compat import LinearCompatModel


@register_model("sje")
class SJE(LinearCompatModel):
    packable = True  # its step vmaps (tests/test_pack.py); packed runs train together
    rank_loss = staticmethod(ranking.sje_max_loss)
    loss_name = "sje"
