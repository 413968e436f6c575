"""CJME (registry name `cjme`).

Parida, Matiyali, Guha, Sharma: "Coordinated Joint Multimodal Embeddings for Generalized Audio-Visual
Zero-shot Classification and Retrieval of Videos", WACV 2020; run on the AVCA-GZSL benchmark
(Mercea et al., CVPR 2022), whose reference code and commands give the sizes below.

    a = f_a(audio)   Da -> hidden -> E        v = f_v(video)   Dv -> hidden -> E
    t = f_t(text)    Dt -> text_hidden -> E   (each Linear-BN-ReLU-Dropout-Linear-ReLU)
    α = sigmoid(Linear(BN(concat[audio, video])))   (B,) modality attention, the weight of VIDEO;
        the modality weights are (w_audio, w_video) = (1 - α, α): each in (0, 1), summing to 1
    L_tri = mean_i [(1 - α_i) T(t_i, a_i, a_i⁻) + α_i T(t_i, v_i, v_i⁻)]   triplets anchored on the text
    L_av  = MSE(a, v)                                                   audio–video alignment
    L_att = MSE(α, s)   s_i = 1 if H_a,i > H_v,i + ε (video more confident), 0 if H_v,i > H_a,i + ε,
            0.5 otherwise; H_m,i = entropy of softmax_k(m_i · t_k) over the K training classes,
            computed on detached embeddings (the paper's semi-supervised attention target)
    loss  = L_tri + L_av + L_att

The attention is learned both through L_att and through the attention-weighted triplet term (which
pulls α towards the modality whose triplet loss is lower), as in the reference.

Evaluation (`distances`): d(video, class) = (1 - α) ||a - t_c|| + α ||v - t_c||. `eval_attention: soft`
(default) uses α itself; `hard` thresholds it at 0.5 (pick one modality), as the AVCA-GZSL reference
code does. `embed_videos` returns (1 - α) a + α v, used only for plots.

Negatives (⁻): `negatives: random` takes a random batch video of another class (the reference's one
negative per positive); `hardest` mines the nearest other-class row in the batch.

Differences from the reference code: the text branch f_t runs once per step over the K training
classes and each video takes its class's row (the reference runs it over the batch's texts and again
over the K classes for the attention targets, updating BatchNorm statistics twice per step); negatives
come from the batch; soft test-time weighting by default (switch `eval_attention`). The reference
multiplies the (B, 1) attention with the (B,) triplet losses, which broadcasts to (B, B) and weights
every sample's triplet loss with every other sample's attention (its mean is (1 - mean α) mean T_a +
mean α mean T_v); we weight each sample's triplet losses with its own α, as the paper describes.
Temporal inputs are mean-pooled over real steps first.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..settings import PROB, WEIGHT, WIDTH, WIDTH0, setting
from ..data.types import FeatureDims
from ..errors import ConfigError
from ..losses.ranking import NEGATIVES, NegativePicker
from . import register_model
from .avgzslnet import mlp2
from .layers import masked_mean
from .base import Batch, GZSLModel


@dataclass
class CJMEConfig:
    dim_out: int = setting(64, WIDTH)  # E: the joint embedding space (reference: 64)
    hidden: int = setting(1024, WIDTH)  # hidden width of f_a, f_v (reference --embeddings_hidden_size 1024)
    text_hidden: int = setting(0, WIDTH0)  # hidden width of f_t; 0 = the text dim (the reference's 300 for word2vec)
    dropout: float = setting(0.2, PROB)  # f_a, f_v, f_t (reference --dropout_baselines 0.2; 0 on VGGSound)
    batch_norm: bool = True  # BN in the embedding nets (reference --embedding_use_bn)
    margin: float = setting(1.0, WEIGHT)  # triplet margin (reference --margin 1)
    negatives: str = "random"  # random | hardest
    entropy_margin: float = setting(0.1, WEIGHT)  # ε of the attention target (reference: 0.1)
    lambda_av: float = setting(1.0, WEIGHT)  # weight of L_av
    lambda_att: float = setting(1.0, WEIGHT)  # weight of L_att (0 = attention learned only through L_tri)
    eval_attention: str = "soft"  # soft: weights (1-α, α) | hard: α thresholded at 0.5 (reference code)

    def for_reference(self, behaviours: frozenset) -> "CJMEConfig":
        """The reference thresholds the test-time attention (behaviour `hard_attention`)."""
        cfg = dataclasses.replace(self)
        if "hard_attention" in behaviours:
            cfg.eval_attention = "hard"
        return cfg

    def __post_init__(self):
        if self.negatives not in NEGATIVES:
            raise ConfigError(f"cjme.negatives={self.negatives!r}: expected one of {', '.join(NEGATIVES)}")
        if self.eval_attention not in ("soft", "hard"):
            raise ConfigError(f"cjme.eval_attention={self.eval_attention!r}: expected soft or hard")


@register_model("cjme")
class CJME(GZSLModel):
    Config = CJMEConfig
    reference_code = "avca-gzsl"
    reference_mode_betas = True

    def __init__(self, cfg: CJMEConfig, dims: FeatureDims):
        super().__init__(cfg, dims)
        E = cfg.dim_out
        self.f_a = mlp2(dims.audio, cfg.hidden, E, cfg.dropout, cfg.batch_norm, final_relu=True)
        self.f_v = mlp2(dims.video, cfg.hidden, E, cfg.dropout, cfg.batch_norm, final_relu=True)
        self.f_t = mlp2(dims.text, cfg.text_hidden or dims.text, E, cfg.dropout, cfg.batch_norm, final_relu=True)
        self.attention = nn.Sequential(nn.BatchNorm1d(dims.audio + dims.video), nn.Linear(dims.audio + dims.video, 1))

    def _pooled(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return (masked_mean(batch.audio, batch.audio_mask).float(),  # (B, Da)
                masked_mean(batch.video, batch.video_mask).float())  # (B, Dv)

    def _alpha(self, xa: torch.Tensor, xv: torch.Tensor) -> torch.Tensor:
        # concat[audio, video] (B, Da + Dv), audio first as in the reference's attention input
        return torch.sigmoid(self.attention(torch.cat([xa, xv], dim=1))).squeeze(1)  # (B,)

    def modality_weights(self, batch: Batch) -> torch.Tensor:
        """(B, 2) test-time weights [w_audio, w_video] = [1 - α, α] (`hard`: α rounded at 0.5).
        Soft weights lie in (0, 1); each row sums to 1."""
        xa, xv = self._pooled(batch)
        alpha = self._alpha(xa, xv)  # (B,)
        if self.cfg.eval_attention == "hard":
            alpha = (alpha >= 0.5).to(alpha.dtype)
        return torch.stack([1.0 - alpha, alpha], dim=1)  # (B, 2)

    def _embed(self, batch: Batch):
        xa, xv = self._pooled(batch)
        return self.f_a(xa), self.f_v(xv)  # (B, E) each

    def embed_videos(self, batch: Batch) -> torch.Tensor:
        a, v = self._embed(batch)
        w = self.modality_weights(batch)  # (B, 2)
        return w[:, :1] * a + w[:, 1:] * v  # (B, E); for plots only, scoring uses `distances`

    def embed_classes(self, text: torch.Tensor) -> torch.Tensor:
        return self.f_t(text.float())  # (C, E)

    def distances(self, batch: Batch, class_emb: torch.Tensor) -> torch.Tensor:
        a, v = self._embed(batch)
        w = self.modality_weights(batch)  # (B, 2)
        # (B, 1) * (B, C): per-video weights of the audio and the video distance
        return w[:, :1] * torch.cdist(a, class_emb) + w[:, 1:] * torch.cdist(v, class_emb)

    def eval_modes(self) -> tuple[str, ...]:
        return ("audio", "video")

    def mode_distances(self, batch: Batch, class_emb: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, C) distances of the reference's single-modality evaluation modes (src/utils.py:evaluate_dataset
        of AVCA-GZSL): the audio and the video embedding alone; its test beta averages the betas they
        and `distances` select on validation (reference behaviour `mode_betas`)."""
        a, v = self._embed(batch)
        return {"audio": torch.cdist(a, class_emb), "video": torch.cdist(v, class_emb)}

    @staticmethod
    def attention_target(a: torch.Tensor, v: torch.Tensor, t_classes: torch.Tensor, eps: float) -> torch.Tensor:
        """(B,) target of α from the entropies of each modality's class distribution (no gradient)."""
        with torch.no_grad():
            def entropy(x):  # (B, E) -> (B,) entropy of softmax over the K classes
                logp = F.log_softmax(x @ t_classes.t(), dim=1)  # (B, K)
                return -(logp.exp() * logp).sum(dim=1)
            h_a, h_v = entropy(a), entropy(v)
            s = torch.full_like(h_a, 0.5)  # neither modality clearly more confident
            s[h_a > h_v + eps] = 1.0  # audio more uncertain: attend to video
            s[h_v > h_a + eps] = 0.0  # video more uncertain: attend to audio
        return s

    def loss(self, batch, class_text, target):
        cfg, m = self.cfg, self.cfg.margin
        xa, xv = self._pooled(batch)
        a, v = self.f_a(xa), self.f_v(xv)  # (B, E) each
        alpha = self._alpha(xa, xv)  # (B,)
        t_classes = self.f_t(class_text.float())  # (K, E): one pass over the training classes
        t = t_classes[target]  # (B, E) each video's class embedding
        neg = NegativePicker(cfg.negatives, target)
        l_tri = (neg.triplet(t, a, a, m, weight=1.0 - alpha) + neg.triplet(t, v, v, m, weight=alpha))
        l_av = F.mse_loss(a, v)
        s = self.attention_target(a.detach(), v.detach(), t_classes.detach(), cfg.entropy_margin)  # (B,)
        l_att = F.mse_loss(alpha, s)
        total = l_tri + cfg.lambda_av * l_av + cfg.lambda_att * l_att
        terms = {"tri": l_tri, "av": l_av, "att": l_att}
        return total, {**{k: x.detach() for k, x in terms.items()}, "total": total.detach()}
