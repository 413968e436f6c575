"""TCAF (registry name `tcaf`).

Mercea, Hummel, Koepke, Akata: "Temporal and Cross-modal Attention for Audio-Visual Zero-Shot
Learning", ECCV 2022.

    per real time step:  e_a,t = A_enc(audio_t)   Da -> [enc_hidden] -> d     (Linear-BN-ReLU-Dropout)
                         e_v,t = V_enc(video_t)   Dv -> [enc_hidden] -> d
    token_m,t = Dropout(Linear(concat[e_m,t, mod_m + time(τ_m,t)]))   (d + embed_dim) -> d
                mod_m: learned modality embedding, time(τ): embedding of the step's time τ in SECONDS
                (Batch.audio_times / video_times; the step index when absent)
    x   = [CLS, audio_1..Ta, video_1..Tv]                              (B, 1 + Ta + Tv, d)
    h   = depth x PreNormBlock(x, allowed)                              cross-modal attention mask:
          an audio token attends to [CLS] + the real video tokens, a video token to [CLS] + the real
          audio tokens (no token attends to its own modality), [CLS] attends to every real token
    c_o = h[:, 0]                                                       (B, d)
    head, losses: ClipClap-GZSL's (models/clipclap.py), with c_o in place of O_enc(x):
    θo = O_proj(c_o)   d -> hidden -> dim_out     ρo = D_o(θo)   dim_out -> hidden -> hidden
    w' = W_enc(text)   Dt -> hidden               θw = W_proj(w')  hidden -> dim_out    ρw = D_w(θw)
    loss = CE(θo·θw(train classes)ᵀ, y) + MSE(θo, θw(y)) + MSE(w', ρo) + MSE(w', ρw)

Evaluation: L2 distance between θo and θw (the base class's `distances`), in eval mode.

Averaged inputs (B, D) are one time step per modality at time 0 (the sequence is [CLS, a, v]).
`attention: cross` (default, TCAF's best configuration) | `full` (every token attends to every real
token) | `self` (tokens attend only within their modality; [CLS] to all).

Defaults are SMALLER than the reference's (d 300, depth 6, 8 heads of 64, encoder hidden 512) so that
a training step stays CPU-friendly (docs/baselines.md lists the measured step times); the reference
sizes are config values away.

Differences from the reference code, on purpose:
- the reference computes the time embedding from the step times in training but from the step index
  in evaluation (its `get_embeddings` does not pass the times); we use the times in both.
- the reference runs the per-step encoders (with BatchNorm) over padded steps too, so the zero padding
  enters the BatchNorm statistics; we encode real steps only.
- the reference scales audio by 1/255 and L2-normalises video over the TIME axis (F.normalize's default
  dim=1 on a (B, T, D) tensor); we take the features as given (`normalize_inputs: l2` normalises each
  step's feature vector instead).
- the reference shares one LayerNorm between the attention and feed-forward sub-layers of a block; we
  use one per sub-layer (the usual pre-norm block, models/avca.PreNormBlock).
- head: ClipClap-GZSL's (text through W_enc first, reconstruction of w'); TCAF's head reconstructs
  the raw 300-d text, which only works when the token width equals the text dim.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..settings import DEPTH, PROB, WEIGHT, WIDTH, WIDTH0, setting
from ..data.types import FeatureDims
from ..errors import ConfigError
from . import register_model
from .avca import PreNormBlock
from .base import Batch, GZSLModel
from .layers import EmbeddingNet, clipclap_head_loss

ATTENTION = ("cross", "full", "self")
TIME_EMBEDDINGS = ("fourier", "none")
CLS, AUDIO, VIDEO = 0, 1, 2  # segment ids of the token sequence


@dataclass
class TCAFConfig:
    # --- per-step encoders and tokens ---
    d_model: int = setting(128, WIDTH)  # token width d (reference: 300)
    enc_hidden: int = setting(0, WIDTH0)  # A_enc/V_enc hidden width; 0 = one Linear-BN-ReLU-Dropout layer
    #                                       (reference: 512)
    dropout_encoder: float = setting(0.3, PROB)  # A_enc, V_enc, W_enc (reference --embedding_dropout 0.3)
    embed_dim: int = setting(64, "[2, 65536]")  # width of the modality + time embedding concatenated to each
    #                                             step (reference: 64)
    dropout_embedding: float = setting(0.2, PROB)  # after the token projection (reference
    #                                                transformer_embedding_dropout)
    time_embedding: str = "fourier"  # fourier: random Fourier features of τ (s) -> Linear | none
    fourier_scale: float = setting(10.0, WEIGHT)  # std of the Fourier frequencies, cycles per second (reference: 10)
    normalize_inputs: str = "none"  # none | l2 (each step's feature vector)
    # --- transformer ---
    depth: int = setting(2, DEPTH)  # blocks (reference: 6 on UCF/ActivityNet, 8 on VGGSound). With 1 block the
    #                                 cross-modal mask cannot reach [CLS] (it reads the tokens before they attend
    #                                 across), so 2 is the minimum that uses cross-modal attention
    heads: int = setting(4, WIDTH)  # reference: 8
    dim_head: int = setting(32, WIDTH)  # reference: 64
    mlp_dim: int = setting(128, WIDTH)  # reference: 128
    dropout_transformer: float = setting(0.3, PROB)  # reference: 0.3 (UCF)
    attention: str = "cross"  # cross | full | self
    # --- ClipClap-style head (models/clipclap.py) ---
    hidden: int = setting(512, WIDTH)  # W_enc output, O_proj/D_o hidden width (reference decoder_hidden_size 512)
    dim_out: int = setting(64, WIDTH)  # θo, θw (reference: 64)
    dropout_decoder: float = setting(0.1, PROB)  # O_proj, D_o (reference --decoder_dropout 0.1)
    dropout_text: float = setting(0.1, PROB)  # W_proj, D_w (reference --additional_dropout 0.1)

    def __post_init__(self):
        if self.attention not in ATTENTION:
            raise ConfigError(f"tcaf.attention={self.attention!r}: expected one of {', '.join(ATTENTION)}")
        if self.time_embedding not in TIME_EMBEDDINGS:
            raise ConfigError(f"tcaf.time_embedding={self.time_embedding!r}: expected one of "
                              f"{', '.join(TIME_EMBEDDINGS)}")
        if self.normalize_inputs not in ("none", "l2"):
            raise ConfigError(f"tcaf.normalize_inputs={self.normalize_inputs!r}: expected none or l2")
        if self.embed_dim % 2:
            raise ConfigError(f"tcaf.embed_dim={self.embed_dim}: must be even (sine and cosine halves)")


def _as_steps(x: torch.Tensor, mask: torch.Tensor | None, times: torch.Tensor | None):
    """Averaged (B, D) -> one step (B, 1, D) at time 0. Missing mask: all steps real; missing times:
    the step index. Returns x (B, T, D), mask (B, T) bool, times (B, T) float."""
    if x.ndim == 2:
        x = x.unsqueeze(1)  # (B, 1, D)
        mask = times = None  # a (B, D) input has no steps to mask or time
    B, T, _ = x.shape
    if mask is None:
        mask = torch.ones(B, T, dtype=torch.bool, device=x.device)
    if times is None:
        times = torch.arange(T, dtype=torch.float32, device=x.device).expand(B, T)
    return x, mask.bool(), times.float()


def encode_real_steps(enc: nn.Module, x: torch.Tensor, mask: torch.Tensor, d_out: int) -> torch.Tensor:
    """Run `enc` on the real steps only (BatchNorm sees no padding): (B, T, D) -> (B, T, d_out),
    zeros at padded steps."""
    B, T, _ = x.shape
    real = enc(x[mask])  # (N_real, d_out): real steps of all videos, row-major over (B, T)
    out = real.new_zeros(B, T, d_out)
    return out.index_put((mask,), real)  # scatter back; differentiable


def attention_mask(seg: torch.Tensor, real: torch.Tensor, mode: str) -> torch.Tensor:
    """(B, L, L) bool, True where query i may attend to key j.

    seg (L,): segment id of each position (CLS, AUDIO, VIDEO); real (B, L): real (non-padded) token.
    Keys must be real; `cross` also forbids keys of the query's own modality, `self` those of the
    other modality. Every query may attend to [CLS] (so no row is empty, padded queries included)."""
    q_seg, k_seg = seg.view(-1, 1), seg.view(1, -1)  # (L, 1), (1, L)
    if mode == "cross":
        ok = (q_seg != k_seg) | (q_seg == CLS)  # (L, L): other modality; [CLS] attends to all
    elif mode == "self":
        ok = (q_seg == k_seg) | (q_seg == CLS) | (k_seg == CLS)  # (L, L): own modality and [CLS]
    else:
        ok = torch.ones(seg.numel(), seg.numel(), dtype=torch.bool, device=seg.device)
    allowed = ok.unsqueeze(0) & real.unsqueeze(1)  # (B, L, L): and the key is a real token
    return allowed | (k_seg == CLS).unsqueeze(0)  # [CLS] is always a valid key


@register_model("tcaf")
class TCAF(GZSLModel):
    Config = TCAFConfig
    packable = True  # its step vmaps (tests/test_pack.py); packed runs train together

    def __init__(self, cfg: TCAFConfig, dims: FeatureDims):
        super().__init__(cfg, dims)
        d, h = cfg.d_model, cfg.hidden
        self.A_enc = EmbeddingNet(dims.audio, d, cfg.dropout_encoder, hidden=cfg.enc_hidden)
        self.V_enc = EmbeddingNet(dims.video, d, cfg.dropout_encoder, hidden=cfg.enc_hidden)
        self.modality = nn.Embedding(2, cfg.embed_dim)  # row 0 audio, row 1 video
        if cfg.time_embedding == "fourier":
            # fixed random frequencies (a buffer: saved in checkpoints, never trained), then a Linear
            self.register_buffer("freqs", cfg.fourier_scale * torch.randn(cfg.embed_dim // 2))
            self.time_proj = nn.Linear(cfg.embed_dim, cfg.embed_dim)
        self.A_tok = nn.Linear(d + cfg.embed_dim, d)
        self.V_tok = nn.Linear(d + cfg.embed_dim, d)
        self.drop_tok = nn.Dropout(cfg.dropout_embedding)
        self.cls_token = nn.Parameter(torch.randn(1, 1, d))
        self.blocks = nn.ModuleList([PreNormBlock(d, cfg.heads, cfg.dim_head, cfg.mlp_dim, cfg.dropout_transformer)
                                     for _ in range(cfg.depth)])
        # ClipClap-GZSL head
        self.O_proj = EmbeddingNet(d, cfg.dim_out, cfg.dropout_decoder, hidden=h)
        self.D_o = EmbeddingNet(cfg.dim_out, h, cfg.dropout_decoder, hidden=h)
        self.W_enc = EmbeddingNet(dims.text, h, cfg.dropout_encoder)
        self.W_proj = EmbeddingNet(h, cfg.dim_out, cfg.dropout_text)
        self.D_w = EmbeddingNet(cfg.dim_out, h, cfg.dropout_text)

    def _time(self, times: torch.Tensor) -> torch.Tensor:
        """(B, T) seconds -> (B, T, embed_dim)."""
        if self.cfg.time_embedding == "none":
            return times.new_zeros(*times.shape, self.cfg.embed_dim)
        ang = 2 * math.pi * times.unsqueeze(-1) * self.freqs  # (B, T, embed_dim/2)
        return self.time_proj(torch.cat([ang.sin(), ang.cos()], dim=-1))  # (B, T, embed_dim)

    def _tokens(self, x, mask, times, enc, proj, modality: int) -> torch.Tensor:
        if self.cfg.normalize_inputs == "l2":
            x = F.normalize(x, dim=-1)  # each step's feature vector
        e = encode_real_steps(enc, x.float(), mask, self.cfg.d_model)  # (B, T, d)
        emb = self.modality.weight[modality] + self._time(times)  # (B, T, embed_dim)
        return self.drop_tok(proj(torch.cat([e, emb], dim=-1)))  # (B, T, d + embed_dim) -> (B, T, d)

    def transformer_tokens(self, batch: Batch) -> tuple[torch.Tensor, int]:
        """Transformer output over [CLS, audio..., video...] (B, 1 + Ta + Tv, d), and Ta."""
        a, am, at = _as_steps(batch.audio, batch.audio_mask, batch.audio_times)
        v, vm, vt = _as_steps(batch.video, batch.video_mask, batch.video_times)
        B, Ta, Tv = a.shape[0], a.shape[1], v.shape[1]
        tok_a = self._tokens(a, am, at, self.A_enc, self.A_tok, 0)  # (B, Ta, d)
        tok_v = self._tokens(v, vm, vt, self.V_enc, self.V_tok, 1)  # (B, Tv, d)
        x = torch.cat([self.cls_token.expand(B, 1, -1), tok_a, tok_v], dim=1)  # (B, 1 + Ta + Tv, d)
        seg = torch.tensor([CLS] + [AUDIO] * Ta + [VIDEO] * Tv, device=x.device)  # (L,)
        real = torch.cat([torch.ones(B, 1, dtype=torch.bool, device=x.device), am, vm], dim=1)  # (B, L)
        allowed = attention_mask(seg, real, self.cfg.attention)  # (B, L, L)
        for blk in self.blocks:
            x = blk(x, allowed)
        return x, Ta

    def embed_videos(self, batch: Batch) -> torch.Tensor:
        return self.O_proj(self.transformer_tokens(batch)[0][:, 0])  # θo (B, E) from the [CLS] output

    def embed_classes(self, text: torch.Tensor) -> torch.Tensor:
        return self.W_proj(self.W_enc(text.float()))  # (C, E)

    def loss(self, batch, class_text, target):
        terms, _, _ = clipclap_head_loss(self, self.embed_videos(batch), class_text.float(), target)
        total = terms["ce"] + terms["reg"] + terms["rec"]
        return total, {**{k: v.detach() for k, v in terms.items()}, "total": total.detach()}
