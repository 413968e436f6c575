"""DeViSE, audio-visual version (registry name `devise`).

Frome, Corrado, Shlens, Bengio, Dean, Ranzato, Mikolov: "DeViSE: A Deep Visual-Semantic Embedding
Model", NeurIPS 2013; audio-visual version of the AVCA-GZSL benchmark (Mercea et al., CVPR 2022).

    z = W concat[video, audio]   (B, Dv+Da) -> (B, Dt), bias-free (models/linear_compat.py)
    loss = mean_i sum_{j != y_i} max(0, margin + z_i·t_j - z_i·t_{y_i})   (ranking.devise_rank_loss)

Evaluation: L2 distance between z and the raw class text.

Differences from the reference implementation: none in the model or loss. The reference selects its
stage-2 checkpoint with the test set; our protocol (docs/protocol.md) never looks at test labels.
"""
from __future__ import annotations

from ..losses import ranking
from . import register_model
from .linear_compat import LinearCompatModel


@register_model("devise")
class DeViSE(LinearCompatModel):
    packable = True  # its step vmaps (tests/test_pack.py); packed runs train together
    rank_loss = staticmethod(ranking.devise_rank_loss)
    loss_name = "devise"
