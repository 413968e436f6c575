"""Hyper-multiple: AVCA with a hyperbolic alignment loss over several adaptive curvatures (registry name
`hyper_avca`).

Hong, Hayder, Han, Fang, Harandi, Petersson: "Hyperbolic Audio-visual Zero-shot Learning", ICCV 2023.
Official code: github.com/JHome1/Hyper-AVZSL (Hyper-AVZSL-online/, a fork of AVCA-GZSL whose only model
change is `src/model_improvements.py:Hyper_AVCA`); places in it are named `file:function` below. The
formulas are read from that code: of the paper we had only the abstract and the figure caption (an
alignment of video and audio features "in the hyperbolic space", "multiple adaptive curvatures").

Everything of AVCA (models/avca.py: blocks, l_rec + l_ct + l_w + l_t + l_reg, negatives, evaluation) is
inherited; this module adds one term on AVCA's encoder outputs φa, φv (B, d), taken before the
cross-attention:

    c      = c_max · σ(W_c [φv; φa] + b_c)        (B, K) K curvatures per video       (`adaptive`)
             c_max for every video, K = 1                                            (`fixed`)
    Π^c(x) = x · min(1, r_c / ‖x‖),  r_c = (1 − 10⁻³)/√c   the feature read as a point of the Poincaré ball
                                                         of curvature −c (clipped inside it)
    log^c_0(y) = artanh(√c ‖y‖) · y / (√c ‖y‖)           back to the tangent space at the origin
    ψ^k    = log^{c_k}_0(Π^{c_k}(φ)),  each row with its own c_k                         (B, d)
    S(X)   = cosine-similarity matrix of the rows of X,  S_ij = ⟨x_i, x_j⟩ / (‖x_i‖ ‖x_j‖)   (B, B)
    A(φa, φv) = (1/K) Σ_k MSE(S(ψv^k), S(ψa^k))           MSE = mean over the B² entries
    l_align = A(φa, φv) + A(φa⁻, φv⁻)                      ⁻: each video's negative (`align_negatives`)
    loss   = loss_AVCA + λ · l_align,   λ = 10⁻³ (`align_weight`)

Hyper-multiple is `adaptive` with K > 1; the official code's other two variants are the same switches:
Hyper-single = `adaptive` with K = 1, Hyper-alignment = `fixed` (its `--num_curvature 0`). The Poincaré
maps are geoopt's κ-stereographic functions with κ = −c; not a `geoopt.PoincareBall`, whose curvature is
one number per manifold, while each video here has its own K curvatures. Training and evaluation are
AVCA's: the official get_evaluation.py evaluates Hyper_AVCA through AVCA's get_embeddings (‖θv − θw‖),
the hyperbolic part only adds a training loss.

What the term computes, in the official code as here. Π^c and log^c_0 only rescale each vector by a
positive factor, and S divides every row by its norm, so S(ψ^k) = S(φ) for every c:
    l_align = MSE(S(φv), S(φa)) + MSE(S(φv⁻), S(φa⁻))      for any c_max, K and curvature layer.
The term aligns the cosine-similarity structure of the audio and the video batch (curvature-free), and the
curvature layer W_c gets no gradient (rounding noise only, ~1e-9). We keep the layer and the K maps to follow
the official computation and its parameters; tests/test_hyper_avca.py checks the identity. Under Adam its
weights still move (weight decay on a gradient of rounding noise), which changes nothing else: the logged
`curvature` (batch mean of c) drifts to c_max/2 = c_max·σ(0) (synthetic UCF, 90 steps: 0.267 -> 0.249).

Official settings (src/args.py, run_scripts/<dataset>-GZSL/hyper_avca.sh, README.md at commit 8ef2c6b,
"Curvature settings"; the README of the current snapshot no longer has the table): the run scripts, as
committed, run `--hyper_framework 'Hyper-alignment' --curvature 0.01 --num_curvature 0` on top of AVCA's
commands (same dropouts, momentum, 50 epochs x 500 batches, lr 1e-3, weight decay 1e-5, ReduceLROnPlateau),
and the README says to run them with its curvature table: Hyper-multiple c_max = 0.36 / 0.50 / 0.37 with
K = 2 / 3 / 2 (VGGSound / UCF / ActivityNet, main features), 0.04 / 0.43 / 0.13 with K = 3 / 2 / 3 (cls
features). λ = 1e-3 is hard-coded (Hyper_AVCA.backward). The curvature defaults and presets take the
README's cls row (the row the issue and the MFT paper's comparison name; no row exists for the CLIP/CLAP
features of its † rows); the AVCA settings under them are AVCA's main-feature commands, as in our `avca`
presets. Which row is used changes no number (the identity below).

Differences from the official code:
- negatives: the official term on negatives runs on its separate negative batch (one random other-class
  video per positive); ours takes each video's AVCA negative from the batch (`random`: the random other-
  class row, `hardest`: the nearest other-class row of [φa; φv]), so A(φa⁻, φv⁻) is the batch alignment
  re-weighted by how often each row is drawn. Rows without a negative (a one-class batch) are left out.
- a zero feature row: the official S divides by its norm (NaN); ours gives it similarity 0 (F.normalize).
- geoopt clamps artanh at 1 − 1e-7 (hyptorch: 1 − 1e-5); the projection margin is hyptorch's 1e-3, not
  geoopt's float32 default 4e-3. Neither changes the loss (see above); they keep ψ equal to the official.
- K >= 1 is required: the official Hyper-multiple with `--num_curvature 0` divides by zero.
- everything AVCA differs in (models/avca.py), e.g. the trained position embeddings.
Reference mode: the code base is AVCA-GZSL's (train.py, test.py, sampler.py, metrics.py identical; utils.py
and dataset.py differ by a commented-out call and the features path), so
`reference_code = "avca-gzsl"` and AVCA's reference passes apply; the curvature layer is a plain Linear
(no BatchNorm), so its call order does not matter.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from geoopt.manifolds.stereographic import math as kmath
from torch import nn

from ..settings import POSITIVE, WEIGHT, setting
from ..data.types import FeatureDims
from ..errors import ConfigError
from ..losses.ranking import NEGATIVES, NegativePicker
from . import register_model
from .avca import AVCA, AVCAConfig

CURVATURE_MODES = ("adaptive", "fixed")
# hyptorch's project(): points are clipped to radius (1 - 1e-3)/sqrt(c)
BALL_MARGIN = 1e-3


def ball_to_tangent(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """log^c_0(Π^c(x)): x (B, D) read as points of the Poincaré ball of curvature −c, clipped inside it,
    mapped to the tangent space at 0. c: (B, 1) one curvature per row, or a 0-d tensor."""
    k = -c  # geoopt's sectional curvature κ
    return kmath.logmap0(kmath.project(x, k=k, eps=BALL_MARGIN), k=k)  # (B, D)


def cosine_matrix(x: torch.Tensor) -> torch.Tensor:
    """(B, D) -> (B, B) cosines between rows; a zero row has cosine 0 with everything."""
    x = F.normalize(x, dim=1)  # (B, D)
    return x @ x.T  # (B, B)


def masked_mse(a: torch.Tensor, b: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """MSE over the entries (i, j) of two (B, B) matrices with keep_i and keep_j: the MSE of the
    sub-matrices, without indexing by a data-dependent count (no host sync in the training step)."""
    if keep is None:
        return F.mse_loss(a, b)
    m = keep.to(a.dtype)  # (B,)
    mm = m.unsqueeze(1) * m.unsqueeze(0)  # (B, B)
    return ((a - b).pow(2) * mm).sum() / mm.sum().clamp_min(1.0)


@dataclass
class HyperAVCAConfig(AVCAConfig):
    curvature: float = setting(0.43, POSITIVE)  # c_max: adaptive curvatures lie in (0, c_max); `fixed`: c
    #                                             itself (official --curvature; README Hyper-multiple, UCF
    #                                             cls features: 0.43)
    num_curvatures: int = setting(2, "[1, 1024]")  # K (official --num_curvature; README UCF cls: 2)
    curvature_mode: str = "adaptive"  # adaptive: c = c_max·σ(W_c [φv; φa] + b_c), learned per video
    #                                   (Hyper-multiple; K = 1: Hyper-single) | fixed: c = c_max, K = 1
    #                                   (Hyper-alignment)
    align_weight: float = setting(1e-3, WEIGHT)  # λ (official: 1e-3, hard-coded); 0 = AVCA, term logged
    align_negatives: bool = True  # add A(φa⁻, φv⁻) on each video's negative (official: its negative batch)

    def __post_init__(self):
        if self.negatives not in NEGATIVES:  # checked before AVCA's check, so the message names this model
            raise ConfigError(f"hyper_avca.negatives={self.negatives!r}: expected one of {', '.join(NEGATIVES)}")
        super().__post_init__()
        if self.curvature_mode not in CURVATURE_MODES:
            raise ConfigError(f"hyper_avca.curvature_mode={self.curvature_mode!r}: expected one of "
                              f"{', '.join(CURVATURE_MODES)}")
        if self.curvature_mode == "fixed" and self.num_curvatures != 1:
            raise ConfigError(f"hyper_avca.num_curvatures={self.num_curvatures} needs curvature_mode: adaptive "
                              "(a fixed curvature is one curvature; set num_curvatures: 1)")


@register_model("hyper_avca")
class HyperAVCA(AVCA):
    Config = HyperAVCAConfig
    reference_code = "avca-gzsl"

    def __init__(self, cfg: HyperAVCAConfig, dims: FeatureDims):
        super().__init__(cfg, dims)
        # built after every AVCA block, as the official fusenet1: the same seed gives the same AVCA weights
        # as `avca`, so the two differ only by the alignment term
        self.curv = (nn.Linear(2 * cfg.d_model, cfg.num_curvatures) if cfg.curvature_mode == "adaptive"
                     else None)

    def curvatures(self, phi_a: torch.Tensor, phi_v: torch.Tensor) -> torch.Tensor:
        """(B, K) each video's curvatures c (the ball has curvature −c)."""
        if self.curv is None:
            return phi_a.new_full((len(phi_a), 1), self.cfg.curvature)  # (B, 1)
        fused = torch.cat([phi_v, phi_a], dim=1)  # (B, 2d), video first as the official
        return self.cfg.curvature * torch.sigmoid(self.curv(fused))  # (B, K)

    def alignment(self, phi_a: torch.Tensor, phi_v: torch.Tensor, keep: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """A(φa, φv) over the rows with keep (all if None), and the curvatures c (B, K)."""
        c = self.curvatures(phi_a, phi_v)  # (B, K)
        per_k = []
        for k in range(c.shape[1]):
            ck = c[:, k:k + 1]  # (B, 1)
            s_v = cosine_matrix(ball_to_tangent(phi_v, ck))  # (B, B)
            s_a = cosine_matrix(ball_to_tangent(phi_a, ck))  # (B, B)
            per_k.append(masked_mse(s_v, s_a, keep))
        return torch.stack(per_k).mean(), c  # stack: (K,)

    def align_loss(self, phi_a: torch.Tensor, phi_v: torch.Tensor, neg: NegativePicker
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """l_align and the positives' curvatures (B, K)."""
        l_align, c = self.alignment(phi_a, phi_v)
        if self.cfg.align_negatives:
            d = phi_a.shape[1]
            # one pool of both modalities, so that audio and video of a negative come from the same video
            pair = torch.cat([phi_a, phi_v], dim=1)  # (B, 2d)
            neg_pair, valid = neg(pair, pair)  # (B, 2d), (B,)
            neg_a, neg_v = neg_pair.split(d, dim=1)  # (B, d) each
            l_align = l_align + self.alignment(neg_a, neg_v, keep=valid)[0]
        return l_align, c

    def _loss(self, w, phi_a, phi_v, th_a, th_v, th_w, rho_a, rho_v, rho_w, rec, neg):
        # AVCA's loss and its reference_loss both end here, so reference mode gets the term too
        total, terms = super()._loss(w, phi_a, phi_v, th_a, th_v, th_w, rho_a, rho_v, rho_w, rec, neg)
        l_align, c = self.align_loss(phi_a, phi_v, neg)
        total = total + self.cfg.align_weight * l_align
        terms = {k: v for k, v in terms.items() if k != "total"}
        return total, {**terms, "align": l_align.detach(), "curvature": c.mean().detach(),
                       "total": total.detach()}
