"""f-VAEGAN-D2 (`fvaegan`): each loss term against an explicit loop, the split of gradients between
critics and generator, the critic schedule, the feature bank and the test-time classifier."""
import math

import pytest
import torch
import torch.nn.functional as F

from avgzsl.config import load_config, resolve_config
from avgzsl.data.types import FeatureDims
from avgzsl.errors import ConfigError
from avgzsl.models import build_model
from avgzsl.models.base import Batch
from avgzsl.models.fvaegan import bce_sum, gradient_penalty
from avgzsl.protocol import run_protocol

DIMS = FeatureDims(audio=6, video=4, text=5)
SMALL = dict(latent=7, gen_hidden=9, enc_hidden=8, critic_hidden=11, syn_num=20, cls_bs=16, cls_epochs=5,
             bank_size=32)


def model(**kw):
    torch.manual_seed(0)
    return build_model("fvaegan", {**SMALL, **kw}, DIMS)


def batch(B=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.randn(B, DIMS.audio, generator=g), torch.randn(B, DIMS.video, generator=g))


def text(K=3, seed=2):
    return F.normalize(torch.randn(K, DIMS.text, generator=torch.Generator().manual_seed(seed)), dim=1)


def test_bce_sum_is_the_elementwise_formula_even_outside_0_1():
    h = torch.tensor([[-1.4, 2.2], [0.0, -60.0]], dtype=torch.float64, requires_grad=True)
    x = torch.tensor([[0.3, -0.4], [1.2, 0.0]], dtype=torch.float64)
    want = 0.0
    for i in range(2):
        for j in range(2):
            p = 1 / (1 + math.exp(-float(h[i, j].detach())))
            want -= float(x[i, j]) * math.log(p) + (1 - float(x[i, j])) * math.log(1 - p)
    got = bce_sum(h, x)
    assert float(got.detach()) == pytest.approx(want, rel=1e-12)
    got.backward()
    assert torch.isfinite(h.grad).all()  # saturated σ: a log of the probability would give 0 * inf here


def test_shifted_output_bounds_the_reconstruction_the_reference_output_does_not():
    x = F.normalize(torch.tensor([[0.6, -0.8]]), dim=1)  # a normalised feature with a negative entry
    low = torch.tensor([[20.0, -40.0]])  # logits driving the negative entry's σ to 0
    shifted, ref = model(), model(decoder_output="sigmoid")
    floor = float(bce_sum(torch.logit((x + 1) / 2), (x + 1) / 2))  # the target's entropy
    assert float(shifted.reconstruction(low, x)) >= floor
    assert float(ref.reconstruction(low, x)) < -20  # -(-0.8) log σ(-40) ≈ -32: unbounded below
    torch.testing.assert_close(shifted.generate(torch.zeros(1, 7), text(1)),
                               2 * torch.sigmoid(shifted.G(torch.cat([torch.zeros(1, 7), text(1)], 1))) - 1)


def test_gradient_penalty_against_a_per_sample_loop():
    torch.manual_seed(3)
    critic = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1))
    f = lambda x: critic(x).squeeze(1)  # noqa: E731
    real, fake, alpha = torch.randn(6, 4), torch.randn(6, 4), torch.rand(6, 1)
    got = gradient_penalty(f, real, fake, alpha)
    per = []
    for i in range(6):
        xi = (alpha[i] * real[i] + (1 - alpha[i]) * fake[i]).clone().requires_grad_(True)
        gi, = torch.autograd.grad(critic(xi[None])[0, 0], xi)
        per.append((gi.norm() - 1) ** 2)
    assert float(got.detach()) == pytest.approx(float(torch.stack(per).mean()), rel=1e-5)


