"""STFT (models/stft.py): LIF neurons against an explicit loop of the membrane equation, the surrogate gradient
against its closed form, the Tucker fusion against the sum over its core, GLP against a hand computation,
the loss against AVCA's terms on STFT's embeddings, gradients, padding, averaged = repeated steps, configs."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from avgzsl.config import load_config, resolve_config
from avgzsl.errors import ConfigError
from avgzsl.losses.ranking import random_negatives
from avgzsl.models import Batch, build_model, model_config
from avgzsl.models.stft import SpikeFn, STFTConfig, TuckerFusion, global_local_pool, lif_scan

pytestmark = pytest.mark.usefixtures("one_thread")

DIMS = dict(audio=7, video=5, text=6)
TINY = dict(d_model=9, enc_hidden=11, dec_hidden=10, dim_out=4, heads=2, dim_head=3, mlp_dim=8, snn_width=8,
            tucker_rank=3, time_steps=3, v_threshold=0.5)  # θ0 0.5: every tiny layer fires (1.0 leaves some silent)
NO_DROPOUT = dict(dropout_encoder=0.0, dropout_proj=0.0, dropout_decoder=0.0)
B, T = 8, 5
TARGET = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])


def make_model(**over):
    torch.manual_seed(0)
    return build_model("stft", {**TINY, **over}, DIMS)


def averaged_batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.randn(B, DIMS["audio"], generator=g), torch.randn(B, DIMS["video"], generator=g))


def temporal_batch(seed=1, T=T):
    g = torch.Generator().manual_seed(seed)
    la, lv = torch.randint(1, T + 1, (B,), generator=g), torch.randint(1, T + 1, (B,), generator=g)
    la[0], lv[1] = T, T  # some video uses every step
    ma, mv = torch.arange(T) < la[:, None], torch.arange(T) < lv[:, None]  # (B, T)
    a = torch.randn(B, T, DIMS["audio"], generator=g) * ma[..., None]
    v = torch.randn(B, T, DIMS["video"], generator=g) * mv[..., None]
    times = torch.arange(T, dtype=torch.float32).expand(B, T)
    return Batch(a, v, ma, mv, times * ma, times * mv)


def class_text(seed=2):
    return torch.randn(4, DIMS["text"], generator=torch.Generator().manual_seed(seed))


# ---- surrogate gradient and LIF neurons ----------------------------------------------------------------

@pytest.mark.parametrize("kind,alpha", [("sigmoid", 4.0), ("sigmoid", 1.5), ("atan", 2.0)])
def test_surrogate_gradient_is_its_closed_form(kind, alpha):
    x = torch.tensor([-2.0, -0.3, 0.0, 0.1, 1.7], dtype=torch.float64, requires_grad=True)
    s = SpikeFn.apply(x, kind, alpha)
    assert s.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]  # Heaviside, 1 at 0
    (s * torch.arange(1.0, 6.0, dtype=torch.float64)).sum().backward()  # upstream gradient 1..5
    for i, xi in enumerate(x.tolist()):
        if kind == "sigmoid":
            sig = 1 / (1 + math.exp(-alpha * xi))
            expected = alpha * sig * (1 - sig)  # d/dx σ(αx)
        else:
            expected = (alpha / 2) / (1 + (math.pi / 2 * alpha * xi) ** 2)  # d/dx (arctan(παx/2)/π + 1/2)
        assert x.grad[i].item() == pytest.approx((i + 1) * expected, rel=1e-12)


def loop_lif(current, mask, cfg, sem=None, rate_weight=None):
    """The membrane equation, one neuron and one step at a time, with Python floats."""
    Bn, S, n = len(current), len(current[0]), len(current[0][0])
    spikes, thetas, vs = ([[[0.0] * n for _ in range(S)] for _ in range(Bn)] for _ in range(3))
    for b in range(Bn):
        for i in range(n):
            v, fired, seen = cfg.v_reset, 0.0, 0
            for t in range(S):
                if not mask[b][t]:  # a padded step: no spike, the state carries over (θ is not compared)
                    vs[b][t][i] = v
                    continue
                h = v + (current[b][t][i] - (v - cfg.v_reset)) / cfg.tau
                u = 0.0 if sem is None else sem[b][i]
                if rate_weight is not None:
                    u += rate_weight[i] * (fired / seen if seen else 0.0)
                theta = cfg.v_threshold if sem is None and rate_weight is None else \
                    cfg.v_threshold * 2 / (1 + math.exp(-u))
                s = 1.0 if h - theta >= 0 else 0.0
                v = (cfg.v_reset if s else h) if cfg.reset == "hard" else h - theta * s
                fired, seen = fired + s, seen + 1
                spikes[b][t][i], thetas[b][t][i], vs[b][t][i] = s, theta, v
    return spikes, thetas, vs


@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("cues", ["adaptive", "semantic", "fixed"])
def test_lif_is_the_membrane_equation(reset, cues):
    g = torch.Generator().manual_seed(3)
    Bn, S, n = 3, 7, 4
    cfg = STFTConfig(tau=1.7, v_threshold=0.8, v_reset=-0.1, reset=reset)
    current = 1.6 * torch.rand(Bn, S, n, generator=g, dtype=torch.float64)
    mask = torch.ones(Bn, S, dtype=torch.bool)
    mask[1, 5:] = False  # padding at the end
    mask[2, 2] = False  # and a gap: the state must carry over it
    sem = torch.randn(Bn, n, generator=g, dtype=torch.float64) if cues != "fixed" else None
    w = 3 * torch.randn(n, generator=g, dtype=torch.float64) if cues == "adaptive" else None
    out = lif_scan(current, mask, cfg, sem, w, trace=True)
    spikes, thetas, vs = loop_lif(current.tolist(), mask.tolist(), cfg, None if sem is None else sem.tolist(),
                                  None if w is None else w.tolist())
    real = mask.unsqueeze(-1).expand(Bn, S, n)
    assert out.spikes.tolist() == spikes
    assert torch.allclose(out.membrane, torch.tensor(vs, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(out.thresholds[real], torch.tensor(thetas, dtype=torch.float64)[real], atol=1e-12)
    assert 0 < out.spikes.mean() < 1  # the test exercises both firing and silence
    if cues == "adaptive":  # the firing-rate cue moves the thresholds from step to step
        assert (out.thresholds[0, 1:] - out.thresholds[0, 1]).abs().max() > 1e-3
    no_mask = lif_scan(current[:1], None, cfg, None if sem is None else sem[:1], w, trace=True)
    assert torch.equal(no_mask.spikes, out.spikes[:1])  # mask None = every step real


# ---- Tucker fusion and GLP ------------------------------------------------------------------------------

@pytest.mark.parametrize("first_order", [True, False])
def test_tucker_fusion_is_the_sum_over_the_core(first_order):
    torch.manual_seed(4)
    fus = TuckerFusion(n=3, d=4, d_out=5, rank=2, first_order=first_order).double()
    z, h = torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
    out = fus(z, h)
    Uz, Uh, G = fus.U_z.weight.tolist(), fus.U_h.weight.tolist(), fus.core.tolist()
    Wo, bo = fus.W_o.weight.tolist(), fus.W_o.bias.tolist()
    for b in range(2):
        a = [sum(Uz[r][p] * z[b, p].item() for p in range(3)) for r in range(2)] + ([1.0] if first_order else [])
        c = [sum(Uh[r][q] * h[b, q].item() for q in range(4)) for r in range(2)] + ([1.0] if first_order else [])
        y = [sum(G[i][j][k] * a[i] * c[j] for i in range(len(a)) for j in range(len(c))) for k in range(2)]
        expected = [bo[o] + sum(Wo[o][k] * y[k] for k in range(2)) for o in range(5)]
        assert out[b].tolist() == pytest.approx(expected, rel=1e-10, abs=1e-12)
    # first-order terms: with h = 0 the output still depends on z only where the 1 is appended
    zero = fus(z, torch.zeros_like(h))
    assert (zero[0] - zero[1]).abs().max().item() > 1e-6 if first_order else torch.equal(zero[0], zero[1])


def test_global_local_pooling_by_hand():
    x = torch.tensor([[[1.0, 8.0], [5.0, 2.0], [9.0, 9.0], [3.0, 4.0], [0.0, 0.0]]])  # (1, 5, 2)
    mask = torch.tensor([[True, True, False, True, False]])  # steps 2 and 4 are padding
    gate = torch.tensor([0.25, 0.75])
    # real steps 0, 1, 3: global mean (1+5+3)/3 = 3, (8+2+4)/3 = 14/3
    # local max, radius 1, over real steps only: step 0 <- {0,1}: (5, 8); 1 <- {0,1}: (5, 8); 3 <- {3}: (3, 4)
    mean, local = torch.tensor([3.0, 14 / 3]), torch.tensor([[5.0, 8.0], [5.0, 8.0], [0, 0], [3.0, 4.0], [0, 0]])
    real = mask[0].float().unsqueeze(-1)
    mix = (gate * mean + (1 - gate) * local) * real
    assert torch.allclose(global_local_pool(x, mask, 1, gate, "mix")[0], mix)
    assert torch.allclose(global_local_pool(x, mask, 1, gate, "avg")[0], mean * real)
    assert torch.allclose(global_local_pool(x, mask, 1, gate, "max")[0], local)
    assert torch.equal(global_local_pool(x, mask, 1, gate, "none")[0], x[0] * real)
    # radius 0: the local max is the step itself
    assert torch.allclose(global_local_pool(x, mask, 0, gate, "max")[0], x[0] * real)
    # radius 2: step 0 <- {0, 1}, step 1 <- {0, 1, 3}, step 3 <- {1, 3}
    wide = torch.tensor([[5.0, 8.0], [5.0, 8.0], [0, 0], [5.0, 4.0], [0, 0]])
    assert torch.allclose(global_local_pool(x, mask, 2, gate, "max")[0], wide)


# ---- the model ------------------------------------------------------------------------------------------

def test_loss_is_avca_terms_on_stft_embeddings():
    """The loss is AVCA's l_rec + l_ct + l_w + l_t + l_reg, written out here with nn.TripletMarginLoss, on
    STFT's φ̄a, φ̄v, θa, θv (not AVCA's encoding)."""
    model = make_model(**NO_DROPOUT).train()
    batch, text = temporal_batch(), class_text()
    torch.manual_seed(5)
    loss, terms = model.loss(batch, text, TARGET)
    torch.manual_seed(5)  # the same negatives, drawn after the same forward passes
    phi_a, phi_v, th_a, th_v = model.encode(batch)
    w = text[TARGET]
    th_w = model.W_proj(w)
    rho_a, rho_v, rho_w = model.D(th_a), model.D(th_v), model.D(th_w)
    j, valid = random_negatives(TARGET)
    assert valid.all()
    T3 = torch.nn.TripletMarginLoss(margin=1.0)
    mse = F.mse_loss
    expected = {
        "rec": mse(w, rho_v) + mse(w, rho_a) + mse(w, rho_w),
        "ct": T3(rho_w, rho_v, rho_v[j]) + T3(rho_w, rho_a, rho_a[j]),
        "w": T3(th_w, th_v, th_v[j]) + T3(th_w, th_a, th_a[j]) + T3(th_a, th_w, th_w[j]) + T3(th_v, th_w, th_w[j]),
        "t": T3(th_a, th_w, th_a[j]) + T3(th_v, th_w, th_v[j]) + T3(th_w, th_a, th_w[j]) + T3(th_w, th_v, th_w[j]),
        "reg": (mse(model.V_rec(th_v), phi_v) + mse(model.A_rec(th_a), phi_a) + mse(th_v, th_w)
                + mse(th_a, th_w)),
    }
    for k, v in expected.items():
        assert terms[k].item() == pytest.approx(v.item(), rel=1e-5), k
    assert loss.item() == pytest.approx(sum(v.item() for v in expected.values()), rel=1e-5)


def test_one_backward_reaches_every_parameter():
    model = make_model().train()
    loss, _ = model.loss(temporal_batch(), class_text(), TARGET)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name
    # averaged input: a repeated step makes GLP the identity, so only its gate is left out
    model.zero_grad(set_to_none=True)
    model.loss(averaged_batch(), class_text(), TARGET)[0].backward()
    missing = sorted(n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0)
    assert missing == ["snn.audio.gate", "snn.video.gate"]


def test_padding_steps_change_nothing():
    model = make_model().eval()
    batch = temporal_batch()
    text = class_text()
    with torch.no_grad():
        ref = model.embed_videos(batch)
        for m in ("audio", "video"):  # every spiking layer fires, so TSF and the state really see the steps
            phi, mask, _ = model.steps(batch, m)
            h = torch.randn(B, TINY["d_model"])
            assert all(s.sum() > 0 for s in model.snn[m].spike_trains(phi, mask, h)), m
        # other values on the padded steps
        noisy = Batch(batch.audio + 50 * torch.randn_like(batch.audio) * ~batch.audio_mask[..., None],
                      batch.video - 30 * torch.rand_like(batch.video) * ~batch.video_mask[..., None],
                      batch.audio_mask, batch.video_mask)
        assert torch.equal(model.embed_videos(noisy), ref)
        # three more padded steps at the end
        pad = lambda x: torch.cat([x, torch.full((B, 3, x.shape[2]), 7.0)], dim=1)  # noqa: E731
        padm = lambda m: torch.cat([m, torch.zeros(B, 3, dtype=torch.bool)], dim=1)  # noqa: E731
        longer = Batch(pad(batch.audio), pad(batch.video), padm(batch.audio_mask), padm(batch.video_mask))
        assert torch.allclose(model.embed_videos(longer), ref, atol=1e-6)
    # training: BatchNorm statistics over real steps only, so the loss is the same too
    model.train()
    torch.manual_seed(6)
    l1 = model.loss(batch, text, TARGET)[0]
    torch.manual_seed(6)
    l2 = model.loss(noisy, text, TARGET)[0]
    assert l1.item() == pytest.approx(l2.item(), rel=1e-6)


def test_averaged_input_is_time_steps_repeated_presentations():
    """An averaged (B, D) input is the same feature presented `time_steps` times: equal to a temporal
    input of that many identical real steps (eval mode, so BatchNorm uses its running statistics)."""
    model = make_model(time_steps=4).eval()
    avg = averaged_batch()
    rep = Batch(avg.audio[:, None].expand(B, 4, -1), avg.video[:, None].expand(B, 4, -1),
                torch.ones(B, 4, dtype=torch.bool), torch.ones(B, 4, dtype=torch.bool))
    with torch.no_grad():
        assert torch.allclose(model.embed_videos(avg), model.embed_videos(rep), atol=1e-5)
        other = make_model(time_steps=1).eval()
        assert not torch.allclose(other.embed_videos(avg), model.embed_videos(avg), atol=1e-4)


SWITCHES = [dict(reset="soft"), dict(surrogate="atan", surrogate_alpha=2.0), dict(threshold="semantic"),
            dict(threshold="fixed"), dict(current_norm="none"), dict(glp="avg"), dict(glp="max", glp_radius=2),
            dict(glp="none"), dict(tsf="mean"), dict(slots=0), dict(tucker_first_order=False),
            dict(fusion_residual=False), dict(snn_layers=1, snn_width=0), dict(negatives="hardest")]


@pytest.mark.parametrize("over", SWITCHES, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_every_switch_trains(over):
    model = make_model(**over).train()
    loss, terms = model.loss(temporal_batch(T=3), class_text(), TARGET)
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters()
                                        if p.grad is not None)


@pytest.mark.parametrize("key,value", [("reset", "none"), ("surrogate", "relu"), ("threshold", "dynamic"),
                                       ("current_norm", "batchnorm"), ("glp", "sum"), ("tsf", "last"),
                                       ("negatives", "semi-hard"), ("tau", 0.5), ("time_steps", 0),
                                       ("tucker_rank", 0), ("v_threshold", 0.0)])
def test_bad_config_is_a_config_error(key, value):
    with pytest.raises(ConfigError, match=f"stft.{key}"):
        model_config("stft", {key: value})
    with pytest.raises(ConfigError):
        build_model("stft", {key: value}, DIMS)


def test_presets_resolve_and_keep_avca_settings():
    for ds, over in [("ucf", {}), ("activitynet", dict(dropout_proj=0.2, dropout_decoder=0.1, bn_momentum=0.99)),
                     ("vggsound", dict(dropout_encoder=0.0, dropout_proj=0.0, dropout_decoder=0.1))]:
        cfg, avca = load_config(resolve_config(f"stft_{ds}")), load_config(resolve_config(f"avca_{ds}"))
        assert cfg.model == "stft"
        for f in ("epochs", "n_batches", "bs", "lr", "weight_decay", "beta_grid"):
            assert getattr(cfg, f) == getattr(avca, f), (ds, f)
        avca_fields = {f.name for f in dataclasses.fields(type(avca.model_cfg))}
        assert {k: getattr(cfg.model_cfg, k) for k in avca_fields} == dataclasses.asdict(avca.model_cfg), ds
        for k, v in over.items():
            assert getattr(cfg.model_cfg, k) == v
