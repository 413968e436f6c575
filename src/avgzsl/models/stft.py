"""STFT: Spiking Tucker Fusion Transformer (registry name `stft`).

Li, Wang, Xiong, Fan: "Spiking Tucker Fusion Transformer for Audio-Visual Zero-Shot Learning", IEEE
Transactions on Image Processing 33 (2024), 4840-4852 (arXiv 2407.08130). No public code. Of the paper we
had its abstract and third-party summaries; they fix the parts, not the formulas: a spiking (SNN) branch
whose neuron thresholds "are dynamically adjusted based on semantic and temporal cues"; a time-step factor
(TSF) that weighs the outputs of the time steps; a global-local pooling (GLP) "which combines the max and
average pooling operations" to form the input membrane potentials; a temporal-semantic Tucker fusion of the
SNN and Transformer outputs, low-rank with full second-order interactions; latent knowledge slots and a
cross-modal Transformer; the AVCA-GZSL benchmark. Training: AVCA's losses (models/avca.py, inherited
unchanged: l_rec + l_ct + l_w + l_t + l_reg); evaluation: AVCA's, L2 between θv and θw. Everything written
below beyond those words is OUR reading (marked "ours"), each with its switch in `STFTConfig`.

    φ_m,t = E_m(x_m,t)  AVCA's A_enc/V_enc per real step (BN over real steps)           (B, S_m, d)
    φ̄_m  = mean of φ_m over the real steps                                               (B, d)
    latent knowledge slots (ours: one cross-attention block, `slots` = K; 0 = none):
      Z = L + CrossAttn(LN(L), LN([φ_a,t + p_a ; φ_v,t + p_v]))   K learned slots L read every real step
                                                                   of both modalities         (B, K, d)
    cross-modal Transformer (AVCA's blocks and residual):
      [.., g_a, g_v] = Blocks([Z ; φ̄_a + p_a ; φ̄_v + p_v]),   h_m = φ̄_m + g_m              (B, d)
    spiking branch, per modality, over S steps (temporal input: its real steps; averaged input: the
    feature presented `time_steps` times, the rate coding of the authors' AVMST, ICME 2023):
      GLP (ours: over time)  u_t = γ ⊙ mean_s φ_s + (1 − γ) ⊙ max_{|s−t| ≤ r} φ_s,  γ = σ(g) per feature
      layer l = 1..`snn_layers`:  I_t = LN(W_l in_t),  in_t = u_t (l = 1) or the spikes of layer l − 1
      LIF  H_t = V_{t−1} + (I_t − (V_{t−1} − V_reset)) / τ
           θ_t = θ0 · 2σ(A_l h_m + w_l ⊙ r_{t−1})     (ours) semantic cue h_m, temporal cue r_{t−1}: the
                                                       neuron's firing rate over the real steps before t
           S_t = Heaviside(H_t − θ_t)                  surrogate gradient σ'(α x) or arctan'
           V_t = H_t (1 − S_t) + V_reset S_t (`reset: hard`) | H_t − θ_t S_t (`soft`)
           a padded step changes nothing: V and r keep their values, S = 0
      TSF (ours)  z_m = Σ_t a_t S_t,  a = softmax over the real steps of q · S_t           (B, n)
    Tucker fusion (ours: the constant 1 appended to each factor = the first-order terms, our "multi-scale"):
      f_m = h_m + W_o (G ×1 [U_z z_m ; 1] ×2 [U_h h_m ; 1]),   G (R+1, R+1, R), U_z (n→R), U_h (d→R)
      i.e. f_o = Σ_ijk G_ijk a_i b_j W_o[o, k]: the rank-(R, R, R) Tucker form of a full bilinear map
    θ_m = A_proj / V_proj(f_m),  θw = W_proj(w), and AVCA's decoders and loss on (φ̄_a, φ̄_v, θ_a, θ_v, θw).

Switches (STFTConfig; AVCA's sizes and loss switches are inherited): `time_steps` (averaged input),
`snn_layers`, `snn_width`, `tau`, `v_threshold` (θ0), `v_reset`, `reset` hard | soft, `surrogate` sigmoid |
atan with `surrogate_alpha`, `threshold` adaptive | semantic (no rate term) | fixed (θ0), `current_norm`
layernorm | none (ours: keeps the currents at the threshold's scale), `glp` mix | avg | max | none with
`glp_radius` r, `tsf` dynamic | mean (the firing rate, AVMST's read-out), `slots`, `tucker_rank` R,
`tucker_first_order`, `fusion_residual` (the h_m + in f_m).

Our readings, and why. Time: the SNN's steps are the video's steps where the input has them, else
repeated presentations (the AVCA-GZSL features are averaged; the authors' AVMST and MSTR code, AVCA-GZSL
forks, run their spiking branch on the averaged feature for T = 10 / 9 steps). On a repeated (constant)
input GLP is the identity (mean = max = φ), so its gate γ only learns on temporal input. The SNN reads the
encoder's φ (not the raw features) so that it costs one d x n layer. Thresholds stay in (0, 2θ0) and equal
θ0 where the cues are 0. The slots see per-step tokens (with the modality embeddings p_a, p_v; no time
embedding, the SNN carries the order), the cross-modal Transformer only the slots and φ̄ (its cost does not
grow with T).

Library choice: our own LIF (~30 lines) and Tucker contraction (one einsum); no extra dependency. The
thresholds here are per sample, per neuron and per step (a function of the Transformer output and of the
neuron's own past spikes), and a padded step must leave the state untouched. spikingjelly's LIFNode
documents v_threshold as a float (a per-step tensor threshold means subclassing its BaseNode), snntorch's
Leaky fixes its threshold at construction (optionally learnable), both keep the membrane as module state
between calls (reset per batch) and neither skips padded steps; tensorly's Tucker regression layer builds
the full weight tensor first. Tests: tests/test_stft.py (LIF against an explicit loop of the membrane
equation, surrogate against its closed form, Tucker against the sum over the core, GLP against a hand
computation, the loss against AVCA's terms on STFT's embeddings).

Reference mode: STFT has no reference code. The authors' earlier code bases are AVCA-GZSL forks, so
`reference_code = "avca-gzsl"` (its batch RNG stream and test-β rule apply); AVCA's BatchNorm-visiting
passes (`reference_loss`, `reference_second_forward`) are AVCA's network's and are switched off here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..settings import DEPTH, POSITIVE, WIDTH, WIDTH0, setting
from ..data.types import FeatureDims
from ..errors import ConfigError
from ..losses.ranking import NEGATIVES
from . import register_model
from .avca import AVCA, AVCAConfig
from .base import Batch
from .layers import masked_mean
from .tcaf import encode_real_steps

CHOICES = {"reset": ("hard", "soft"), "surrogate": ("sigmoid", "atan"),
           "threshold": ("adaptive", "semantic", "fixed"), "current_norm": ("layernorm", "none"),
           "glp": ("mix", "avg", "max", "none"), "tsf": ("dynamic", "mean")}
MODALITIES = ("audio", "video")


@dataclass
class STFTConfig(AVCAConfig):
    """AVCA's sizes, dropouts and loss switches (inherited) plus the spiking / fusion parts, all ours."""

    time_steps: int = setting(4, "[1, 1024]")  # steps an averaged (B, D) input is presented (AVMST: 10)
    snn_layers: int = setting(2, DEPTH)  # spiking layers (AVMST's spiking branch: 2)
    snn_width: int = setting(128, WIDTH0)  # spiking neurons per layer n (ours, for the CPU step); 0 = d_model
    tau: float = setting(2.0, "[1, 1000]")  # membrane time constant (spikingjelly's LIF default 2)
    v_threshold: float = setting(1.0, POSITIVE)  # θ0 (spikingjelly's default 1)
    v_reset: float = setting(0.0, "[-100, 100]")  # reset (and initial) potential
    reset: str = "hard"  # hard: V = V_reset after a spike | soft: V = H - θ
    surrogate: str = "sigmoid"  # sigmoid: α σ(αx)(1 - σ(αx)) | atan: (α/2) / (1 + (π α x / 2)²)
    surrogate_alpha: float = setting(4.0, POSITIVE)  # α (spikingjelly: sigmoid 4, atan 2)
    threshold: str = "adaptive"  # adaptive: semantic + firing-rate cue | semantic: semantic cue only | fixed: θ0
    current_norm: str = "layernorm"  # layernorm on each step's input current | none
    glp: str = "mix"  # mix: learned per-feature γ | avg: global mean | max: local max | none: u_t = φ_t
    glp_radius: int = setting(1, "[0, 1024]")  # r: the local max covers steps t - r .. t + r
    tsf: str = "dynamic"  # dynamic: softmax weights from each step's spikes | mean: firing rate
    slots: int = setting(2, "[0, 1024]")  # K latent knowledge slots (ours); 0 = none (AVCA's two tokens)
    tucker_rank: int = setting(32, WIDTH)  # R of each mode of the core G
    tucker_first_order: bool = True  # append 1 to both factors (first-order terms and a bias in G)
    fusion_residual: bool = True  # f_m = h_m + Tucker(z_m, h_m); false: f_m = Tucker(z_m, h_m)

    def __post_init__(self):
        if self.negatives not in NEGATIVES:  # before AVCA's check, so that the message names this model
            raise ConfigError(f"stft.negatives={self.negatives!r}: expected one of {', '.join(NEGATIVES)}")
        super().__post_init__()
        for key, allowed in CHOICES.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"stft.{key}={getattr(self, key)!r}: expected one of {', '.join(allowed)}")


