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
  BatchNorm running statistics twice per batch; we do one forward per step (`reference_second_forward`
  is that pass, made in reference mode: behaviour `double_bn`).
- the reference calls W_enc/W_proj on the batch's texts before the training-class texts of the CE term;
  we encode the class texts first (`reference_loss` keeps its order: behaviour `call_order`).
- the reference's audio-only / video-only runs read only the CLAP / CLIP part of the text; we keep all
  of it (`text_part`; reference mode: behaviour `modality_text`), and its BatchNorm switch leaves the
  output BatchNorm of every block in place (`batch_norm_scope: hidden`; behaviour `bn_scope`).
- temporal inputs (B, T, D) are mean-pooled over real steps before the encoder (the reference model is
  defined on averaged features only).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from .. import losses
from ..settings import PROB, WIDTH, setting
from ..data.types import FeatureDims
from ..errors import ConfigError
from . import register_model
from .base import Batch, GZSLModel
from .layers import (TEXT_PARTS, EmbeddingNet, clipclap_head_loss, masked_mean, reference_text_part,
                     text_columns)


@dataclass
class ClipClapConfig:
    hidden: int = setting(512, WIDTH)  # width of O_enc/W_enc outputs and of the O_proj/D_o hidden layer
    dim_out: int = setting(64, WIDTH)  # embedding dim of θo, θw
    dropout_encoder: float = setting(0.1, PROB)  # O_enc, W_enc
    dropout_decoder: float = setting(0.1, PROB)  # O_proj, D_o
    dropout_text: float = setting(0.1, PROB)  # W_proj, D_w ("additional_dropout" in the reference)
    batch_norm: bool = True  # BatchNorm in the projection/decoder blocks
    batch_norm_scope: str = "all"  # all: batch_norm reaches every BatchNorm of those blocks | hidden: only
    #                                the hidden layer's (the reference's embeddings_batch_norm)
    modalities: str = "both"  # both | audio | video
    text_part: str = "all"  # all | clip | clap: the columns of the joint CLIP+CLAP text W_enc reads

    def __post_init__(self):
        for key, allowed in (("modalities", ("both", "audio", "video")), ("text_part", TEXT_PARTS),
                             ("batch_norm_scope", ("all", "hidden"))):
            if getattr(self, key) not in allowed:
                raise ConfigError(f"clipclap.{key}={getattr(self, key)!r}: expected one of {', '.join(allowed)}")

    def for_reference(self, behaviours: frozenset) -> "ClipClapConfig":
        """This config as the reference code runs it (config.REFERENCE_BEHAVIOURS)."""
        cfg = dataclasses.replace(self)
        if "modality_text" in behaviours:
            cfg.text_part = reference_text_part(self.modalities)
        if "bn_scope" in behaviours:
            cfg.batch_norm_scope = "hidden"
        return cfg


@register_model("clipclap")
class ClipClap(GZSLModel):
    Config = ClipClapConfig
    packable = True  # its step vmaps (tests/test_pack.py); packed runs train together

    def __init__(self, cfg: ClipClapConfig, dims: FeatureDims):
        super().__init__(cfg, dims)
        d_in = {"both": dims.video + dims.audio, "audio": dims.audio, "video": dims.video}[cfg.modalities]
        h = cfg.hidden
        self.text_cols = text_columns(cfg.text_part, dims.text)
        bn = {"batch_norm": cfg.batch_norm, "batch_norm_output": True if cfg.batch_norm_scope == "hidden" else None}
        self.O_enc = EmbeddingNet(d_in, h, cfg.dropout_encoder)
        self.W_enc = EmbeddingNet(self.text_cols.stop - self.text_cols.start, h, cfg.dropout_encoder)
        self.O_proj = EmbeddingNet(h, cfg.dim_out, cfg.dropout_decoder, hidden=h, **bn)
        self.D_o = EmbeddingNet(cfg.dim_out, h, cfg.dropout_decoder, hidden=h, **bn)
        self.W_proj = EmbeddingNet(h, cfg.dim_out, cfg.dropout_text, **bn)
        self.D_w = EmbeddingNet(cfg.dim_out, h, cfg.dropout_text, **bn)

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
        return self.W_proj(self.W_enc(text[:, self.text_cols]))  # (C, Dt_part) -> (C, E)

    def loss(self, batch, class_text, target):
        class_text = class_text[:, self.text_cols]  # (K, Dt_part)
        terms, _, _ = clipclap_head_loss(self, self.embed_videos(batch), class_text, target)
        total = terms["ce"] + terms["reg"] + terms["rec"]
        return total, {**{k: v.detach() for k, v in terms.items()}, "total": total.detach()}

    def reference_loss(self, batch, class_text, target):
        """The same loss with the reference's order of module calls (ClipClap_model.forward, then
        compute_loss): O_enc, W_enc(batch texts), O_proj, D_o, W_proj, D_w, and only then the K class
        texts for CE; summed rec + reg + ce. Same gradients; BatchNorm updates and dropout draws in its order."""
        class_text = class_text[:, self.text_cols]  # (K, Dt_part)
        o = self.O_enc(self._inputs(batch))  # (B, h)
        w = self.W_enc(class_text[target])  # (B, h)
        theta_o = self.O_proj(o)  # (B, E)
        rho_o = self.D_o(theta_o)  # (B, h)
        theta_w = self.W_proj(w)  # (B, E)
        rho_w = self.D_w(theta_w)  # (B, h)
        theta_w_all = self.W_proj(self.W_enc(class_text))  # (K, E)
        terms = {"ce": losses.embedding_cross_entropy(theta_o, theta_w_all, target),
                 "reg": losses.regression(theta_o, theta_w), "rec": losses.reconstruction(w, rho_o, rho_w)}
        total = terms["rec"] + terms["reg"] + terms["ce"]
        return total, {**{k: v.detach() for k, v in terms.items()}, "total": total.detach()}

    def reference_second_forward(self, batch, class_text, target) -> None:
        """The reference's get_embeddings call after every optimiser step (src/train.py:train_step), in
        train mode: O_enc, W_enc on the batch's class texts, O_proj, W_proj. It only updates BatchNorm
        running statistics (a second time per step) and draws dropout masks; outputs are dropped."""
        o = self.O_enc(self._inputs(batch))  # (B, h)
        w = self.W_enc(class_text[target][:, self.text_cols])  # (B, h)
        self.O_proj(o)
        self.W_proj(w)
