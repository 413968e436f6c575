"""AVCA (registry name `avca`).

Mercea, Riesch, Koepke, Akata: "Audio-visual Generalized Zero-shot Learning with Cross-modal Attention
and Language", CVPR 2022 (the AVCA-GZSL benchmark paper). Sizes follow its reference commands.

    φa = A_enc(audio)  Da -> enc_hidden -> d       φv = V_enc(video)  Dv -> enc_hidden -> d
    [ha, hv] = Block([φa + p_a, φv + p_v])          one pre-norm transformer block over the two tokens
                                                    (B, 2, d): each token attends to both (cross-modal
                                                    attention), p_a, p_v learned position embeddings
    φa' = φa + ha,  φv' = φv + hv                    the residual around the attention
    θa = A_proj(φa'), θv = V_proj(φv')   d -> dec_hidden -> E        θw = W_proj(w)  Dt -> E
    ρa, ρv, ρw = D(θa), D(θv), D(θw)     E -> Dt   (shared decoder back to the text)
    φa_rec = A_rec(θa), φv_rec = V_rec(θv)   E -> d

    l_rec = MSE(w, ρv) + MSE(w, ρa) + MSE(w, ρw)
    l_ct  = T(ρw, ρv, ρv⁻) + T(ρw, ρa, ρa⁻)
    l_w   = T(θw, θv, θv⁻) + T(θw, θa, θa⁻) + T(θa, θw, θw⁻) + T(θv, θw, θw⁻)
    l_t   = λ1 [T(θa, θw, θa⁻) + T(θv, θw, θv⁻)] + λ2 [T(θw, θa, θw⁻) + T(θw, θv, θw⁻)]
            (`additional_triplets`)
    l_reg = MSE(φv_rec, φv) + MSE(φa_rec, φa) + MSE(θv, θw) + MSE(θa, θw)            (`reg_loss`)
    loss  = l_rec + l_ct + l_w + l_t + l_reg,   T = triplet margin loss (margin 1)

Every block (encoders, projections, decoders) is Linear-BN-ReLU-Dropout (layers.EmbeddingNet), with a
hidden layer of the same form where a hidden size is given.

Evaluation on the video branch, as the original: L2 distance between θv and θw = W_proj(text).

Negatives (⁻): `negatives: random` takes a random batch video of another class (its audio, video and
class text), as the reference's one negative sample per positive; `hardest` mines per triplet.

Differences from the reference code:
- the reference leaves the learned position embeddings p_a, p_v out of its optimiser (they stay at
  their random initialisation); here they are trained with everything else, as the paper describes.
- negatives come from the batch (the reference draws them from the dataset and runs them through the
  network as a second batch).
- each sub-layer of the block has its own LayerNorm (as the reference's PreNorm); the attention is
  torch's scaled-dot-product attention with the reference's head layout (heads x dim_head, no bias in
  the q/k/v maps).
- temporal inputs are mean-pooled over real steps first (the method is defined on averaged features).
- the reference's BatchNorm statistics also see its negative, reconstruction-projection and post-step
  passes; reference mode makes those passes (`reference_loss`, `reference_second_forward`; behaviours
  call_order, double_bn), with our gradients.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..settings import DEPTH, FRACTION, PROB, WEIGHT, WIDTH, WIDTH0, setting
from ..data.types import FeatureDims
from ..errors import ConfigError
from ..losses.ranking import NEGATIVES, NegativePicker
from . import register_model
from .base import Batch, GZSLModel
from .layers import EmbeddingNet, masked_mean


class Attention(nn.Module):
    """Multi-head attention with `heads` x `dim_head` inner width (may differ from `dim`).
    x (B, L, dim) -> (B, L, dim). `allowed` (B, L, L) bool: query i may attend to key j."""

    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float = 0.0):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        inner = heads * dim_head
        self.to_qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
        B, L, _ = x.shape
        qkv = self.to_qkv(x).view(B, L, 3, self.heads, self.dim_head)  # (B, L, 3, h, dh)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, h, L, dh)
        mask = None if allowed is None else allowed.unsqueeze(1)  # (B, 1, L, L), broadcast over heads
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, h, L, dh)
        out = out.transpose(1, 2).reshape(B, L, self.heads * self.dim_head)  # (B, L, h*dh)
        return self.to_out(out)


class FeedForward(nn.Sequential):
    """Linear -> GELU -> Dropout -> Linear -> Dropout, (B, L, dim) -> (B, L, dim)."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim),
                         nn.Dropout(dropout))