# ------------------------------------------------------------------------------------ spiking parts

def surrogate_grad(x: torch.Tensor, kind: str, alpha: float) -> torch.Tensor:
    """d spike / d x of the surrogate: the derivative of σ(αx) or of arctan(παx/2)/π + 1/2."""
    if kind == "sigmoid":
        s = torch.sigmoid(alpha * x)
        return alpha * s * (1 - s)
    return (alpha / 2) / (1 + (math.pi / 2 * alpha * x) ** 2)


class SpikeFn(torch.autograd.Function):
    """Heaviside(x) = [x >= 0] forward, the surrogate's derivative backward."""

    @staticmethod
    def forward(ctx, x, kind: str, alpha: float):
        ctx.save_for_backward(x)
        ctx.kind, ctx.alpha = kind, alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * surrogate_grad(x, ctx.kind, ctx.alpha), None, None


class LIFTrace(NamedTuple):
    spikes: torch.Tensor  # (B, S, n)
    thresholds: torch.Tensor | None  # (B, S, n) θ_t, with trace=True
    membrane: torch.Tensor | None  # (B, S, n) V_t after the reset, with trace=True


def lif_scan(current: torch.Tensor, mask: torch.Tensor | None, cfg: STFTConfig, sem: torch.Tensor | None = None,
             rate_weight: torch.Tensor | None = None, trace: bool = False) -> LIFTrace:
    """LIF neurons over S steps. current (B, S, n) input currents I_t; mask (B, S) bool real steps (None:
    all real); sem (B, n) the semantic threshold cue A h (None: θ = θ0); rate_weight (n,) the firing-rate
    cue's weight w (None: no rate term). The state starts at V_reset in each call (a video is a sequence)."""
    B, S, n = current.shape
    decay = 1 - 1 / cfg.tau
    drive = (current + cfg.v_reset) / cfg.tau  # (B, S, n): H_t = (1 - 1/τ) V_{t-1} + (I_t + V_reset) / τ
    v = current.new_full((B, n), cfg.v_reset)
    theta = cfg.v_threshold if sem is None else cfg.v_threshold * 2 * torch.sigmoid(sem)  # (B, n) w/o rate cue
    fired = current.new_zeros(B, n)  # spikes so far, real steps only
    seen = current.new_zeros(B, 1)  # real steps so far
    spikes, thetas, vs = [], [], []
    for t in range(S):
        h = torch.add(drive[:, t], v, alpha=decay)  # (B, n) charge
        if rate_weight is not None:  # the temporal cue: each neuron's firing rate over the earlier real steps
            rate = fired / seen.clamp_min(1.0) if mask is not None else fired / max(t, 1)  # (B, n)
            u = rate_weight * rate if sem is None else sem + rate_weight * rate  # (B, n)
            theta = cfg.v_threshold * 2 * torch.sigmoid(u)  # (B, n), θ0 where the cues are 0
        s = SpikeFn.apply(h - theta, cfg.surrogate, cfg.surrogate_alpha)  # (B, n)
        v_new = h - (h - cfg.v_reset) * s if cfg.reset == "hard" else h - theta * s
        if mask is None:
            v = v_new
        else:  # a padded step emits nothing and keeps the state
            real = mask[:, t].unsqueeze(1)  # (B, 1)
            s = s * real
            v = torch.where(real, v_new, v)
            seen = seen + real
        fired = fired + s
        spikes.append(s)
        if trace:
            thetas.append(torch.as_tensor(theta, dtype=h.dtype).expand(B, n))
            vs.append(v)
    return LIFTrace(torch.stack(spikes, dim=1),  # (B, S, n)
                    torch.stack(thetas, dim=1) if trace else None, torch.stack(vs, dim=1) if trace else None)


