"""f-VAEGAN-D2 (registry name `fvaegan`).

Xian, Sharma, Schiele, Akata: "f-VAEGAN-D2: A Feature Generating Framework for Any-Shot Learning",
CVPR 2019; in its audio-visual adaptation of the AVCA-GZSL benchmark (Mercea et al., CVPR 2022, reference
code `ExplainableML/AVCA-GZSL`: `vae_gan_d2_xu_fsl.py`, `src/model_gen.py`, `src/classifier_fsl.py`).
A feature generator, not an embedding model: it learns to generate video features from class text, then
a softmax classifier trained on real seen + generated unseen features classifies.

    x = normalize([mean_t a ; mean_t v])              (B, Dx = Da + Dv), one L2 norm over the concatenation
    w = text of x's class                             (B, Dt)
    E(x, w) -> μ, log σ²        (Dx + Dt) -> enc_hidden -> 2 x latent       (ReLU)
    G(z, w) -> x̃                (latent + Dt) -> gen_hidden -> Dx          (ReLU, then 2σ - 1)
    D(x, w) -> score            (Dx + Dt) -> critic_hidden -> 1            (LeakyReLU 0.2): conditional critic
    D2(x)   -> score            Dx -> critic_hidden -> 1                   unconditional critic (the "D2")

    critic (every step), z ~ N(0, I), x̂ = G(z, w) held fixed:
        l_D  = D(x̂, w) - D(x, w) + λ GP(D)   +   ud [D2(x̂) - D2(x) + λ GP(D2)]
        GP(f) = mean_i (‖∇ f(x̄_i)‖ - 1)²,  x̄ = α x + (1 - α) x̂,  α ~ U(0, 1) per row      (WGAN-GP)
    generator (every `critic_iter`-th step), critics held fixed:
        z' = μ + σ ε,  x̃ = G(z', w)
        l_G  = gan_weight [-D(x̃, w) - D(x̂, w) - d2_weight D2(x̂)]  +  vae_weight [BCE(x̃, x) + KL(μ, σ)]
        BCE(x̃, x) = -Σ_{i,j} q_ij log p_ij + (1 - q_ij) log(1 - p_ij),  p = (x̃ + 1)/2, q = (x + 1)/2
        KL = -½ Σ (1 + log σ² - μ² - σ²)
    loss = l_D + l_G: one backward, one Adam step. Each network only receives the gradient of its own
    objective: the critic term sees x̂ detached, and the generator term calls the critics with detached
    weights, so the single optimiser of the protocol updates critics and generator simultaneously.

Test-time rule (models/generative.py, shared with the other feature-generating models): for each
candidate class set a softmax classifier is trained on real bank features of the candidates trained on and
`syn_num` generated features G(z, w) of the others (the reference's classifier_fsl settings: 30 epochs of
Adam, lr 1e-3, betas (0.5, 0.999), batch = syn_num); `distances` = its negative log-probabilities.

Differences from the reference code (each a choice, with its switch where one exists):
- the reference's epoch loop `break`s after its first generator update, so one "epoch" is one critic
  step and one generator step (50 of each in a whole run); we train every batch of every epoch, the
  critic each step and the generator every `critic_iter`-th. `--set n_batches=1 fvaegan.critic_iter=1`
  gives the reference's amount of training.
- critics and generator are updated in the same optimiser step (the reference steps the critics first,
  then the generator against the updated critics), by the protocol's one Adam with the model's betas
  (`adam_beta1`, reference 0.5) and the run's lr; the reference has no lr scheduler here (the
  preset's `scheduler_patience` keeps ReduceLROnPlateau from firing).
- the reference chooses its epoch, and the classifier's epoch, on the evaluation split, which is the
  test set in its second stage; here stage 1 selects on validation, the classifier trains for exactly
  `cls_epochs` epochs, and the test set is never used for selection.
- the reference trains its classifier on all real training videos; we use the bank (`bank_size`).
- the reference scores GZSL by argmax of the classifier with no calibration; here calibrated stacking
  applies, as for every model (β = 0 is the reference's rule).
- the reference's generator ends in a sigmoid and its BCE compares σ(h) with the L2-normalised x itself.
  Those x have negative entries, where the BCE has no lower bound (-x log σ(h) -> -inf as σ(h) -> 0): the
  reconstruction term runs away and the weights become NaN after a few hundred steps (measured on the
  synthetic UCF-like set: step ~140 at full training, epoch 12 at the reference's one step per epoch).
  Our default `decoder_output: shifted_sigmoid` generates 2σ(h) - 1 and compares σ(h) with (x + 1)/2,
  both in [0, 1]: the same BCE, bounded. `sigmoid` is the reference's; `linear` with `recon: mse` a
  third choice. The BCE is computed from the logits (finite gradients where σ saturates).
Followed as in the reference: D2 sees real seen features only and the generator's loss has no D2 term
(`d2_weight: 0`; the paper's D2 sees unlabelled unseen features); gan_weight 1e5 (the reference's
default); Linear weights initialised N(0, 0.02), biases 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..settings import WEIGHT, WIDTH, setting
from ..data.types import FeatureDims
from ..errors import ConfigError
from . import register_model
from .base import Batch
from .generative import FeatureGeneratingModel, GenerativeEvalConfig
from .layers import masked_mean

OUTPUTS = ("shifted_sigmoid", "sigmoid", "linear")
RECONS = ("bce", "mse")


@dataclass
class FVAEGANConfig(GenerativeEvalConfig):  # + syn_num, cls_epochs, cls_lr, cls_bs, bank_size, eval_seed
    latent: int = setting(300, WIDTH)  # z (reference --latent_size 300)
    gen_hidden: int = setting(512, WIDTH)  # G hidden width (reference decoder_layer_sizes [512, Dx])
    enc_hidden: int = setting(300, WIDTH)  # E hidden width (reference encoder_layer_sizes [Dx, 300])
    critic_hidden: int = setting(512, WIDTH)  # D and D2 hidden width (reference --ndh 512)
    critic_iter: int = setting(5, WIDTH)  # generator step every critic_iter-th step (reference --critic_iter 5)
    gp_weight: float = setting(10.0, WEIGHT)  # λ of the gradient penalty (reference --lambda1 10)
    gan_weight: float = setting(1e5, WEIGHT)  # (reference --gan_weight default 100000)
    vae_weight: float = setting(1.0, WEIGHT)  # (reference --vae_weight 1)
    ud_weight: float = setting(1.0, WEIGHT)  # weight of D2's critic objective (reference --ud_weight 1)
    d2_weight: float = setting(0.0, WEIGHT)  # D2's term in the generator loss (reference: none, 0)
    decoder_output: str = "shifted_sigmoid"  # shifted_sigmoid 2σ - 1 (ours) | sigmoid (reference) | linear
    recon: str = "bce"  # bce (reference; needs a sigmoid output) | mse
    adam_beta1: float = setting(0.5, "[0, 1)")  # Adam's beta1 for all networks (reference --beta1 0.5)

    def __post_init__(self):
        if self.decoder_output not in OUTPUTS:
            raise ConfigError(f"fvaegan.decoder_output={self.decoder_output!r}: expected one of {', '.join(OUTPUTS)}")
        if self.recon not in RECONS:
            raise ConfigError(f"fvaegan.recon={self.recon!r}: expected one of {', '.join(RECONS)}")
        if self.recon == "bce" and self.decoder_output == "linear":
            raise ConfigError("fvaegan.recon=bce needs a sigmoid decoder_output (BCE takes probabilities)")


def _init_normal(module: nn.Module) -> None:
    """The reference's weights_init: Linear weights N(0, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            nn.init.zeros_(m.bias)


