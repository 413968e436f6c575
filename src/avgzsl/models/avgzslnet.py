"""AVGZSLNet (registry name `avgzslnet`).

Mazumder, Singh, Namboodiri, Jawahar: "AVGZSLNet: Audio-Visual Generalized Zero-Shot Learning by
Reconstructing Label Features from Multi-Modal Embeddings", WACV 2021; run on the AVCA-GZSL benchmark
(Mercea et al., CVPR 2022), whose reference code and commands give the sizes below.

    a = F_A(audio)   Da -> hidden -> E          v = F_V(video)   Dv -> hidden -> E
    t = F_T(text)    Dt -> text_hidden -> E     (each Linear-BN-ReLU-Dropout-Linear)
    x̂_a, x̂_v, x̂_t = F_DEC(a), F_DEC(v), F_DEC(t)   shared decoder E -> dec_hidden -> Dt
                                                   (L2-normalised outputs with `normalize_decoder`)
    L_rec = ||x̂_t - text|| + ||x̂_a - text|| + ||x̂_v - text||          (batch means of L2 distances)
    L_cmd = L_rec + T(x̂_t, x̂_a, x̂_a⁻) + T(x̂_t, x̂_v, x̂_v⁻)          cross-modal decoder loss
    L_ct  = T(t, a, a⁻) + T(a, t, t⁻) + T(t, v, v⁻) + T(v, t, t⁻)       composite triplet loss
    loss  = L_cmd + L_ct,   T(anchor, positive, negative) = triplet margin loss (margin 1)

Negatives (⁻): `negatives: random` (default) takes for each video a random batch video of another
class and uses its audio, video and class text, as the reference's one negative sample per positive;
`hardest` mines each triplet's nearest other-class row in the batch.

Evaluation: d(video, class) = ||a - t_c|| + ||v - t_c|| (the reference's "both" mode), `distances`.
`embed_videos` returns (a + v) / 2, used only for plots.

Temporal inputs (B, T, D) are mean-pooled over real steps first (the method is defined on averaged
features). Differences from the reference code: negatives come from the batch (the reference's dataset
draws one per positive from the whole split); the reference selects its stage-2 checkpoint on the test
set, our protocol does not.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..settings import PROB, WEIGHT, WIDTH, WIDTH0, setting
from ..data.types import FeatureDims
from ..errors import ConfigError
from ..losses.ranking import NEGATIVES, NegativePicker
from . import register_model
from .layers import masked_mean
from .base import Batch, GZSLModel


def mlp2(d_in: int, hidden: int, d_out: int, dropout: float, batch_norm: bool = True,
         final_relu: bool = False) -> nn.Sequential:
    """Linear -> [BN] -> ReLU -> Dropout -> Linear [-> ReLU]: the embedding block of the AVGZSLNet and
    CJME reference code (CJME's ends with a ReLU). (B, d_in) -> (B, d_out)."""
    layers: list[nn.Module] = [nn.Linear(d_in, hidden)]
    if batch_norm:
        layers.append(nn.BatchNorm1d(hidden))
    layers += [nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, d_out)]
    if final_relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


@dataclass
class AVGZSLNetConfig:
    dim_out: int = setting(64, WIDTH)  # E: the shared embedding space (reference: 64)
    hidden: int = setting(1024, WIDTH)  # hidden width of F_A, F_V (reference --embeddings_hidden_size 1024)
    text_hidden: int = setting(0, WIDTH0)  # hidden width of F_T; 0 = the text dim (the reference's 300 for word2vec)
    dropout: float = setting(0.8, PROB)  # F_A, F_V, F_T (reference --embedding_dropout default 0.8)
    dec_hidden: int = setting(64, WIDTH)  # F_DEC hidden width (reference --decoder_hidden_size 64)
    dropout_decoder: float = setting(0.5, PROB)  # F_DEC (reference --decoder_dropout 0.5)
    batch_norm: bool = True  # BN in the embedding nets (reference --embedding_use_bn)
    batch_norm_decoder: bool = True  # BN in F_DEC (reference --decoder_use_bn)
    normalize_decoder: bool = True  # L2-normalise decoder outputs (reference --normalize_decoder_outputs)
    margin: float = setting(1.0, WEIGHT)  # triplet margin (reference --margin 1)
    negatives: str = "random"  # random | hardest (see module docstring)

    def __post_init__(self):
        if self.negatives not in NEGATIVES:
            raise ConfigError(f"avgzslnet.negatives={self.negatives!r}: expected one of {', '.join(NEGATIVES)}")


