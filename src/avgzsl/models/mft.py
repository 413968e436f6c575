"""MFT: Multimodal Fusion Transformer for audio-visual GZSL (registry name `mft`).

"An Audio-visual Generalized Zero-Shot Learning Method Based on Multimodal Fusion Transformer", journal
paper, 2025 (only its abstract and tables are public). The paper fixes the ideas: a Transformer with
multi-head attention fuses audio and video (cross-modal interaction), on the ClipClap-GZSL setting, trained
with ClipClap's loss plus a KL-divergence term (predicted vs target class distribution) and a
cosine-similarity term (same-class consistency). It gives no sizes, weights or temperatures: EVERY number
and layout below is OUR choice, with its switch in `MFTConfig` and its reason in docs/method.md.

    tokens  = [CLS, audio_1..Ta, video_1..Tv]                       (B, 1+Ta+Tv, d)
              audio_t = A_enc(audio_t) + e_audio (+ time(t_sec)),   A_enc: Da -> d
              video_t = V_enc(video_t) + e_video (+ time(t_sec)),   V_enc: Dv -> d
    h       = LayerNorm(Transformer_pre-norm(tokens, padding masks))[:, 0]        (B, d)
    θo      = O_proj(h)    d -> hidden -> dim_out     ρo = D_o(θo)   dim_out -> hidden -> hidden
    w'      = W_enc(text)  Dt -> hidden               θw = W_proj(w')  hidden -> dim_out
    ρw      = D_w(θw)      dim_out -> hidden
    l       = CE(θo·θwᵀ, y) + MSE(θo, θw(y)) + MSE(w', ρo) + MSE(w', ρw)        (ClipClap's l)
              + λ_kl · KL(q ‖ softmax(θo·θwᵀ / τ)) + λ_cos · l_cos

Evaluation: L2 distance between θo and θw (the base class's `distances`), in eval mode.

Switches: `attention` full | cross | none (paper Table 3: none = "w/o att"), `modalities` both | audio |
video (Table 5; `text_part` all | clip | clap picks the text W_enc reads: ours keeps all of it, reference
mode follows the reference ClipClap's CLAP-only / CLIP-only text), `lambda_kl`, `lambda_cos` (Table 4). Temporal inputs (B, T, D) give one token per real
step; averaged inputs (B, D) one token per modality. `fuse(batch)` returns every token's output (for
inspection and tests); `embed_videos` computes only [CLS] in the last block (same value, less work).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from .. import losses
from ..settings import DEPTH, FRACTION, POSITIVE, PROB, WEIGHT, WIDTH, setting
from ..data.types import FeatureDims
from ..errors import ConfigError
from . import register_model
from .base import Batch, GZSLModel
from .layers import TEXT_PARTS, EmbeddingNet, clipclap_head_loss, masked_mean, reference_text_part, text_columns

ATTENTION = ("full", "cross", "none")
MODALITIES = ("both", "audio", "video")
ENCODER_NORMS = ("layernorm", "batchnorm")
ACTIVATIONS = ("gelu", "relu")
TIME_EMBEDDINGS = ("sinusoidal", "none")
TEXT_BRANCHES = ("per_sample", "shared")

# segment ids of the token sequence
CLS, AUDIO, VIDEO = 0, 1, 2


@dataclass
class MFTConfig:
    """MFT sizes and switches. Defaults are OUR choices (docs/method.md), not the paper's."""

    # --- fusion (paper: "Transformer-based multi-head attention"; sizes ours, measured on CPU) ---
    d_model: int = setting(128, WIDTH)  # token width d of the modality encoders and the transformer
    depth: int = setting(2, DEPTH)  # transformer blocks (>= 2 for audio/video tokens to mix before [CLS] reads them)
    heads: int = setting(4, WIDTH)  # attention heads (d_model must divide by it)
    mlp_ratio: float = setting(2.0, "(0, 64]")  # transformer MLP width = mlp_ratio * d_model
    dropout: float = setting(0.1, PROB)  # on attention weights and on both residual branches of every block
    attention: str = "full"  # full: every token attends to every token | cross: audio tokens attend
    #                          only to [CLS] + video tokens, video only to [CLS] + audio, [CLS] to all
    #                          | none: no attention at all, the ClipClap concatenation MLP on the same
    #                          encoders (Table 3 "w/o att"; temporal inputs masked-mean pooled first)
    modalities: str = "both"  # both | audio | video: the missing modality's tokens are dropped and its
    #                           encoder is not built (Table 5)
    # --- modality encoders: Linear -> norm -> activation -> dropout, per token ---
    encoder_norm: str = "layernorm"  # layernorm (per token, padding-safe) | batchnorm (over real tokens)
    activation: str = "gelu"  # gelu | relu (modality encoders and transformer MLP)
    dropout_encoder: float = setting(0.1, PROB)  # modality encoders, the `none` fusion MLP, and W_enc (as ClipClap)
    # --- time embedding of temporal tokens (added after the encoder; identical in train and eval) ---
    time_embedding: str = "sinusoidal"  # sinusoidal of the step's time in seconds | none
    time_min_period: float = setting(0.5, POSITIVE)  # seconds; shortest sinusoid period
    time_max_period: float = setting(128.0, POSITIVE)  # seconds; longest sinusoid period (geometric in between)
    # --- head: ClipClap-GZSL's projections and decoders (layers.EmbeddingNet) ---
    hidden: int = setting(512, WIDTH)  # width of w' = W_enc(text), of the O_proj/D_o hidden layer and of ρo, ρw
    dim_out: int = setting(64, WIDTH)  # embedding dim of θo, θw (the space of the L2 evaluation)
    dropout_decoder: float = setting(0.1, PROB)  # O_proj, D_o
    dropout_text: float = setting(0.1, PROB)  # W_proj, D_w
    batch_norm: bool = True  # BatchNorm in the projection/decoder blocks (as ClipClap)
    text_part: str = "all"  # all | clip | clap: the columns of the joint CLIP+CLAP text W_enc reads
    text_branch: str = "per_sample"  # per_sample: θw(y), w'(y) from a 2nd text pass on each video's own
    #                                  class text (as ClipClap) | shared: gathered from the K-class pass
    #                                  (one text pass per step; faster, BatchNorm statistics over K classes)
    # --- l_kl (Table 4 "l - l_kl": lambda_kl=0) ---
    lambda_kl: float = setting(1.0, WEIGHT)  # weight of l_kl; 0 switches the term off (it is still logged, detached)
    kl_target: str = "nontarget"  # smoothed: one-hot with label smoothing kl_eps | semantic: softmax of
    #                           the raw text cosine similarities / kl_tau_q | mixed: (1-eps) one-hot
    #                           + eps semantic | nontarget: semantic over the wrong classes only, against
    #                           p renormalised over them (zero gradient on the true class's logit)
    kl_tau: float = setting(1.0, POSITIVE)  # temperature τ of the predicted distribution p = softmax(θo·θwᵀ / τ)
    kl_eps: float = setting(0.2, FRACTION)  # smoothing / mixing weight ε (smoothed, mixed)
    kl_tau_q: float = setting(0.1, POSITIVE)  # temperature τ_q of the semantic target (semantic, mixed, nontarget)
    # --- l_cos (Table 4 "l - l_cos": lambda_cos=0) ---
    lambda_cos: float = setting(1.0, WEIGHT)  # weight of l_cos; 0 switches the term off (it is still logged, detached)
    cos_pairwise: bool = True  # add 1 - cos(θo_i, θo_j) over same-class pairs i != j of the batch

    def __post_init__(self):
        choices = {"attention": ATTENTION, "modalities": MODALITIES, "encoder_norm": ENCODER_NORMS,
                   "activation": ACTIVATIONS, "time_embedding": TIME_EMBEDDINGS,
                   "kl_target": losses.KL_TARGETS, "text_branch": TEXT_BRANCHES, "text_part": TEXT_PARTS}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"mft.{key}={getattr(self, key)!r}: expected one of {', '.join(allowed)}")
        # single numbers are checked against their declared ranges (config.check_settings); here only
        # what ties two settings together
        if self.heads > 0 and self.d_model % self.heads:
            raise ConfigError(f"mft.d_model={self.d_model} must be divisible by mft.heads={self.heads}")
        if self.time_max_period < self.time_min_period:
            raise ConfigError(f"mft.time_max_period ({self.time_max_period}) must be >= "
                              f"mft.time_min_period ({self.time_min_period})")

    def for_reference(self, behaviours: frozenset) -> "MFTConfig":
        """In reference mode a modality ablation (Table 5) reads the text the reference's ClipClap does
        (behaviour `modality_text`: CLAP text for audio only, CLIP text for video only)."""
        cfg = dataclasses.replace(self)
        if "modality_text" in behaviours:
            cfg.text_part = reference_text_part(self.modalities)
        return cfg

    @property
    def used_modalities(self) -> tuple[str, ...]:
        return ("audio", "video") if self.modalities == "both" else (self.modalities,)


