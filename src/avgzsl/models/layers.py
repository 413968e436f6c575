"""Building blocks shared by several models."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import losses
from ..errors import ConfigError


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(B, T, D) -> (B, D) mean over real steps (mask True); (B, D) passes through.

    How models defined on averaged features take temporal input."""
    if x.ndim == 2:
        return x
    if mask is None:
        return x.mean(dim=1)
    m = mask.unsqueeze(-1).to(x.dtype)  # (B, T, 1)
    return (x * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)  # (B, D)


def video_audio_concat(batch, normalize: bool = False) -> torch.Tensor:
    """concat[video, audio] of the time-averaged features, video first as the AVCA-GZSL baselines read
    them; `normalize` L2-normalises the whole concatenation (the reference's --norm_inputs)."""
    a = masked_mean(batch.audio, batch.audio_mask).float()  # (B, Da)
    v = masked_mean(batch.video, batch.video_mask).float()  # (B, Dv)
    x = torch.cat([v, a], dim=1)  # (B, Dv + Da)
    return F.normalize(x, dim=1) if normalize else x


def clipclap_head_loss(model: nn.Module, theta_o: torch.Tensor, class_text: torch.Tensor, target: torch.Tensor,
                       per_sample: bool = True):
    """ClipClap-GZSL's loss terms for a model with its text/decoder head (W_enc, W_proj, D_o, D_w).

    theta_o (B, E) video embeddings; class_text (K, Dt) training-class texts; target (B,) rows of it.
    per_sample=False takes each video's text embedding from the K-class pass instead of a second pass.
    Returns ({"ce", "reg", "rec"}, theta_w_all (K, E), theta_w (B, E)).
    """
    rho_o = model.D_o(theta_o)  # (B, h)
    w_all = model.W_enc(class_text)  # (K, h)
    theta_w_all = model.W_proj(w_all)  # (K, E)
    if per_sample:  # each video's own class text in a second pass, as in the reference
        w = model.W_enc(class_text[target])  # (B, h)
        theta_w = model.W_proj(w)  # (B, E)
    else:
        w, theta_w = w_all[target], theta_w_all[target]  # (B, h), (B, E)
    terms = {
        "ce": losses.embedding_cross_entropy(theta_o, theta_w_all, target),
        "reg": losses.regression(theta_o, theta_w),
        "rec": losses.reconstruction(w, rho_o, model.D_w(theta_w)),
    }
    return terms, theta_w_all, theta_w


# Which columns of a joint CLIP+CLAP class text a model reads (`text_part`). The joint spaces put the
# 512-d CLIP ViT-B/32 text first (spaces.join_spaces), so CLIP = the first 512 columns, CLAP = the rest.
TEXT_PARTS = ("all", "clip", "clap")
CLIP_TEXT_DIM = 512


def text_columns(part: str, dim: int) -> slice:
    """The columns of a (.., dim) joint text that `part` reads; clip/clap need a joint space."""
    if part == "all":
        return slice(0, dim)
    if dim <= CLIP_TEXT_DIM:
        raise ConfigError(f"text_part={part}: the class text is {dim}-d, not a joint CLIP (512) + CLAP space")
    return slice(0, CLIP_TEXT_DIM) if part == "clip" else slice(CLIP_TEXT_DIM, dim)


def reference_text_part(modalities: str) -> str:
    """The reference's text for a modality ablation (ClipClap-GZSL `--modality`): CLAP text for audio
    only, CLIP text for video only, both for both."""
    return {"audio": "clap", "video": "clip"}.get(modalities, "all")


class EmbeddingNet(nn.Sequential):
    """Linear -> BatchNorm -> ReLU -> Dropout, optionally with a hidden layer of the same form.

    The block of ClipClap-GZSL / AVCA (Mercea et al., CVPR 2022). Input (B, D_in) -> (B, D_out).
    `batch_norm_output` (default: = batch_norm) sets the output layer's BatchNorm apart: the reference's
    switch only reaches the hidden layer's (`batch_norm_scope: hidden`, docs/protocol.md).
    """

    def __init__(self, d_in: int, d_out: int, dropout: float = 0.1, hidden: int = 0, batch_norm: bool = True,
                 batch_norm_output: bool | None = None):
        layers: list[nn.Module] = []
        pairs = [(d_in, hidden), (hidden, d_out)] if hidden > 0 else [(d_in, d_out)]
        for i, (a, b) in enumerate(pairs):
            layers += [nn.Linear(a, b)]
            last = i == len(pairs) - 1
            if (batch_norm if not last or batch_norm_output is None else batch_norm_output):
                layers += [nn.BatchNorm1d(b)]
            layers += [nn.ReLU(), nn.Dropout(dropout)]
        super().__init__(*layers)