class PreNormBlock(nn.Module):
    """x + Attn(LN(x)), then + FF(LN(.)): the transformer layer of AVCA and TCAF."""

    def __init__(self, dim: int, heads: int, dim_head: int, mlp_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm_attn, self.norm_ff = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dim_head, dropout)
        self.ff = FeedForward(dim, mlp_dim, dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm_attn(x), allowed)
        return x + self.ff(self.norm_ff(x))


def attend_pair(blocks: nn.ModuleList, pos_emb: torch.Tensor, phi_a: torch.Tensor, phi_v: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """AVCA's cross-modal attention over the two tokens [φa + p_a, φv + p_v], with the residual around it
    (the reference's, kept by KDA): (B, d) each in, (B, d) each out."""
    x = torch.stack([phi_a + pos_emb[0], phi_v + pos_emb[1]], dim=1)  # (B, 2, d) tokens
    for blk in blocks:
        x = blk(x)
    return phi_a + x[:, 0], phi_v + x[:, 1]  # (B, d) each: residual around the attention


def set_output_bn_momentum(net: nn.Sequential, momentum: float) -> None:
    """The reference sets `--momentum` on the output BatchNorm of its two-layer blocks only."""
    bns = [m for m in net if isinstance(m, nn.BatchNorm1d)]
    if bns:
        bns[-1].momentum = momentum


@dataclass
class AVCAConfig:
    d_model: int = setting(300, WIDTH)  # width of φa, φv and the attention tokens (reference: 300)
    enc_hidden: int = setting(512, WIDTH0)  # A_enc/V_enc hidden width (reference --embeddings_hidden_size 512)
    dec_hidden: int = setting(512, WIDTH0)  # A_proj/V_proj hidden width (reference --decoder_hidden_size 512)
    dim_out: int = setting(64, WIDTH)  # E: the space of θa, θv, θw and of the L2 evaluation (reference: 64)
    dropout_encoder: float = setting(0.2, PROB)  # A_enc, V_enc and the attention block (reference --embedding_dropout)
    dropout_proj: float = setting(0.3, PROB)  # A_proj, V_proj (reference --decoder_dropout; UCF 0.3)
    dropout_decoder: float = setting(0.5, PROB)  # W_proj, D, A_rec, V_rec (reference --additional_dropout; UCF 0.5)
    depth: int = setting(1, DEPTH)  # attention blocks (reference --depth_transformer 1)
    heads: int = setting(3, WIDTH)  # reference: 3 heads of 100
    dim_head: int = setting(100, WIDTH)
    mlp_dim: int = setting(64, WIDTH)  # block feed-forward width (reference: 64)
    bn_momentum: float = setting(0.1, FRACTION)  # output BN of the two-layer blocks (reference --momentum;
    #                                              UCF main 0.1)
    margin: float = setting(1.0, WEIGHT)  # triplet margin (reference: nn.TripletMarginLoss(margin=1.0))
    additional_triplets: bool = True  # l_t (reference --additional_triplets_loss)
    lambda_first: float = setting(1.0, WEIGHT)  # λ1 (reference --first_additional_triplet)
    lambda_second: float = setting(1.0, WEIGHT)  # λ2 (reference --second_additional_triplet)
    reg_loss: bool = True  # l_reg (reference --reg_loss)
    negatives: str = "random"  # random | hardest

    def __post_init__(self):
        if self.negatives not in NEGATIVES:
            raise ConfigError(f"avca.negatives={self.negatives!r}: expected one of {', '.join(NEGATIVES)}")


@register_model("avca")
class AVCA(GZSLModel):
    Config = AVCAConfig
    reference_code = "avca-gzsl"

    def __init__(self, cfg: AVCAConfig, dims: FeatureDims):
        super().__init__(cfg, dims)
        d, E = cfg.d_model, cfg.dim_out
        self.A_enc = EmbeddingNet(dims.audio, d, cfg.dropout_encoder, hidden=cfg.enc_hidden)
        self.V_enc = EmbeddingNet(dims.video, d, cfg.dropout_encoder, hidden=cfg.enc_hidden)
        self.pos_emb = nn.Parameter(torch.randn(2, d))  # (2, d): audio, video token positions
        self.blocks = nn.ModuleList([PreNormBlock(d, cfg.heads, cfg.dim_head, cfg.mlp_dim, cfg.dropout_encoder)
                                     for _ in range(cfg.depth)])
        self.A_proj = EmbeddingNet(d, E, cfg.dropout_proj, hidden=cfg.dec_hidden)
        self.V_proj = EmbeddingNet(d, E, cfg.dropout_proj, hidden=cfg.dec_hidden)
        self.W_proj = EmbeddingNet(dims.text, E, cfg.dropout_decoder)
        self.D = EmbeddingNet(E, dims.text, cfg.dropout_decoder)
        self.A_rec = EmbeddingNet(E, d, cfg.dropout_decoder)
        self.V_rec = EmbeddingNet(E, d, cfg.dropout_decoder)
        for net in (self.A_enc, self.V_enc, self.A_proj, self.V_proj):
            set_output_bn_momentum(net, cfg.bn_momentum)

    def encode(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """φa, φv (B, d) before attention, and θa, θv (B, E)."""
        phi_a = self.A_enc(masked_mean(batch.audio, batch.audio_mask).float())  # (B, d)
        phi_v = self.V_enc(masked_mean(batch.video, batch.video_mask).float())  # (B, d)
        fa, fv = self._attend(phi_a, phi_v)
        theta_a = self.A_proj(fa)  # (B, E)
        theta_v = self.V_proj(fv)  # (B, E)
        return phi_a, phi_v, theta_a, theta_v

    def embed_videos(self, batch: Batch) -> torch.Tensor:
        return self.encode(batch)[3]  # θv (B, E): evaluation on the video branch

    def embed_classes(self, text: torch.Tensor) -> torch.Tensor:
        return self.W_proj(text.float())  # (C, E)

    def loss(self, batch, class_text, target):
        w = class_text[target].float()  # (B, Dt) each video's class text
        phi_a, phi_v, th_a, th_v = self.encode(batch)
        th_w = self.W_proj(w)  # (B, E); per-sample text branch, as the reference
        # the shared decoder runs once per input, as the reference (BatchNorm statistics per input)
        rho_a, rho_v, rho_w = self.D(th_a), self.D(th_v), self.D(th_w)  # (B, Dt) each
        neg = NegativePicker(self.cfg.negatives, target)
        rec = (self.V_rec(th_v), self.A_rec(th_a)) if self.cfg.reg_loss else None
        return self._loss(w, phi_a, phi_v, th_a, th_v, th_w, rho_a, rho_v, rho_w, rec, neg)

    def _loss(self, w, phi_a, phi_v, th_a, th_v, th_w, rho_a, rho_v, rho_w, rec, neg):
        cfg, m = self.cfg, self.cfg.margin
        T = neg.triplet  # T(anchor, positive, negative pool, margin)
        terms = {
            "rec": F.mse_loss(rho_v, w) + F.mse_loss(rho_a, w) + F.mse_loss(rho_w, w),
            "ct": T(rho_w, rho_v, rho_v, m) + T(rho_w, rho_a, rho_a, m),
            "w": T(th_w, th_v, th_v, m) + T(th_w, th_a, th_a, m) + T(th_a, th_w, th_w, m) + T(th_v, th_w, th_w, m),
        }
        if cfg.additional_triplets:
            terms["t"] = (cfg.lambda_first * (T(th_a, th_w, th_a, m) + T(th_v, th_w, th_v, m))
                          + cfg.lambda_second * (T(th_w, th_a, th_w, m) + T(th_w, th_v, th_w, m)))
        if cfg.reg_loss:
            terms["reg"] = (F.mse_loss(rec[0], phi_v) + F.mse_loss(rec[1], phi_a)
                            + F.mse_loss(th_v, th_w) + F.mse_loss(th_a, th_w))
        total = sum(terms.values())
        return total, {**{k: x.detach() for k, x in terms.items()}, "total": total.detach()}

    def _attend(self, phi_a, phi_v):
        return attend_pair(self.blocks, self.pos_emb, phi_a, phi_v)

    def reference_loss(self, batch, class_text, target):
        """Our loss and gradients, with the reference's BatchNorm-visiting passes in its order
        (model_improvements.py:AVCA.forward of AVCA-GZSL): it also runs one negative video per positive
        through every block, decodes its negatives and projects its reconstructions again. Those
        extra passes run without gradients (train mode: they update BatchNorm statistics and draw
        dropout only); each module sees its inputs in the reference's order. Negatives: our random
        batch negatives (the reference draws them from the dataset)."""
        w = class_text[target].float()  # (B, Dt)
        neg = NegativePicker(self.cfg.negatives, target)
        j = neg.random_index  # (B,) the negative video's row; `hardest` mode: the next row, for BatchNorm only
        if j is None:
            j = torch.roll(torch.arange(len(target), device=w.device), 1)
        xa = masked_mean(batch.audio, batch.audio_mask).float()  # (B, Da)
        xv = masked_mean(batch.video, batch.video_mask).float()  # (B, Dv)
        extra = torch.no_grad
        phi_a, phi_v = self.A_enc(xa), self.V_enc(xv)  # (B, d)
        with extra():
            nphi_a, nphi_v = self.A_enc(xa[j]), self.V_enc(xv[j])
        th_w = self.W_proj(w)  # (B, E)
        with extra():
            nth_w = self.W_proj(w[j])
        rho_w = self.D(th_w)  # (B, Dt)
        with extra():
            self.D(nth_w)
        fa, fv = self._attend(phi_a, phi_v)
        with extra():
            nfa, nfv = self._attend(nphi_a, nphi_v)
        th_v = self.V_proj(fv)  # (B, E)
        with extra():
            nth_v = self.V_proj(nfv)
        th_a = self.A_proj(fa)  # (B, E)
        with extra():
            nth_a = self.A_proj(nfa)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.cfg.reg_loss):
            rec = (self.V_rec(th_v), self.A_rec(th_a))  # (B, d) each; the reference always runs them
        with extra():
            self.A_proj(rec[1]), self.V_proj(rec[0])  # projected again, the result unused
        rho_a = self.D(th_a)
        with extra():
            self.D(nth_a)
        rho_v = self.D(th_v)
        with extra():
            self.D(nth_v)
        return self._loss(w, phi_a, phi_v, th_a, th_v, th_w, rho_a, rho_v, rho_w,
                          rec if self.cfg.reg_loss else None, neg)

    @torch.no_grad()
    def reference_second_forward(self, batch, class_text, target) -> None:
        """The reference's get_embeddings after every step, in train mode (BatchNorm statistics only):
        A_enc, V_enc, W_proj, then V_proj and A_proj on the attended tokens."""
        phi_a = self.A_enc(masked_mean(batch.audio, batch.audio_mask).float())
        phi_v = self.V_enc(masked_mean(batch.video, batch.video_mask).float())
        self.W_proj(class_text[target].float())
        fa, fv = self._attend(phi_a, phi_v)
        self.V_proj(fv), self.A_proj(fa)
