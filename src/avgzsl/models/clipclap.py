"""ClipClap-GZSL baseline (registry name `clipclap`).

Kurzendoerfer, Mercea, Koepke, Akata: "Audio-visual Generalized Zero-shot Learning using Pre-trained
Large Multi-modal Models", CVPR Workshops 2024.

    o   = O_enc(concat[video, audio])          (B, Dv+Da) -> (B, 512)
    w'  = W_enc(text)                          (K, Dt)    -> (K, 512)
    θo  = O_proj(o)   512 -> 512 -> 64         ρo = D_o(θo)  64 -> 512 -> 512
    θw  = W_proj(w')  512 -> 64                ρw = D_w(θw)  64 -> 512
    loss = CE(θo·θw(train classes)ᵀ, y) + MSE(θo, θw(y)) + MSE(w', ρo) + MSE(w', ρw)

Evaluation: L2 distance between θo and θw, in eval mode.

Differences from the reference implementation, on purpose:
- the reference runs an extra train-mode forward pass after every optimiser step, which updates the
  BatchNorm running statistics twice per batch; we do one forward per step.
- temporal inputs (B, T, D) are mean-pooled over real steps before the encoder (the reference model is
  defined on averaged features only).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..settings import PROB, WIDTH, setting
from ..data.types import FeatureDims
from ..errors import ConfigError
from . import register_model
from .base import Batch, GZSLModel
from .layers import EmbeddingNet, clipclap_head_loss, masked_mean


@dataclass
class ClipClapConfig:
    hidden: int = setting(512, WIDTH)  # width of O_enc/W_enc outputs and of the O_proj/D_o hidden layer
    dim_out: int = setting(64, WIDTH)  # embedding dim of θo, θw
    dropout_encoder: float = setting(0.1, PROB)  # O_enc, W_enc
    dropout_decoder: float = setting(0.1, PROB)  # O_proj, D_o
    dropout_text: float = setting(0.1, PROB)  # W_proj, D_w ("additional_dropout" in the reference)
    batch_norm: bool = True  # BatchNorm in the projection/decoder blocks
    modalities: str = "both"  # both | audio | video

    def __post_init__(self):
        if self.modalities not in ("both", "audio", "video"):
            raise ConfigError(f"clipclap.modalities={self.modalities!r}: expected both, audio or video")


@register_model("clipclap")
class ClipClap(GZSLModel):
    Config = ClipClapConfig

    def __init__(self, cfg: ClipClapConfig, dims: FeatureDims):
        super().__init__(cfg, dims)
        d_in = {"both": dims.video + dims.audio, "audio": dims.audio, "video": dims.video}[cfg.modalities]
        h = cfg.hidden
        self.O_enc = EmbeddingNet(d_in, h, cfg.dropout_encoder)
        self.W_enc = EmbeddingNet(dims.text, h, cfg.dropout_encoder)
        self.O_proj = EmbeddingNet(h, cfg.dim_out, cfg.dropout_decoder, hidden=h, batch_norm=cfg.batch_norm)
        self.D_o = EmbeddingNet(cfg.dim_out, h, cfg.dropout_decoder, hidden=h, batch_norm=cfg.batch_norm)
        self.W_proj = EmbeddingNet(h, cfg.dim_out, cfg.dropout_text, batch_norm=cfg.batch_norm)
        self.D_w = EmbeddingNet(cfg.dim_out, h, cfg.dropout_text, batch_norm=cfg.batch_norm)

    def _inputs(self, batch: Batch) -> torch.Tensor:
        a = masked_mean(batch.audio, batch.audio_mask).float()
        v = masked_mean(batch.video, batch.video_mask).float()
        if self.cfg.modalities == "audio":
            return a
        if self.cfg.modalities == "video":
            return v
        return torch.cat([v, a], dim=1)  # (B, Dv + Da), video first as in the reference

    def embed_videos(self, batch: Batch) -> torch.Tensor:
        return self.O_proj(self.O_enc(self._inputs(batch)))  # (B, E)

    def embed_classes(self, text: torch.Tensor) -> torch.Tensor:
        return self.W_proj(self.W_enc(text))  # (C, E)

    def loss(self, batch, class_text, target):
        terms, _, _ = clipclap_head_loss(self, self.embed_videos(batch), class_text, target)
        total = terms["ce"] + terms["reg"] + terms["rec"]
        return total, {**{k: v.detach() for k, v in terms.items()}, "total": total.detach()}