def global_local_pool(x: torch.Tensor, mask: torch.Tensor, radius: int, gate: torch.Tensor | None,
                      mode: str) -> torch.Tensor:
    """GLP over time: γ ⊙ mean over real steps + (1 − γ) ⊙ max over the real steps within `radius`.
    x (B, S, d), mask (B, S) bool, gate γ (d,) in [0, 1] (mode mix). Padded steps give 0."""
    if mode == "none":
        return x * mask.unsqueeze(-1)
    glob = masked_mean(x, mask).unsqueeze(1)  # (B, 1, d)
    if mode == "avg":
        return glob * mask.unsqueeze(-1)  # (B, S, d)
    masked = x.masked_fill(~mask.unsqueeze(-1), float("-inf")).transpose(1, 2)  # (B, d, S)
    local = F.max_pool1d(masked, 2 * radius + 1, stride=1, padding=radius).transpose(1, 2)  # (B, S, d)
    # a real step's window holds itself, so only padded steps can be -inf; zero them before mixing (an
    # inf there would turn the gate's zero gradient into 0 * inf = nan)
    local = torch.where(mask.unsqueeze(-1), local, torch.zeros_like(local))  # (B, S, d)
    if mode == "max":
        return local
    return (gate * glob + (1 - gate) * local) * mask.unsqueeze(-1)  # (B, S, d)