@register_model("avgzslnet")
class AVGZSLNet(GZSLModel):
    Config = AVGZSLNetConfig
    reference_code = "avca-gzsl"
    reference_mode_betas = True

    def __init__(self, cfg: AVGZSLNetConfig, dims: FeatureDims):
        super().__init__(cfg, dims)
        E = cfg.dim_out
        self.F_A = mlp2(dims.audio, cfg.hidden, E, cfg.dropout, cfg.batch_norm)
        self.F_V = mlp2(dims.video, cfg.hidden, E, cfg.dropout, cfg.batch_norm)
        self.F_T = mlp2(dims.text, cfg.text_hidden or dims.text, E, cfg.dropout, cfg.batch_norm)
        self.F_DEC = mlp2(E, cfg.dec_hidden, dims.text, cfg.dropout_decoder, cfg.batch_norm_decoder)

    def embed_modalities(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.F_A(masked_mean(batch.audio, batch.audio_mask).float())  # (B, E)
        v = self.F_V(masked_mean(batch.video, batch.video_mask).float())  # (B, E)
        return a, v

    def embed_videos(self, batch: Batch) -> torch.Tensor:
        a, v = self.embed_modalities(batch)
        return (a + v) / 2  # (B, E); for plots only, scoring uses `distances`

    def embed_classes(self, text: torch.Tensor) -> torch.Tensor:
        return self.F_T(text.float())  # (C, E)

    def distances(self, batch: Batch, class_emb: torch.Tensor) -> torch.Tensor:
        a, v = self.embed_modalities(batch)
        return torch.cdist(a, class_emb) + torch.cdist(v, class_emb)  # (B, C) audio + video distance

    def eval_modes(self) -> tuple[str, ...]:
        return ("audio", "video")

    def mode_distances(self, batch: Batch, class_emb: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, C) distances of the reference's audio-only and video-only evaluation modes (AVCA-GZSL
        src/utils.py:evaluate_dataset); reference behaviour `mode_betas` averages their betas."""
        a, v = self.embed_modalities(batch)
        return {"audio": torch.cdist(a, class_emb), "video": torch.cdist(v, class_emb)}

    def _decode(self, x: torch.Tensor) -> torch.Tensor:
        out = self.F_DEC(x)  # (B, Dt)
        return F.normalize(out, dim=1) if self.cfg.normalize_decoder else out

    def loss(self, batch, class_text, target):
        m = self.cfg.margin
        x_t = class_text[target].float()  # (B, Dt) each video's class text
        a, v = self.embed_modalities(batch)  # (B, E) each
        t = self.F_T(x_t)  # (B, E); per-sample text branch, as the reference
        # the decoder runs once per modality, as the reference (BatchNorm statistics per modality)
        xa, xv, xt = self._decode(a), self._decode(v), self._decode(t)  # (B, Dt) each
        neg = NegativePicker(self.cfg.negatives, target)

        l_rec = ((xt - x_t).norm(dim=1).mean() + (xa - x_t).norm(dim=1).mean()
                 + (xv - x_t).norm(dim=1).mean())
        l_cta = neg.triplet(xt, xa, xa, m)  # anchor x̂_t, positive x̂_a, negative x̂_a of another class
        l_ctv = neg.triplet(xt, xv, xv, m)
        l_ct = (neg.triplet(t, a, a, m) + neg.triplet(a, t, t, m)
                + neg.triplet(t, v, v, m) + neg.triplet(v, t, t, m))
        total = l_rec + l_cta + l_ctv + l_ct
        terms = {"rec": l_rec, "cta": l_cta, "ctv": l_ctv, "ct": l_ct}
        return total, {**{k: x.detach() for k, x in terms.items()}, "total": total.detach()}
