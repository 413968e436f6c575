"""Shared code of the linear compatibility baselines `devise`, `ale` and `sje` (no model registered here).

The audio-visual versions of these image ZSL methods were defined by the AVCA-GZSL benchmark
(Mercea, Riesch, Koepke, Akata: "Audio-visual Generalized Zero-shot Learning with Cross-modal
Attention and Language", CVPR 2022): one bias-free linear map W from the concatenated video and
audio features to the text-embedding space,

    x      = concat[video, audio]                 (B, Dv + Da)   (optionally L2-normalised)
    z      = W x                                  (B, Dt)        W: Dv + Da -> Dt, no bias
    scores = z · textᵀ over the K training classes (B, K)

trained with a hinge ranking loss with margin (the three methods differ only in that loss:
losses.ranking.devise_rank_loss / ale_rank_loss / sje_max_loss). Evaluation: L2 distance between
z and the RAW class text embedding (`embed_classes` returns the text itself), as the reference
evaluates `cdist(W x, text)`.

Dropout (training only) on the concatenated input and on the class texts, as the reference does.
Temporal inputs (B, T, D) are mean-pooled over real steps first (the methods are defined on
averaged features).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

import torch
from torch import nn

from ..settings import PROB, WEIGHT, setting
from ..data.types import FeatureDims
from .layers import video_audio_concat
from .base import Batch, GZSLModel


@dataclass
class LinearCompatConfig:
    margin: float = setting(0.1, WEIGHT)  # ranking margin (the reference's ClsContrastiveLoss(margin=0.1))
    dropout: float = setting(0.2, PROB)  # on concat[video, audio] in training (reference --dropout_baselines;
    #                                      0 on VGGSound)
    dropout_text: float = setting(0.2, PROB)  # on the class texts in training (the reference applies the same dropout)
    normalize_inputs: bool = False  # L2-normalise concat[video, audio] (reference --norm_inputs, used for cls features)


class LinearCompatModel(GZSLModel):
    """z = W concat[video, audio]; subclasses set `rank_loss` (scores, target, margin) -> scalar."""

    Config = LinearCompatConfig
    reference_code = "avca-gzsl"  # DeViSE, ALE, SJE as AVCA-GZSL runs them
    rank_loss: ClassVar[Callable[..., torch.Tensor]]
    loss_name: ClassVar[str] = "rank"

    def __init__(self, cfg: LinearCompatConfig, dims: FeatureDims):
        super().__init__(cfg, dims)
        self.W = nn.Linear(dims.video + dims.audio, dims.text, bias=False)
        self.drop_in = nn.Dropout(cfg.dropout)
        self.drop_text = nn.Dropout(cfg.dropout_text)

    def _inputs(self, batch: Batch) -> torch.Tensor:
        return video_audio_concat(batch, self.cfg.normalize_inputs)  # (B, Dv + Da)

    def embed_videos(self, batch: Batch) -> torch.Tensor:
        return self.W(self.drop_in(self._inputs(batch)))  # (B, Dt); dropout is a no-op in eval

    def embed_classes(self, text: torch.Tensor) -> torch.Tensor:
        return text.float()  # (C, Dt): the raw text embedding is the class prototype

    def scores(self, batch: Batch, class_text: torch.Tensor) -> torch.Tensor:
        """(B, K) compatibilities z · textᵀ (text dropout applies in training)."""
        return self.embed_videos(batch) @ self.drop_text(class_text.float()).t()

    def loss(self, batch, class_text, target):
        rank = type(self).rank_loss(self.scores(batch, class_text), target, self.cfg.margin)
        return rank, {self.loss_name: rank.detach(), "total": rank.detach()}
