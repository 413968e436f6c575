"""AVFS (registry name `avfs`): f-VAEGAN-D2 plus a contrastive and a discriminative term (reconstructed).

Zheng, Hong, Farazi: "A generative approach to audio-visual generalized zero-shot learning: combining
contrastive and discriminative techniques", IJCNN 2023. No public code, and no text of the paper beyond
its title, authors and venue could be found (searched: documentation, web pages, code and issue
corpora, by title, authors, name and the MFT paper's Table 2 numbers). What is the paper's, then, is
only what the title says: a generative method (a conditional generator of audio-visual features from
class embeddings, whose generated features train the final classifier) that combines a contrastive and
a discriminative technique. Its published results (MFT paper, Table 2, main features) are in
`reports/paper.py`. **Everything below the title is our reconstruction**, each choice with its switch:

    x = normalize([mean_t a ; mean_t v])      (B, Dx), as `fvaegan` (masked mean over real steps first)
    w = text of x's class (B, Dt);  T = texts of the K training classes (K, Dt);  y (B,) rows of T

    l_fvaegan                                 f-VAEGAN-D2 exactly as `fvaegan` (models/fvaegan.py): WGAN-GP
                                              critics D, D2 every step, VAE + adversarial generator term
                                              every `critic_iter`-th step, all its switches
    C(x) = (x W_C) Tᵀ                         (B, K) a bilinear compatibility classifier, W_C (Dx, Dt):
                                              rows for whatever training classes T holds, so it needs no
                                              class count at construction (stage 2 trains on more classes)
    classifier (every step, own objective):   l_C = CE(C(x), y)                        on real features
    generator steps, x̂' = normalize(G(z', w)), z' ~ N(0, I) a fresh draw (see below), C held fixed:
        l_dis = CE(C(x̂'), y)                                                 the discriminative term
        l_con = SupCon(f, labels, τ)  over the 2B rows f = [x ; x̂'], labels [y ; y]     (`contrast: supcon`)
              = -(1/|A|) Σ_{i∈A} (1/|P(i)|) Σ_{p∈P(i)} log( exp(f_i·f_p / τ) / Σ_{a≠i} exp(f_i·f_a / τ) ),
                P(i) = {p ≠ i : label_p = label_i},  A = {i : P(i) ≠ ∅}
              or  -(1/B) Σ_i (1/|P(i)|) Σ_{p∈P(i)} log softmax_j(x̂'_i·x_j / τ)_p,  P(i) = {j : y_j = y_i}
                generated anchors against the real batch only (x_i is always among the positives of
                x̂'_i)                                                               (`contrast: cross`)
    loss = l_fvaegan + l_C + [generator step] (disc_weight l_dis + contrast_weight l_con)
    logged terms: fvaegan's (wdist, wdist2, gp, gp2, rec, kl, adv) + cls = l_C, dis = l_dis, con = l_con

One backward, one Adam step (the protocol's): each network gets only its own objective's gradient, as in
`fvaegan` — the critics see fakes detached; the generator's terms call the critics and C with detached
weights (`_frozen`); C's objective sees only real features. l_con involves no network but G (the real
features are inputs, so real-real pairs carry no gradient: the term shapes the generated features around
the real ones), l_C none but C.

Reconstructed choices and their switches:
- the generative base is f-VAEGAN-D2, the feature generator of the AVCA-GZSL benchmark (the benchmark
  of AVFS's published numbers): ours, `fvaegan`, unchanged, with all its switches (`gan_weight`,
  `vae_weight`, `critic_iter`, `decoder_output`, ...). Setting both new weights to 0 gives `fvaegan`
  exactly, plus l_C, which trains only C (tested).
- the discriminative term is f-CLSWGAN's (Xian, Lorenz, Schiele, Akata, CVPR 2018): the cross-entropy of
  a classifier of the training classes on generated features, added to the generator's loss; the
  classifier learns on real features only. (The AVCA-GZSL generative code keeps that code base's
  `--cls_weight` argument, default 1, "weight of the classification loss", in src/args_gen.py, but its
  f-VAEGAN script never uses it.) Ours: a bilinear text-compatibility classifier trained alongside
  (f-CLSWGAN pre-trains a softmax classifier over a fixed class set and freezes it). `disc_weight` (0 = off).
- the contrastive term is a supervised contrastive loss (Khosla et al., NeurIPS 2020) over real and
  generated features together, in the L2-normalised feature space the test-time classifier sees (no
  projection head: features are fixed inputs, so a head would only reshape the generator's gradient).
  `contrast: supcon | cross` (cross: InfoNCE of generated anchors against real features, same class =
  positive), `temperature` τ, `contrast_weight` (0 = off).
- l_dis and l_con take their own noise draw z' (one more generator pass per generator step) rather than
  the fake of the adversarial term, so that `fvaegan`'s loss is reused unchanged; in expectation the
  terms are the same (sharing the draw needs fvaegan's loss to hand out its fake).
- the generated features are L2-normalised before both terms, as the test-time classifier normalises
  its inputs (models/generative.py).
- weights: the paper's are unknown. The base's generator objective is dominated by its adversarial term
  (gan_weight 1e5: on the synthetic UCF-like set after 400 steps, |∇_G| of 1e5·adv ≈ 7e4, of the BCE
  reconstruction ≈ 65, of l_dis ≈ 11, of l_con ≈ 1.7), so a term of weight ~1 changes nothing. Ours:
  `disc_weight` = `contrast_weight` = 1e4 (a tenth of the default gan_weight; fixed numbers, they do not
  follow a changed gan_weight), which puts both on the adversarial term's scale; picked from a sweep on
  that set's stage-1 validation (docs/baselines.md, AVFS section), not on any test split. `temperature`
  0.1 is ours too.
Test-time rule: the shared one (models/generative.py): a softmax classifier per candidate set on real bank
features of trained classes and `syn_num` generated features of the others.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..settings import POSITIVE, WEIGHT, setting
from ..data.types import FeatureDims
from ..errors import ConfigError
from . import register_model
from .fvaegan import FVAEGAN, FVAEGANConfig

CONTRASTS = ("supcon", "cross")


@dataclass
class AVFSConfig(FVAEGANConfig):  # + every fvaegan setting (sizes, critic schedule, weights, test-time classifier)
    contrast: str = "supcon"  # supcon: over [real ; generated] | cross: generated anchors vs real (ours)
    contrast_weight: float = setting(1e4, WEIGHT)  # weight of l_con, a per-anchor mean (ours: gan_weight / 10)
    temperature: float = setting(0.1, POSITIVE)  # τ of l_con (ours)
    disc_weight: float = setting(1e4, WEIGHT)  # weight of l_dis, a per-sample mean (ours: gan_weight / 10)

    def __post_init__(self):
        try:
            super().__post_init__()
        except ConfigError as e:  # fvaegan's checks name their own prefix
            raise ConfigError(str(e).replace("fvaegan.", "avfs.")) from None
        if self.contrast not in CONTRASTS:
            raise ConfigError(f"avfs.contrast={self.contrast!r}: expected one of {', '.join(CONTRASTS)}")


def supcon(f: torch.Tensor, labels: torch.Tensor, tau: float) -> torch.Tensor:
    """Supervised contrastive loss of rows f (N, D), unit norm, with labels (N,): the mean over anchors
    with at least one positive of -mean_{p ∈ P(i)} log softmax_{a ≠ i}(f_i·f_a / τ)_p."""
    n = f.shape[0]
    sim = f @ f.T / tau  # (N, N)
    self_mask = torch.eye(n, dtype=torch.bool, device=f.device)
    log_prob = sim.masked_fill(self_mask, float("-inf")).log_softmax(dim=1)  # (N, N), a ≠ i
    pos = (labels[:, None] == labels[None, :]) & ~self_mask  # (N, N) P(i)
    n_pos = pos.sum(dim=1)  # (N,)
    # the diagonal is -inf: masked out (0 * -inf would be NaN), only positives enter the sum
    per = -log_prob.masked_fill(~pos, 0.0).sum(dim=1) / n_pos.clamp_min(1)  # (N,)
    has = n_pos > 0
    return per[has].sum() / has.sum().clamp_min(1)


def cross_nce(anchor: torch.Tensor, real: torch.Tensor, y_anchor: torch.Tensor, y_real: torch.Tensor,
              tau: float) -> torch.Tensor:
    """Anchors (B, D) against the real rows (M, D), both unit norm: the mean over anchors with a positive
    (a real row of the same class) of -mean_{p ∈ P(i)} log softmax_j(anchor_i·real_j / τ)_p."""
    log_prob = (anchor @ real.T / tau).log_softmax(dim=1)  # (B, M)
    pos = y_anchor[:, None] == y_real[None, :]  # (B, M)
    n_pos = pos.sum(dim=1)  # (B,)
    per = -(log_prob * pos).sum(dim=1) / n_pos.clamp_min(1)  # (B,)
    has = n_pos > 0
    return per[has].sum() / has.sum().clamp_min(1)


@register_model("avfs")
class AVFS(FVAEGAN):
    Config = AVFSConfig
    reference_code = "avca-gzsl"  # no AVFS code exists; the benchmark's (the f-VAEGAN-D2 base) applies

    def __init__(self, cfg: AVFSConfig, dims: FeatureDims):
        super().__init__(cfg, dims)  # E, G, D, D2, the bank, the step counter
        self.C = nn.Linear(dims.audio + dims.video, dims.text, bias=False)  # W_C: x -> text space
        nn.init.normal_(self.C.weight, 0.0, 0.02)  # as every Linear of the base (fvaegan._init_normal)

    def scores(self, x: torch.Tensor, class_text: torch.Tensor, classifier=None) -> torch.Tensor:
        """(B, Dx), (K, Dt) -> (B, K) compatibility logits x W_C Tᵀ; `classifier` replaces C (frozen)."""
        return (self.C if classifier is None else classifier)(x) @ class_text.T  # (B, Dt) @ (Dt, K)

    def loss(self, batch, class_text, target):
        cfg = self.cfg
        generator_step = self.is_generator_step()  # the base's own test, before it counts the step
        total, terms = super().loss(batch, class_text, target)  # draws z, α (and ε on generator steps)
        class_text = class_text.float()
        x = self.features(batch)  # (B, Dx), the same rows f-VAEGAN's loss saw
        l_c = F.cross_entropy(self.scores(x, class_text), target)  # C's objective: real features only
        extra = {"cls": l_c}
        total = total + l_c
        if generator_step:  # the base updated its generator too (every critic_iter-th step)
            w = class_text[target]  # (B, Dt)
            z = torch.randn(x.shape[0], cfg.latent, device=x.device)
            fake = F.normalize(self.generate(z, w), dim=1)  # (B, Dx), as the test-time classifier sees it
            l_dis = F.cross_entropy(self.scores(fake, class_text, self._frozen(self.C)), target)
            if cfg.contrast == "supcon":
                # (2B, Dx) rows [real ; generated], (2B,) labels: each generated row's class is its real row's
                l_con = supcon(torch.cat([x, fake]), torch.cat([target, target]), cfg.temperature)
            else:
                l_con = cross_nce(fake, x, target, target, cfg.temperature)
            extra.update(dis=l_dis, con=l_con)
            total = total + cfg.disc_weight * l_dis + cfg.contrast_weight * l_con
        terms.update({k: t.detach() for k, t in extra.items()}, total=total.detach())  # replaces the base's total
        return total, terms