# ----------------------------------------------------------------------------------------- helpers


def _activation(name: str) -> nn.Module:
    return nn.GELU() if name == "gelu" else nn.ReLU()


def sinusoidal_time_embedding(times: torch.Tensor, dim: int, min_period: float,
                              max_period: float) -> torch.Tensor:
    """(B, T) seconds -> (B, T, dim): [sin(2π t / P_k), cos(2π t / P_k)] over dim // 2 periods P_k
    geometric from min_period to max_period (zero-padded to an odd dim). A fixed function of the time
    in seconds, so training and evaluation see the same embedding for the same time."""
    half = dim // 2
    if half == 0:
        return times.new_zeros(*times.shape, dim)
    ratio = torch.linspace(0.0, 1.0, half, device=times.device, dtype=torch.float32)  # (half,)
    periods = min_period * (max_period / min_period) ** ratio  # (half,)
    angle = 2 * math.pi * times.float().unsqueeze(-1) / periods  # (B, T, half)
    emb = torch.cat([angle.sin(), angle.cos()], dim=-1)  # (B, T, 2 * half)
    if emb.shape[-1] < dim:
        emb = torch.cat([emb, emb.new_zeros(*emb.shape[:-1], dim - emb.shape[-1])], dim=-1)  # (B, T, dim)
    return emb


