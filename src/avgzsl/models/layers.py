"""Building blocks shared by several models."""
from __future__ import annotations

from torch import nn


class EmbeddingNet(nn.Sequential):
    """Linear -> BatchNorm -> ReLU -> Dropout, optionally with a hidden layer of the same form.

    The block of ClipClap-GZSL / AVCA (Mercea et al., CVPR 2022). Input (B, D_in) -> (B, D_out).
    """

    def __init__(self, d_in: int, d_out: int, dropout: float = 0.1, hidden: int = 0, batch_norm: bool = True):
        layers: list[nn.Module] = []
        for a, b in ([(d_in, hidden), (hidden, d_out)] if hidden > 0 else [(d_in, d_out)]):
            layers += [nn.Linear(a, b)]
            if batch_norm:
                layers += [nn.BatchNorm1d(b)]
            layers += [nn.ReLU(), nn.Dropout(dropout)]
        super().__init__(*layers)
