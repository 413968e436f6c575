"""APN, audio-visual version (registry name `apn`).

Xu, Xian, Wang, Schiele, Akata: "Attribute Prototype Network for Zero-Shot Learning", NeurIPS 2020 (and
"Attribute Prototype Network for Any-Shot Learning", IJCV 2022); audio-visual version of the AVCA-GZSL
benchmark (Mercea et al., CVPR 2022; reference code ExplainableML/AVCA-GZSL, src/model.py:APN,
src/loss.py:APN_Loss, run with `--apn`). The class "attributes" are the class text embeddings (Dt of
them: one attribute per text dimension; the reference's 300-d word2vec), x is the concatenated clip
feature (no backbone: the features are fixed).

    x      = concat[video, audio]                  (B, Dv + Da)   (optionally L2-normalised as a whole)
    â      = x V_aleᵀ                               (B, Dt)   ALE branch, V_ale: Dt x (Dv + Da)
    â_p    = x Pᵀ                                   (B, Dt)   prototype branch, one prototype row P_k per
                                                              attribute (max-pool over a 1 x 1 map = identity)
    p      = softmax(â Tᵀ),  p_p = softmax(â_p Tᵀ)  (B, K)    T (K, Dt) the training classes' texts
    loss   = CE(p, y) + MSE(â, t_y) + CE(p_p, y) + MSE(â_p, t_y)
             CE = nn.CrossEntropyLoss ON THE PROBABILITIES (losses.apn.double_softmax_cross_entropy),
             MSE = mean over B x Dt (losses.regression); `lambda_ce`, `lambda_reg` weight the two kinds
             (1 and 1 in the reference, which sums the four terms unweighted)
    d(x,c) = ‖â − t_c‖₂                             evaluation: the ALE branch and the RAW class text

Both weight matrices start at U(0, init_scale) (APN's 2e-4 * torch.rand), the prototypes drawn first, as
the reference; no bias, no dropout, no BatchNorm.

Quirks of the AV adaptation, kept because they are the reference's (tests/test_apn.py checks each):
- softmax applied twice: the model outputs softmax probabilities and the CE applies log-softmax to them
  again (APN's own code does too). Why it matters: the CE term has a floor of log(1 + (K − 1)/e), not 0
  (its logged values are not an ordinary CE's), and near APN's tiny initialisation its gradient is
  about 1/K of the single-softmax one (exactly 1/K at equal scores): a weaker classification signal.
- the ALE branch is what is evaluated, and it shares nothing with the prototype branch. In APN the two
  branches share the fine-tuned ResNet, which is how the prototypes shape the features; on fixed
  features the branches are two identical bias-free linear maps with identical losses and different
  random inits. Why it matters: the prototype branch is trained but cannot change any prediction,
  distance or the selected epoch; the result is that of a linear map trained with CE(double softmax) +
  MSE (not ALE's ranking loss: this "ALE branch" is APN's name for the global branch).
- evaluation by L2 distance, not by the softmax score APN itself ranks (and calibrates) by. Why it
  matters: β of calibrated stacking is in distance units; the ranking equals the dot-product ranking
  the CE trains only when all class texts have the same norm (the reference's texts are normalised).
- APN's attribute decorrelation and compactness losses and its weight regularisers are absent (no
  attribute groups in a text embedding, no spatial maps). Why it matters: "APN" here is two linear
  attribute regressors; nothing localises.

Differences from the reference code: none in model, loss or evaluation. Temporal inputs (B, T, D) are
mean-pooled over real steps first (the method is defined on averaged features).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..settings import POSITIVE, WEIGHT, setting
from ..data.types import FeatureDims
from ..errors import ConfigError
from ..losses.apn import double_softmax_cross_entropy
from ..losses.embedding import regression
from . import register_model
from .base import Batch, GZSLModel
from .layers import video_audio_concat


@dataclass
class APNConfig:
    normalize_inputs: bool = False  # L2-normalise concat[video, audio] (reference --norm_inputs, cls features)
    init_scale: float = setting(2e-4, POSITIVE)  # both maps start at U(0, init_scale) (reference 2e-4 * rand)
    lambda_ce: float = setting(1.0, WEIGHT)  # weight of the two CE terms (reference: 1)
    lambda_reg: float = setting(1.0, WEIGHT)  # weight of the two MSE regression terms (reference: 1)

    def __post_init__(self):
        if self.lambda_ce == 0 and self.lambda_reg == 0:
            raise ConfigError("apn.lambda_ce and apn.lambda_reg are both 0: the loss would be constant")


@register_model("apn")
class APN(GZSLModel):
    Config = APNConfig
    packable = True  # its step vmaps (tests/test_pack.py); packed runs train together
    reference_code = "avca-gzsl"

    def __init__(self, cfg: APNConfig, dims: FeatureDims):
        super().__init__(cfg, dims)
        d_in = dims.video + dims.audio
        # drawn in the reference's order (prototypes, then the ALE vector): same RNG stream, same weights
        self.prototypes = nn.Parameter(cfg.init_scale * torch.rand(dims.text, d_in))  # (Dt, Dv + Da)
        self.ale_vector = nn.Parameter(cfg.init_scale * torch.rand(dims.text, d_in))  # (Dt, Dv + Da)

    def _inputs(self, batch: Batch) -> torch.Tensor:
        return video_audio_concat(batch, self.cfg.normalize_inputs)  # (B, Dv + Da)

    def attributes(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted attributes (â of the ALE branch, â_p of the prototype branch), (B, Dt) each."""
        x = self._inputs(batch)
        return x @ self.ale_vector.t(), x @ self.prototypes.t()  # (B, Dt), (B, Dt)

    def embed_videos(self, batch: Batch) -> torch.Tensor:
        return self._inputs(batch) @ self.ale_vector.t()  # (B, Dt): â, the evaluated branch

    def embed_classes(self, text: torch.Tensor) -> torch.Tensor:
        return text.float()  # (C, Dt): the raw text is the class's attribute vector

    def distances(self, batch: Batch, class_emb: torch.Tensor) -> torch.Tensor:
        """(B, C) ‖â − t_c‖: the reference's own test score is this distance (src/utils.py:
        get_best_evaluation, cdist of pre_attri['final'] and the class texts), so no negation."""
        return torch.cdist(self.embed_videos(batch), class_emb)

    def loss(self, batch, class_text, target):
        t = class_text.float()  # (K, Dt)
        t_y = t[target]  # (B, Dt) each video's class attributes
        a_ale, a_proto = self.attributes(batch)
        terms = {
            "ce_ale": double_softmax_cross_entropy(a_ale @ t.t(), target),  # scores (B, K)
            "reg_ale": regression(a_ale, t_y),
            "ce_proto": double_softmax_cross_entropy(a_proto @ t.t(), target),  # scores (B, K)
            "reg_proto": regression(a_proto, t_y),
        }
        lc, lr = self.cfg.lambda_ce, self.cfg.lambda_reg
        # summed in the reference's order: xe, attri (ALE branch), then xe, attri (prototype branch)
        total = lc * terms["ce_ale"] + lr * terms["reg_ale"] + lc * terms["ce_proto"] + lr * terms["reg_proto"]
        return total, {**{k: v.detach() for k, v in terms.items()}, "total": total.detach()}