# ---------------------------------------------------------------------------------------- blocks


class ModalityEncoder(nn.Module):
    """Linear -> LayerNorm|BatchNorm -> activation -> dropout, applied per token.

    (B, D_in) -> (B, d) or (B, T, D_in) -> (B, T, d). BatchNorm on temporal input normalises over the
    real tokens only (padding would bias the statistics); padded outputs are zeros."""

    def __init__(self, d_in: int, d: int, norm: str, activation: str, dropout: float):
        super().__init__()
        self.linear = nn.Linear(d_in, d)
        self.norm = nn.LayerNorm(d) if norm == "layernorm" else nn.BatchNorm1d(d)
        self.act = _activation(activation)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.linear(x)  # (B, d) or (B, T, d)
        if isinstance(self.norm, nn.BatchNorm1d) and h.ndim == 3:
            if mask is None:
                mask = torch.ones(h.shape[:2], dtype=torch.bool, device=h.device)  # (B, T)
            out = h.new_zeros(h.shape)  # (B, T, d)
            out[mask] = self.norm(h[mask])  # real tokens (N_real, d)
            h = out
        else:
            h = self.norm(h)
        return self.drop(self.act(h))


class FusionBlock(nn.Module):
    """Pre-norm Transformer encoder block: x + Attn(LN(x)); x + MLP(LN(x))."""

    def __init__(self, d: int, heads: int, mlp_ratio: float, dropout: float, activation: str):
        super().__init__()
        self.norm1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.drop1 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d)
        width = max(1, round(mlp_ratio * d))
        self.mlp = nn.Sequential(nn.Linear(d, width), _activation(activation), nn.Dropout(dropout),
                                 nn.Linear(width, d))
        self.drop2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pad: torch.Tensor, attn_mask: torch.Tensor | None,
                cls_only: bool = False) -> torch.Tensor:
        """x (B, L, d); pad (B, L) True = padding (ignored as a key); attn_mask (L, L) True = blocked.

        cls_only: compute the output of token 0 only (B, 1, d): its query attends to all L keys as
        usual, but no other token's attention output or MLP is computed (the last block's other outputs
        are never read by the head)."""
        h = self.norm1(x)  # (B, L, d)
        q = h[:, :1] if cls_only else h  # (B, Lq, d), Lq = 1 or L
        if cls_only:
            x = x[:, :1]  # (B, 1, d)
            attn_mask = None if attn_mask is None else attn_mask[:1]  # (1, L)
        a, _ = self.attn(q, h, h, key_padding_mask=pad, attn_mask=attn_mask, need_weights=False)
        x = x + self.drop1(a)  # (B, Lq, d)
        return x + self.drop2(self.mlp(self.norm2(x)))  # (B, Lq, d)


