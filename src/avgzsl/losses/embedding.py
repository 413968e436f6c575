"""Loss terms of ClipClap-GZSL and MFT over embeddings, each a plain function checked against an explicit
loop in tests/test_losses.py. Registered by name in `avgzsl.losses.LOSSES`."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .registry import register_loss

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


# ---------------------------------------------------------------------------------------------------
# MFT terms (models/mft.py; docs/method.md). The paper names an l_kl and an l_cos; their exact form
# (target distribution, temperature, pairing) is OUR choice, documented in docs/method.md.
# ---------------------------------------------------------------------------------------------------

KL_TARGETS = ("smoothed", "semantic", "mixed", "nontarget")


@register_loss("kl")
def kl_divergence(theta_o: torch.Tensor, theta_w_classes: torch.Tensor, q: torch.Tensor,
                  tau: float = 1.0, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """KL(q || p), batch mean, with p = softmax(theta_o (B, E) . theta_w_classes (K, E)^T / tau).

    q (B, K) is a fixed target distribution (rows sum to 1; zeros allowed: 0 log 0 = 0). With a one-hot
    q and tau = 1 this equals `embedding_cross_entropy` (the entropy of a one-hot q is 0).

    exclude (B,) class indices: p is renormalised over the other K - 1 classes of each row (q must be 0
    there), the non-target term of decoupled knowledge distillation (Zhao et al., CVPR 2022). Its
    gradient on the excluded logit is exactly 0, so it only shapes how the wrong classes are ranked
    against each other and can never act as a second cross-entropy."""
    logits = theta_o @ theta_w_classes.t() / tau  # (B, K)
    if exclude is None:
        log_p = F.log_softmax(logits, dim=1)  # (B, K)
    else:
        own = F.one_hot(exclude, logits.shape[1]).bool()  # (B, K)
        log_p = F.log_softmax(logits.masked_fill(own, float("-inf")), dim=1).masked_fill(own, 0.0)  # (B, K)
    return (torch.special.xlogy(q, q) - q * log_p).sum(dim=1).mean()


def smoothed_target(target: torch.Tensor, n_classes: int, eps: float) -> torch.Tensor:
    """(B, K): (1 - eps) one-hot + eps / K everywhere (PyTorch's label smoothing convention)."""
    one_hot = F.one_hot(target, n_classes).float()  # (B, K)
    return (1.0 - eps) * one_hot + eps / n_classes


def semantic_target(class_text: torch.Tensor, target: torch.Tensor, tau_q: float) -> torch.Tensor:
    """(B, K): softmax over k of cos(text[y_i], text[k]) / tau_q, from the RAW text embeddings
    class_text (K, Dt), so the target is fixed (no gradient, no learned weights). A zero text row has
    cosine 0 with everything."""
    with torch.no_grad():
        t = F.normalize(class_text.float(), dim=1)  # (K, Dt)
        sim = t[target] @ t.t()  # (B, K)
        return F.softmax(sim / tau_q, dim=1)


def mixed_target(class_text: torch.Tensor, target: torch.Tensor, eps: float, tau_q: float) -> torch.Tensor:
    """(B, K): (1 - eps) one-hot + eps * semantic_target."""
    one_hot = F.one_hot(target, class_text.shape[0]).float()  # (B, K)
    return (1.0 - eps) * one_hot + eps * semantic_target(class_text, target, tau_q)


def nontarget_target(class_text: torch.Tensor, target: torch.Tensor, tau_q: float) -> torch.Tensor:
    """(B, K): softmax over the classes k != y_i of cos(text[y_i], text[k]) / tau_q, and 0 at y_i: how
    the text ranks the wrong classes, with the true class (cosine 1 with itself) left out, so low text
    similarities still give a spread-out target instead of a near one-hot one."""
    with torch.no_grad():
        t = F.normalize(class_text.float(), dim=1)  # (K, Dt)
        sim = (t[target] @ t.t()) / tau_q  # (B, K)
        own = F.one_hot(target, class_text.shape[0]).bool()  # (B, K)
        return F.softmax(sim.masked_fill(own, float("-inf")), dim=1)


def kl_target(kind: str, class_text: torch.Tensor, target: torch.Tensor, eps: float,
              tau_q: float) -> torch.Tensor:
    """The target q (B, K) of `kl_divergence`: kind in KL_TARGETS (`nontarget` goes with
    `kl_divergence(..., exclude=target)`)."""
    if kind == "nontarget":
        return nontarget_target(class_text, target, tau_q)
    if kind == "smoothed":
        return smoothed_target(target, class_text.shape[0], eps)
    if kind == "semantic":
        return semantic_target(class_text, target, tau_q)
    if kind == "mixed":
        return mixed_target(class_text, target, eps, tau_q)
    raise ValueError(f"unknown KL target {kind!r}; expected one of {', '.join(KL_TARGETS)}")


def pairwise_cosine(theta_o: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean of 1 - cos(theta_o_i, theta_o_j) over ordered pairs i != j with target_i == target_j.

    Vectorised over the (B, B) cosine matrix; 0 (with a graph, so backward works) when the batch has
    no repeated class."""
    z = F.normalize(theta_o, dim=1)  # (B, E)
    same = target.unsqueeze(0) == target.unsqueeze(1)  # (B, B)
    same = same & ~torch.eye(len(target), dtype=torch.bool, device=target.device)  # i != j; vmaps (fill_diagonal_ not)
    dist = 1.0 - z @ z.t()  # (B, B)
    n_pairs = same.sum()
    return (dist * same).sum() / n_pairs.clamp_min(1)


@register_loss("cos")
def cosine_consistency(theta_o: torch.Tensor, theta_w_target: torch.Tensor,
                       target: torch.Tensor | None = None, pairwise: bool = False) -> torch.Tensor:
    """1 - cos(theta_o_i, theta_w(y_i)) averaged over the batch (`anchor`, both (B, E)); with
    `pairwise`, plus `pairwise_cosine(theta_o, target)` (same-class video pairs)."""
    anchor = (1.0 - F.cosine_similarity(theta_o, theta_w_target, dim=1)).mean()
    if not pairwise:
        return anchor
    if target is None:
        raise ValueError("cosine_consistency(pairwise=True) needs the batch's target labels")
    return anchor + pairwise_cosine(theta_o, target)