def _explicit_terms(m, b, cls_text, target, seed):
    """The documented objectives written out step by step, drawing the same random numbers in the same order."""
    x = F.normalize(torch.cat([b.audio, b.video], 1), dim=1)
    w = cls_text[target]
    torch.manual_seed(seed)
    z = torch.randn(len(x), m.cfg.latent)
    fake = 2 * torch.sigmoid(m.G(torch.cat([z, w], 1))) - 1
    alpha = torch.rand(len(x), 1)
    D = lambda x_, w_: m.D.fc2(F.leaky_relu(m.D.fc1(torch.cat([x_, w_], 1)), 0.2)).squeeze(1)  # noqa: E731
    D2 = lambda x_: m.D2.fc2(F.leaky_relu(m.D2.fc1(x_), 0.2)).squeeze(1)  # noqa: E731
    fk = fake.detach()
    gp = gradient_penalty(lambda v, ww: D(v, ww), x, fk, alpha, w)
    gp2 = gradient_penalty(D2, x, fk, alpha)
    c = m.cfg
    critic = (D(fk, w).mean() - D(x, w).mean() + c.gp_weight * gp
              + c.ud_weight * (D2(fk).mean() - D2(x).mean() + c.gp_weight * gp2))
    h = m.E(torch.cat([x, w], 1))
    mean, logvar = m.E_mean(h), m.E_logvar(h)
    eps = torch.randn_like(mean)
    p = torch.sigmoid(m.G(torch.cat([mean + eps * torch.exp(0.5 * logvar), w], 1)))
    recon, q = 2 * p - 1, (x + 1) / 2
    rec = sum(-(q[i, j] * torch.log(p[i, j]) + (1 - q[i, j]) * torch.log(1 - p[i, j]))
              for i in range(x.shape[0]) for j in range(x.shape[1]))
    kl = sum(-0.5 * (1 + logvar[i, k] - mean[i, k] ** 2 - logvar[i, k].exp())
             for i in range(mean.shape[0]) for k in range(mean.shape[1]))
    adv = -D(recon, w).mean() - D(fake, w).mean() - c.d2_weight * D2(fake).mean()
    return critic, c.gan_weight * adv + c.vae_weight * (rec + kl)


@pytest.mark.parametrize("d2_weight", [0.0, 0.7])
def test_loss_is_critic_plus_generator_objective_and_each_net_gets_only_its_own(d2_weight):
    m = model(gan_weight=3.0, vae_weight=0.5, ud_weight=0.8, d2_weight=d2_weight)
    b, t, target = batch(), text(), torch.tensor([0, 1, 2, 0, 1, 2])
    critic, gen = _explicit_terms(m, b, t, target, seed=5)
    torch.manual_seed(5)
    m.train()
    total, terms = m.loss(b, t, target)
    assert float(total.detach()) == pytest.approx(float((critic + gen).detach()), rel=1e-5)
    assert {"wdist", "wdist2", "gp", "gp2", "rec", "kl", "adv", "total"} <= set(terms)
    total.backward()
    crit_params = [*m.D.parameters(), *m.D2.parameters()]
    gen_params = [*m.G.parameters(), *m.E.parameters(), *m.E_mean.parameters(), *m.E_logvar.parameters()]
    want_c = torch.autograd.grad(critic, crit_params, retain_graph=True, allow_unused=True)
    want_g = torch.autograd.grad(gen, gen_params, allow_unused=True)
    for p, w in zip(crit_params, want_c):  # the generator objective adds nothing to the critics
        torch.testing.assert_close(p.grad, w, rtol=1e-4, atol=1e-6)
    for p, w in zip(gen_params, want_g):  # and the critic objective nothing to G and E
        torch.testing.assert_close(p.grad, torch.zeros_like(p) if w is None else w, rtol=1e-4, atol=1e-6)
    # every parameter learns on a generator step (D2 from its critic objective at d2_weight 0), except the
    # critics' output biases: a Wasserstein critic's constant cancels between its real and fake means and
    # the penalty does not see it, in the reference as here
    flat = {k: p.grad for k, p in m.named_parameters()}
    cancels = {"D.fc2.bias", "D2.fc2.bias"}
    assert all(g is not None and g.abs().sum() > 0 for k, g in flat.items() if k not in cancels), \
        [k for k, g in flat.items() if g is None or g.abs().sum() == 0]
    assert all(float(flat[k].abs().max()) < 1e-6 for k in cancels)


def test_generator_steps_every_critic_iter_steps():
    m = model(critic_iter=3)
    m.train()
    b, t, target = batch(), text(), torch.tensor([0, 1, 2, 0, 1, 2])
    had_adv = []
    for _ in range(7):
        m.zero_grad()
        loss, terms = m.loss(b, t, target)
        loss.backward()
        had_adv.append("adv" in terms)
        if "adv" not in terms:  # a critic-only step leaves the generator's gradient empty
            assert all(p.grad is None for p in m.G.parameters())
    assert had_adv == [True, False, False, True, False, False, True]
    assert int(m.steps) == 7