class FusionTransformer(nn.Module):
    """`depth` FusionBlocks and a final LayerNorm (pre-norm transformers need one at the output)."""

    def __init__(self, cfg: MFTConfig):
        super().__init__()
        self.blocks = nn.ModuleList(FusionBlock(cfg.d_model, cfg.heads, cfg.mlp_ratio, cfg.dropout,
                                                cfg.activation) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.d_model)

    def forward(self, x: torch.Tensor, pad: torch.Tensor, attn_mask: torch.Tensor | None,
                cls_only: bool = False) -> torch.Tensor:
        """(B, L, d) -> (B, L, d), or (B, 1, d) with cls_only (the last block computes token 0 only)."""
        for i, block in enumerate(self.blocks):
            x = block(x, pad, attn_mask, cls_only=cls_only and i == len(self.blocks) - 1)  # (B, L|1, d)
        return self.norm(x)


def cross_modal_mask(segment: torch.Tensor) -> torch.Tensor:
    """(L,) segment ids -> (L, L) bool, True = query i may NOT attend to key j (attention: cross).

    Allowed: [CLS] -> every token; every token -> [CLS]; audio -> video and video -> audio. Blocked:
    audio -> audio and video -> video, including a token's own key (its own content reaches its output
    through the residual connection). A row is never fully blocked since [CLS] is always a key."""
    q, k = segment.unsqueeze(1), segment.unsqueeze(0)  # (L, 1), (1, L)
    allowed = (q == CLS) | (k == CLS) | (q != k)  # (L, L)
    return ~allowed


class ConcatFusion(nn.Module):
    """attention: none (Table 3 "w/o att"): ClipClap's concatenation MLP on the modality encodings.

    concat[audio (B, d), video (B, d)] -> EmbeddingNet (Linear -> BatchNorm -> ReLU -> Dropout) -> (B, d).
    No attention module of any kind."""

    def __init__(self, n_modalities: int, d: int, dropout: float):
        super().__init__()
        self.mlp = EmbeddingNet(n_modalities * d, d, dropout)

    def forward(self, parts: list[torch.Tensor]) -> torch.Tensor:
        return self.mlp(torch.cat(parts, dim=1))  # (B, n_modalities * d) -> (B, d)


class Fused(NamedTuple):
    """Output of `MFT.fuse`: the fusion's token outputs and the token layout."""

    tokens: torch.Tensor  # (B, L, d); token 0 is [CLS] (with attention: none, L = 1: the MLP output)
    pad: torch.Tensor  # (B, L) bool, True = padding
    segment: torch.Tensor  # (L,) long: CLS=0, AUDIO=1, VIDEO=2


# ----------------------------------------------------------------------------------------- model