class Critic(nn.Module):
    """[x ; w] -> hidden -> LeakyReLU(0.2) -> 1 (w omitted for the unconditional critic)."""

    def __init__(self, d_in: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d_in, hidden), nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        h = x if w is None else torch.cat([x, w], dim=1)  # (B, Dx [+ Dt])
        return self.fc2(F.leaky_relu(self.fc1(h), 0.2)).squeeze(1)  # (B,)


def bce_sum(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-Σ x log σ(h) + (1 - x) log(1 - σ(h)), from the logits h (log σ(h) = -softplus(-h)): finite
    gradients where σ saturates, where a log of the probability gives 0 * inf. Written out because the
    targets may leave [0, 1] (the reference's BCE against normalised features)."""
    return (x * F.softplus(-logits) + (1 - x) * F.softplus(logits)).sum()


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor, *cond) -> torch.Tensor:
    """mean_i (‖∇_x critic(x̄_i)‖ - 1)² at x̄ = α real + (1 - α) fake; alpha (B, 1)."""
    mix = (alpha * real + (1 - alpha) * fake).requires_grad_(True)  # (B, Dx)
    out = critic(mix, *cond)
    grad, = torch.autograd.grad(out.sum(), mix, create_graph=True)  # (B, Dx)
    return ((grad.norm(dim=1) - 1) ** 2).mean()


@register_model("fvaegan")
class FVAEGAN(FeatureGeneratingModel):
    Config = FVAEGANConfig
    reference_code = "avca-gzsl"

    def __init__(self, cfg: FVAEGANConfig, dims: FeatureDims):
        super().__init__(cfg, dims)
        dx, dt = dims.audio + dims.video, dims.text
        self.E = nn.Sequential(nn.Linear(dx + dt, cfg.enc_hidden), nn.ReLU())
        self.E_mean, self.E_logvar = nn.Linear(cfg.enc_hidden, cfg.latent), nn.Linear(cfg.enc_hidden, cfg.latent)
        self.G = nn.Sequential(nn.Linear(cfg.latent + dt, cfg.gen_hidden), nn.ReLU(), nn.Linear(cfg.gen_hidden, dx))
        self.D = Critic(dx + dt, cfg.critic_hidden)
        self.D2 = Critic(dx, cfg.critic_hidden)
        _init_normal(self)
        self.init_bank(dx, dt)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))  # training steps taken (critic_iter)
        # a host copy of `steps`, so the schedule costs no device sync per step; reloaded with the state
        self._steps_host = 0
        self.register_load_state_dict_post_hook(lambda m, _: setattr(m, "_steps_host", int(m.steps)))

    @property
    def latent_dim(self) -> int:
        return self.cfg.latent

    @property
    def adam_betas(self) -> tuple[float, float]:
        return (self.cfg.adam_beta1, 0.999)

    def features(self, batch: Batch) -> torch.Tensor:
        a = masked_mean(batch.audio, batch.audio_mask).float()  # (B, Da)
        v = masked_mean(batch.video, batch.video_mask).float()  # (B, Dv)
        return F.normalize(torch.cat([a, v], dim=1), dim=1)  # (B, Dx)

    def generate(self, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self._output(self.G(torch.cat([z, w], dim=1)))  # (B, latent + Dt) -> (B, Dx)

    def _output(self, h: torch.Tensor) -> torch.Tensor:
        if self.cfg.decoder_output == "linear":
            return h
        p = torch.sigmoid(h)
        return 2 * p - 1 if self.cfg.decoder_output == "shifted_sigmoid" else p

    def reconstruction(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Of the generator's logits h, summed over the batch as the reference. `shifted_sigmoid` reads
        σ(h) as (x̃ + 1)/2 against (x + 1)/2: both in [0, 1] (x is L2-normalised), so the BCE is bounded
        below; the reference's BCE of σ(h) against x itself is not, wherever x < 0 (it falls without
        bound as σ(h) -> 0), and diverges once trained for more than a few hundred steps."""
        if self.cfg.recon == "mse":
            return F.mse_loss(h, x, reduction="sum")
        return bce_sum(h, (x + 1) / 2 if self.cfg.decoder_output == "shifted_sigmoid" else x)

    def loss(self, batch, class_text, target):
        cfg = self.cfg
        x = self.features(batch)  # (B, Dx)
        w = class_text[target].float()  # (B, Dt)
        B = x.shape[0]
        if self.training and torch.is_grad_enabled():
            self.remember(x, w)
        z = torch.randn(B, cfg.latent, device=x.device)
        fake = self.generate(z, w)  # (B, Dx)
        alpha = torch.rand(B, 1, device=x.device)
        fk = fake.detach()
        wd = self.D(x, w).mean() - self.D(fk, w).mean()
        wd2 = self.D2(x).mean() - self.D2(fk).mean()
        terms = {"wdist": wd, "wdist2": wd2,
                 "gp": gradient_penalty(self.D, x, fk, alpha, w), "gp2": gradient_penalty(self.D2, x, fk, alpha)}
        critic = -wd + cfg.gp_weight * terms["gp"] + cfg.ud_weight * (-wd2 + cfg.gp_weight * terms["gp2"])
        total = critic
        if self.is_generator_step():
            h = self.E(torch.cat([x, w], dim=1))  # (B, Dx + Dt) -> (B, enc_hidden)
            mean, logvar = self.E_mean(h), self.E_logvar(h)  # (B, latent) each
            z_enc = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar)  # (B, latent)
            h_rec = self.G(torch.cat([z_enc, w], dim=1))  # (B, latent + Dt) -> (B, Dx) logits
            recon = self._output(h_rec)
            rec = self.reconstruction(h_rec, x)
            kl = -0.5 * (1 + logvar - mean.pow(2) - logvar.exp()).sum()
            D, D2 = self._frozen(self.D), self._frozen(self.D2)
            adv = -D(recon, w).mean() - D(fake, w).mean() - cfg.d2_weight * D2(fake).mean()
            terms.update(rec=rec, kl=kl, adv=adv)
            total = total + cfg.gan_weight * adv + cfg.vae_weight * (rec + kl)
        if self.training and torch.is_grad_enabled():
            self.steps += 1
            self._steps_host += 1
        return total, {**{k: t.detach() for k, t in terms.items()}, "total": total.detach()}

    def is_generator_step(self) -> bool:
        """The first step of every critic_iter updates the generator too (reference: batch_idx % 5 == 0)."""
        return self._steps_host % self.cfg.critic_iter == 0

    @staticmethod
    def _frozen(critic: nn.Module):
        """The critic with detached weights: the generator's gradient flows through it, not into it."""
        params = {k: p.detach() for k, p in critic.named_parameters()}
        return lambda *args: functional_call(critic, params, args)
