"""Loss terms, each a plain function checked against an explicit loop in tests/test_losses.py.

Registry: `LOSSES[name]` maps a loss-term name used in configs and logs to its function.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES: dict[str, callable] = {}


def register_loss(name: str):
    def wrap(fn):
        LOSSES[name] = fn
        return fn
    return wrap


@register_loss("ce")
def embedding_cross_entropy(theta_o: torch.Tensor, theta_w_classes: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CE over dot-product scores: theta_o (B, E) . theta_w_classes (K, E)^T -> (B, K) logits."""
    return F.cross_entropy(theta_o @ theta_w_classes.t(), target)


@register_loss("reg")
def regression(theta_o: torch.Tensor, theta_w_target: torch.Tensor) -> torch.Tensor:
    """MSE between a video's embedding and its class's text embedding, both (B, E)."""
    return F.mse_loss(theta_o, theta_w_target)


@register_loss("rec")
def reconstruction(w: torch.Tensor, rho_o: torch.Tensor, rho_w: torch.Tensor) -> torch.Tensor:
    """MSE(w', rho_o) + MSE(w', rho_w): both decoders reconstruct the encoded text w' (B, D)."""
    return F.mse_loss(rho_o, w) + F.mse_loss(rho_w, w)