@register_model("mft")
class MFT(GZSLModel):
    Config = MFTConfig
    packable = True  # its step vmaps (tests/test_pack.py); packed runs train together

    def __init__(self, cfg: MFTConfig, dims: FeatureDims):
        super().__init__(cfg, dims)
        d = cfg.d_model
        d_in = {"audio": dims.audio, "video": dims.video}
        self.encoders = nn.ModuleDict({m: ModalityEncoder(d_in[m], d, cfg.encoder_norm, cfg.activation,
                                                          cfg.dropout_encoder)
                                       for m in cfg.used_modalities})
        if cfg.attention == "none":
            self.fusion = ConcatFusion(len(cfg.used_modalities), d, cfg.dropout_encoder)
        else:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
            self.modality_emb = nn.ParameterDict({m: nn.Parameter(torch.zeros(1, 1, d))
                                                  for m in cfg.used_modalities})
            for p in [self.cls_token, *self.modality_emb.values()]:
                nn.init.trunc_normal_(p, std=0.02)
            self.fusion = FusionTransformer(cfg)
        h, e = cfg.hidden, cfg.dim_out
        self.O_proj = EmbeddingNet(d, e, cfg.dropout_decoder, hidden=h, batch_norm=cfg.batch_norm)
        self.D_o = EmbeddingNet(e, h, cfg.dropout_decoder, hidden=h, batch_norm=cfg.batch_norm)
        self.text_cols = text_columns(cfg.text_part, dims.text)
        self.W_enc = EmbeddingNet(self.text_cols.stop - self.text_cols.start, h, cfg.dropout_encoder)
        self.W_proj = EmbeddingNet(h, e, cfg.dropout_text, batch_norm=cfg.batch_norm)
        self.D_w = EmbeddingNet(e, h, cfg.dropout_text, batch_norm=cfg.batch_norm)

    # --- inputs -> tokens ---

    def _modality(self, batch: Batch, m: str):
        """(features, mask, times) of modality m; mask/times None for averaged (B, D) features."""
        x = getattr(batch, m).float()
        if x.ndim == 2:
            return x, None, None
        mask = getattr(batch, f"{m}_mask")
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)  # (B, T)
        times = getattr(batch, f"{m}_times")
        if times is None:  # no times given: the step index stands in for seconds
            times = torch.arange(x.shape[1], device=x.device, dtype=torch.float32).expand(x.shape[:2])
        return x, mask.bool(), times

    def _tokens(self, batch: Batch, only: str | None = None) -> Fused:
        """The fusion's INPUT: [CLS, audio tokens, video tokens] (B, L, d), each plus its modality (and
        time) embedding, with the padding mask and segment ids (only: pad out the other modality)."""
        cfg = self.cfg
        B = len(batch)
        tokens = [self.cls_token.expand(B, 1, -1)]  # (B, 1, d)
        pads = [torch.zeros(B, 1, dtype=torch.bool, device=tokens[0].device)]  # (B, 1)
        segments = [CLS]
        for m, seg in (("audio", AUDIO), ("video", VIDEO)):
            if m not in self.encoders:
                continue  # a dropped modality contributes no tokens at all
            x, mask, times = self._modality(batch, m)
            t = self.encoders[m](x, mask)  # (B, d) or (B, T, d)
            if t.ndim == 2:
                t = t.unsqueeze(1)  # (B, 1, d)
                mask = torch.ones(B, 1, dtype=torch.bool, device=t.device)  # (B, 1)
            elif cfg.time_embedding == "sinusoidal":
                t = t + sinusoidal_time_embedding(times, cfg.d_model, cfg.time_min_period,
                                                  cfg.time_max_period)  # (B, T, d)
            tokens.append(t + self.modality_emb[m])  # (B, T, d)
            pads.append(~mask if only in (None, m) else torch.ones_like(mask))  # (B, T)
            segments += [seg] * t.shape[1]
        x = torch.cat(tokens, dim=1)  # (B, L = 1 + Ta + Tv, d)
        pad = torch.cat(pads, dim=1)  # (B, L)
        return Fused(x, pad, torch.tensor(segments, device=x.device))

    # --- fusion ---

    def fuse(self, batch: Batch, cls_only: bool = False, only: str | None = None) -> Fused:
        """The fusion's outputs: token 0 (the [CLS] token) is the video representation fed to O_proj.

        cls_only: return only token 0 (B, 1, d), skipping the last block's work on the other tokens
        (same values; what `embed_videos` uses). The default returns every token, for inspection. only:
        one modality's tokens, the other's padded out (attention full | cross)."""
        if self.cfg.attention == "none":
            parts = []
            for m in self.cfg.used_modalities:  # temporal: masked mean over real steps, no embeddings
                x, mask, _ = self._modality(batch, m)
                parts.append(masked_mean(self.encoders[m](x, mask), mask))  # (B, d)
            out = self.fusion(parts).unsqueeze(1)  # (B, 1, d)
            pad = torch.zeros(out.shape[:2], dtype=torch.bool, device=out.device)  # (B, 1)
            return Fused(out, pad, torch.tensor([CLS], device=out.device))
        tok = self._tokens(batch, only)
        attn_mask = cross_modal_mask(tok.segment) if self.cfg.attention == "cross" else None
        out = self.fusion(tok.tokens, tok.pad, attn_mask, cls_only=cls_only)  # (B, L|1, d)
        if cls_only:
            return Fused(out, tok.pad[:, :1], tok.segment[:1])
        return Fused(out, tok.pad, tok.segment)

    # --- the GZSLModel contract ---

    def embed_videos(self, batch: Batch) -> torch.Tensor:
        return self.O_proj(self.fuse(batch, cls_only=True).tokens[:, 0])  # (B, d) -> (B, E)

    def eval_modes(self) -> tuple[str, ...]:
        # [CLS] reads a variable token set, so one modality can be left out; ConcatFusion has a fixed input
        return ("audio", "video") if len(self.cfg.used_modalities) == 2 and self.cfg.attention != "none" else ()

    def mode_distances(self, batch: Batch, class_emb: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, C) distances, the other modality padded out of the fusion (our test-time ablation)."""
        if not self.eval_modes():
            raise NotImplementedError("mft: single-modality evaluation needs attention full | cross, both modalities")
        return {m: torch.cdist(self.O_proj(self.fuse(batch, cls_only=True, only=m).tokens[:, 0]), class_emb)
                for m in self.eval_modes()}  # (B, C) each

    def embed_classes(self, text: torch.Tensor) -> torch.Tensor:
        return self.W_proj(self.W_enc(text[:, self.text_cols].float()))  # (C, Dt_part) -> (C, E)

    def loss(self, batch: Batch, class_text: torch.Tensor, target: torch.Tensor
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = self.cfg
        class_text = class_text[:, self.text_cols].float()  # (K, Dt_part)
        theta_o = self.embed_videos(batch)  # (B, E)
        terms, theta_w_all, theta_w = clipclap_head_loss(self, theta_o, class_text, target,
                                                         per_sample=cfg.text_branch == "per_sample")
        total = terms["ce"] + terms["reg"] + terms["rec"]
        # l_kl and l_cos are always logged; with λ = 0 they are computed detached and not added
        with torch.set_grad_enabled(torch.is_grad_enabled() and cfg.lambda_kl > 0):
            q = losses.kl_target(cfg.kl_target, class_text, target, cfg.kl_eps, cfg.kl_tau_q)  # (B, K)
            terms["kl"] = losses.kl_divergence(theta_o, theta_w_all, q, cfg.kl_tau,
                                                exclude=target if cfg.kl_target == "nontarget" else None)
        with torch.set_grad_enabled(torch.is_grad_enabled() and cfg.lambda_cos > 0):
            terms["cos"] = losses.cosine_consistency(theta_o, theta_w, target, pairwise=cfg.cos_pairwise)
        if cfg.lambda_kl > 0:
            total = total + cfg.lambda_kl * terms["kl"]
        if cfg.lambda_cos > 0:
            total = total + cfg.lambda_cos * terms["cos"]
        return total, {**{k: v.detach() for k, v in terms.items()}, "total": total.detach()}