def test_bank_keeps_the_last_rows_and_the_classifier_uses_real_rows_for_trained_classes():
    m = model(bank_size=10)
    m.train()
    t = text(4)
    for k in range(3):  # 3 batches of 4: the ring keeps the last 10 rows
        b = batch(4, seed=10 + k)
        m.loss(b, t, torch.tensor([k, k, k, k]))
    assert int(m.bank_written) == 12
    last = F.normalize(torch.cat([batch(4, seed=12).audio, batch(4, seed=12).video], 1), dim=1)
    rows = torch.tensor([8, 9, 0, 1])  # (12 - 4 + i) % 10
    torch.testing.assert_close(m.bank_x[rows].float(), last, atol=2e-3, rtol=0)
    m.eval()
    X, y = m.classifier_data(t)  # candidates 0..3: 0-2 were trained on, 3 was not
    counts = torch.bincount(y, minlength=4)
    assert counts.tolist() == [2, 4, 4, m.cfg.syn_num]  # class 0 has 2 rows left in the ring
    assert torch.allclose(X.norm(dim=1), torch.ones(len(X)))


def test_trained_classifier_separates_and_is_deterministic_without_touching_the_global_rng():
    m = model(cls_epochs=30)
    m.train()
    t = text(2)
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(2, DIMS.audio + DIMS.video, generator=g) * 3
    for _ in range(3):
        y = torch.tensor([0, 1] * 4)
        feats = centres[y] + 0.1 * torch.randn(8, DIMS.audio + DIMS.video, generator=g)
        m.loss(Batch(feats[:, :DIMS.audio], feats[:, DIMS.audio:]), t, y)
    m.eval()
    state = torch.get_rng_state()
    with torch.inference_mode():  # as the protocol calls it
        emb = m.embed_classes(t)
        emb2 = m.embed_classes(t)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(emb, emb2) and emb.shape == (2, DIMS.audio + DIMS.video + 1)
    y = torch.tensor([0, 1] * 10)
    feats = centres[y] + 0.1 * torch.randn(20, DIMS.audio + DIMS.video, generator=g)
    d = m.distances(Batch(feats[:, :DIMS.audio], feats[:, DIMS.audio:]), emb)
    assert torch.equal(d.argmin(1), y)
    assert torch.allclose(torch.exp(-d).sum(1), torch.ones(20))  # distances = -log softmax


def test_linear_output_with_mse_reconstruction():
    m = model(decoder_output="linear", recon="mse")
    m.train()
    loss, terms = m.loss(batch(), text(), torch.tensor([0, 1, 2, 0, 1, 2]))
    assert torch.isfinite(loss)
    out = m.generate(torch.randn(50, m.cfg.latent), text(1).repeat(50, 1))
    assert (out < 0).any()  # no sigmoid: negative feature entries are reachable


@pytest.mark.parametrize("kw, msg", [(dict(recon="bce", decoder_output="linear"), "needs a sigmoid decoder_output"),
                                     (dict(recon="l1"), "fvaegan.recon"),
                                     (dict(decoder_output="tanh"), "fvaegan.decoder_output")])
def test_bad_config_is_one_line_error(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        build_model("fvaegan", kw, DIMS)


def test_protocol_uses_the_models_adam_betas(monkeypatch, tiny_bench):
    seen = []
    real = torch.optim.Adam

    def spy(params, **kw):
        if "fused" in kw:  # the protocol's optimiser (the test-time classifier builds its own Adam too)
            seen.append(kw["betas"])
        return real(params, **kw)
    monkeypatch.setattr(torch.optim, "Adam", spy)
    cfg = load_config(resolve_config("fvaegan_ucf"), ["epochs=1", "n_batches=3", "bs=8", "fvaegan.syn_num=10",
                                      "fvaegan.cls_epochs=2", "fvaegan.bank_size=16", "fvaegan.adam_beta1=0.3"])
    res = run_protocol(cfg, tiny_bench)
    assert seen and all(b == (0.3, 0.999) for b in seen)
    assert 0 <= res["test"]["hm"] <= 1


def test_the_critic_schedule_survives_a_state_reload():
    m = model(critic_iter=3)
    m.train()
    for _ in range(4):
        m.loss(batch(), text(), torch.tensor([0, 1, 2, 0, 1, 2]))
    again = model(critic_iter=3)
    again.load_state_dict(m.state_dict())
    assert int(again.steps) == 4 and not again.is_generator_step()  # step 4: a critic-only step (4 % 3)
    for _ in range(2):
        again.loss(batch(), text(), torch.tensor([0, 1, 2, 0, 1, 2]))
    assert again.is_generator_step()  # step 6