class TuckerFusion(nn.Module):
    """f = W_o(G ×1 [U_z z; 1] ×2 [U_h h; 1]): z (B, n), h (B, d) -> (B, d_out)."""

    def __init__(self, n: int, d: int, d_out: int, rank: int, first_order: bool):
        super().__init__()
        self.first_order = first_order
        self.U_z = nn.Linear(n, rank, bias=False)  # factor matrices (the appended 1 stands in for biases)
        self.U_h = nn.Linear(d, rank, bias=False)
        e = rank + int(first_order)
        self.core = nn.Parameter(torch.randn(e, e, rank) / e)  # G; 1/e keeps the output O(|a| |b|)
        self.W_o = nn.Linear(rank, d_out)  # no dropout here: A_proj / V_proj, next, have theirs

    def factors(self, z: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = self.U_z(z), self.U_h(h)  # (B, R) each
        if self.first_order:
            one = a.new_ones(a.shape[0], 1)
            a, b = torch.cat([a, one], dim=1), torch.cat([b, one], dim=1)  # (B, R + 1) each
        return a, b

    def forward(self, z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        a, b = self.factors(z, h)
        y = torch.einsum("bi,bj,ijk->bk", a, b, self.core)  # (B, R): the core contracted with both factors
        return self.W_o(y)  # (B, d_out)


class SlotCombiner(nn.Module):
    """K learned slots read the real tokens of both modalities: one pre-norm multi-head cross-attention
    (AVCA's head layout, no q/k/v biases) with a residual; the slots' feed-forward is the cross-modal
    Transformer's, which they pass through next. tokens (B, L, d), real (B, L) bool -> (B, K, d)."""

    def __init__(self, K: int, d: int, heads: int, dim_head: int, dropout: float):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.slots = nn.Parameter(torch.randn(K, d))  # (K, d), initialised as AVCA's position embeddings
        self.norm_q, self.norm_kv = nn.LayerNorm(d), nn.LayerNorm(d)
        self.to_q = nn.Linear(d, heads * dim_head, bias=False)
        self.to_kv = nn.Linear(d, 2 * heads * dim_head, bias=False)
        self.to_out = nn.Sequential(nn.Linear(heads * dim_head, d), nn.Dropout(dropout))

    def forward(self, tokens: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        (B, L, _), (K, _) = tokens.shape, self.slots.shape
        h, dh = self.heads, self.dim_head
        q = self.to_q(self.norm_q(self.slots)).view(1, K, h, dh).transpose(1, 2).expand(B, h, K, dh)  # (B, h, K, dh)
        kv = self.to_kv(self.norm_kv(tokens)).view(B, L, 2, h, dh)  # (B, L, 2, h, dh)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # 2 x (B, h, L, dh)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=real[:, None, None, :])  # (B, h, K, dh)
        return self.slots + self.to_out(out.transpose(1, 2).reshape(B, K, h * dh))  # (B, K, d)


class SpikingBranch(nn.Module):
    """GLP -> `snn_layers` x (Linear -> LayerNorm -> LIF with adaptive thresholds) -> TSF, one modality."""

    def __init__(self, cfg: STFTConfig, d: int, n: int):
        super().__init__()
        self.cfg, self.n = cfg, n
        L = cfg.snn_layers
        self.gate = nn.Parameter(torch.zeros(d)) if cfg.glp == "mix" else None  # g: γ = σ(g), 0.5 at start
        self.inputs = nn.ModuleList(nn.Linear(d if i == 0 else n, n) for i in range(L))
        self.norms = nn.ModuleList(nn.LayerNorm(n) if cfg.current_norm == "layernorm" else nn.Identity()
                                   for _ in range(L))
        # every layer's semantic cue A_l h in one matmul, every layer's rate weight w_l in one tensor
        self.sem = nn.Linear(d, L * n) if cfg.threshold != "fixed" else None
        if self.sem is not None:  # thresholds start at θ0 and learn their cues from there
            nn.init.zeros_(self.sem.weight), nn.init.zeros_(self.sem.bias)
        self.rate = nn.Parameter(torch.zeros(L, n)) if cfg.threshold == "adaptive" else None
        # q: a bias c would cancel in the softmax over steps (it would never get a gradient)
        self.tsf = nn.Linear(n, 1, bias=False) if cfg.tsf == "dynamic" else None

    def spike_trains(self, phi: torch.Tensor, mask: torch.Tensor, h: torch.Tensor, constant: bool = False
                     ) -> list[torch.Tensor]:
        """Every layer's spikes (B, S, n). phi (B, S, d) per-step encodings, h (B, d) the semantic cue.
        constant: every step of phi is the same (a repeated averaged input): GLP is then the identity and
        the first layer's current is computed once."""
        cfg = self.cfg
        B, S, _ = phi.shape
        if constant:
            x, mask = phi[:, :1], None  # (B, 1, d): mean = max = φ on a constant sequence; every step real
        else:
            gate = None if self.gate is None else torch.sigmoid(self.gate)  # (d,)
            x = global_local_pool(phi, mask, cfg.glp_radius, gate, cfg.glp)  # (B, S, d) input potentials
        sem = None if self.sem is None else self.sem(h).view(B, cfg.snn_layers, self.n)  # (B, L, n)
        out = []
        for i, (lin, norm) in enumerate(zip(self.inputs, self.norms)):
            current = norm(lin(x)).expand(B, S, self.n)  # (B, S, n); padded steps are ignored by the neurons
            x = lif_scan(current, mask, cfg, None if sem is None else sem[:, i],
                         None if self.rate is None else self.rate[i]).spikes  # (B, S, n)
            out.append(x)
        return out

    def forward(self, phi: torch.Tensor, mask: torch.Tensor, h: torch.Tensor, constant: bool = False
                ) -> torch.Tensor:
        s = self.spike_trains(phi, mask, h, constant)[-1]  # (B, S, n)
        mask = None if constant else mask
        if self.tsf is None:
            return masked_mean(s, mask)  # (B, n) firing rates
        score = self.tsf(s).squeeze(-1)  # (B, S)
        if mask is not None:  # the dtype's lowest value, not -inf: no real step gives uniform weights, not nan
            score = score.masked_fill(~mask, torch.finfo(s.dtype).min)
        return (torch.softmax(score, dim=1).unsqueeze(-1) * s).sum(dim=1)  # (B, n) TSF-weighted spikes


# ----------------------------------------------------------------------------------------- model

@register_model("stft")
class STFT(AVCA):
    Config = STFTConfig
    reference_code = "avca-gzsl"
    reference_loss = None  # AVCA's reference passes would bypass the spiking branch (module docstring)
    reference_second_forward = None

    def __init__(self, cfg: STFTConfig, dims: FeatureDims):
        super().__init__(cfg, dims)  # AVCA's encoders, blocks, position embeddings, projections, decoders
        d = cfg.d_model
        n = cfg.snn_width or d
        self.combiner = (SlotCombiner(cfg.slots, d, cfg.heads, cfg.dim_head, cfg.dropout_encoder)
                         if cfg.slots else None)
        self.snn = nn.ModuleDict({m: SpikingBranch(cfg, d, n) for m in MODALITIES})
        self.fusion = nn.ModuleDict({m: TuckerFusion(n, d, d, cfg.tucker_rank, cfg.tucker_first_order)
                                     for m in MODALITIES})

    def steps(self, batch: Batch, m: str) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """φ_m per step (B, S, d), its real-step mask (B, S), and whether the input was averaged."""
        x = getattr(batch, m).float()
        enc = self.A_enc if m == "audio" else self.V_enc
        if x.ndim == 2:  # averaged: one encoding, presented time_steps times
            phi = enc(x).unsqueeze(1).expand(-1, self.cfg.time_steps, -1)  # (B, S, d)
            return phi, torch.ones(phi.shape[:2], dtype=torch.bool, device=x.device), True
        mask = getattr(batch, f"{m}_mask")
        mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device) if mask is None else mask.bool()
        return encode_real_steps(enc, x, mask, self.cfg.d_model), mask, False  # (B, T, d), zeros on padding

    def semantic(self, phi: dict, mask: dict, averaged: dict) -> tuple[dict, dict]:
        """φ̄_m (B, d) and the cross-modal Transformer's h_m (B, d), with the slots read first."""
        mean = {m: phi[m][:, 0] if averaged[m] else masked_mean(phi[m], mask[m]) for m in MODALITIES}
        tok = [mean[m] + self.pos_emb[i] for i, m in enumerate(MODALITIES)]  # 2 x (B, d)
        x = torch.stack(tok, dim=1)  # (B, 2, d)
        if self.combiner is not None:
            per_step = [(mean[m].unsqueeze(1) if averaged[m] else phi[m]) + self.pos_emb[i]
                        for i, m in enumerate(MODALITIES)]  # (B, S_m, d) each; a repeat adds nothing
            real = [mask[m][:, :1] if averaged[m] else mask[m] for m in MODALITIES]  # (B, S_m) each
            slots = self.combiner(torch.cat(per_step, dim=1), torch.cat(real, dim=1))  # (B, K, d)
            x = torch.cat([slots, x], dim=1)  # (B, K + 2, d)
        for blk in self.blocks:
            x = blk(x)
        h = {m: mean[m] + x[:, -2 + i] for i, m in enumerate(MODALITIES)}  # AVCA's residual
        return mean, h

    def encode(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """φ̄a, φ̄v (B, d) and θa, θv (B, E): what AVCA's loss and evaluation read."""
        phi, mask, averaged = {}, {}, {}
        for m in MODALITIES:
            phi[m], mask[m], averaged[m] = self.steps(batch, m)
        mean, h = self.semantic(phi, mask, averaged)
        fused = {}
        for m in MODALITIES:
            z = self.snn[m](phi[m], mask[m], h[m], constant=averaged[m])  # (B, n)
            f = self.fusion[m](z, h[m])  # (B, d)
            fused[m] = h[m] + f if self.cfg.fusion_residual else f
        return mean["audio"], mean["video"], self.A_proj(fused["audio"]), self.V_proj(fused["video"])
