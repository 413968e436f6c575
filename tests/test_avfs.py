"""AVFS (`avfs`, reconstructed: f-VAEGAN-D2 + a contrastive and a discriminative term): each new term
against an explicit loop, the full loss against the documented sum with the same random draws, the split
of gradients between critics, classifier and generator, the schedule of the terms, the configs."""
import math

import pytest
import torch
import torch.nn.functional as F

from avgzsl.config import load_config, resolve_config
from avgzsl.data.types import FeatureDims
from avgzsl.errors import ConfigError
from avgzsl.models import build_model
from avgzsl.models.base import Batch
from avgzsl.models.fvaegan import gradient_penalty
from avgzsl.models.avfs import cross_nce, supcon

DIMS = FeatureDims(audio=6, video=4, text=5)
SMALL = dict(latent=7, gen_hidden=9, enc_hidden=8, critic_hidden=11, syn_num=20, cls_bs=16, cls_epochs=5,
             bank_size=32)
TARGET = torch.tensor([0, 1, 2, 0, 1, 2])


def model(name="avfs", **kw):
    torch.manual_seed(0)
    return build_model(name, {**SMALL, **kw}, DIMS)


def batch(B=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.randn(B, DIMS.audio, generator=g), torch.randn(B, DIMS.video, generator=g))


def text(K=3, seed=2):
    return F.normalize(torch.randn(K, DIMS.text, generator=torch.Generator().manual_seed(seed)), dim=1)


def _supcon_loop(f, labels, tau):
    per = []
    for i in range(len(f)):
        others = [a for a in range(len(f)) if a != i]
        pos = [p for p in others if labels[p] == labels[i]]
        if not pos:
            continue
        denom = sum(math.exp(float(f[i] @ f[a]) / tau) for a in others)
        per.append(-sum(math.log(math.exp(float(f[i] @ f[p]) / tau) / denom) for p in pos) / len(pos))
    return sum(per) / len(per)


def _cross_loop(anchor, real, ya, yr, tau):
    per = []
    for i in range(len(anchor)):
        pos = [j for j in range(len(real)) if yr[j] == ya[i]]
        if not pos:
            continue
        denom = sum(math.exp(float(anchor[i] @ real[j]) / tau) for j in range(len(real)))
        per.append(-sum(math.log(math.exp(float(anchor[i] @ real[p]) / tau) / denom) for p in pos) / len(pos))
    return sum(per) / len(per)


def test_supcon_against_a_per_anchor_loop():
    g = torch.Generator().manual_seed(3)
    f = F.normalize(torch.randn(7, 4, generator=g, dtype=torch.float64), dim=1)
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 3])  # classes 2 and 3 have one row: anchors without positives
    got = supcon(f, labels, 0.3)
    assert float(got) == pytest.approx(_supcon_loop(f, labels.tolist(), 0.3), rel=1e-12)
    f.requires_grad_(True)
    supcon(f, labels, 0.3).backward()
    assert torch.isfinite(f.grad).all()  # the masked -inf diagonal leaves no NaN


def test_cross_nce_against_a_per_anchor_loop():
    g = torch.Generator().manual_seed(4)
    anchor = F.normalize(torch.randn(5, 4, generator=g, dtype=torch.float64), dim=1)
    real = F.normalize(torch.randn(6, 4, generator=g, dtype=torch.float64), dim=1)
    ya, yr = torch.tensor([0, 1, 2, 0, 3]), torch.tensor([0, 0, 1, 2, 2, 1])  # anchor 4 has no positive
    got = cross_nce(anchor, real, ya, yr, 0.2)
    assert float(got) == pytest.approx(_cross_loop(anchor, real, ya.tolist(), yr.tolist(), 0.2), rel=1e-12)


def _explicit(m, b, T, y, seed):
    """The documented objectives written out, drawing the same random numbers in the same order:
    z, α (critic), ε (VAE), then z' (AVFS's terms). Returns (critic, classifier, generator) objectives."""
    c = m.cfg
    x = F.normalize(torch.cat([b.audio, b.video], 1), dim=1)
    w = T[y]
    B = len(x)
    torch.manual_seed(seed)
    z = torch.randn(B, c.latent)
    fake = 2 * torch.sigmoid(m.G(torch.cat([z, w], 1))) - 1
    alpha = torch.rand(B, 1)
    D = lambda x_, w_: m.D.fc2(F.leaky_relu(m.D.fc1(torch.cat([x_, w_], 1)), 0.2)).squeeze(1)  # noqa: E731
    D2 = lambda x_: m.D2.fc2(F.leaky_relu(m.D2.fc1(x_), 0.2)).squeeze(1)  # noqa: E731
    fk = fake.detach()
    critic = (D(fk, w).mean() - D(x, w).mean() + c.gp_weight * gradient_penalty(D, x, fk, alpha, w)
              + c.ud_weight * (D2(fk).mean() - D2(x).mean() + c.gp_weight * gradient_penalty(D2, x, fk, alpha)))
    h = m.E(torch.cat([x, w], 1))
    mean, logvar = m.E_mean(h), m.E_logvar(h)
    eps = torch.randn_like(mean)
    p = torch.sigmoid(m.G(torch.cat([mean + eps * torch.exp(0.5 * logvar), w], 1)))
    q = (x + 1) / 2
    rec = -(q * torch.log(p) + (1 - q) * torch.log(1 - p)).sum()
    kl = -0.5 * (1 + logvar - mean ** 2 - logvar.exp()).sum()
    adv = -D(2 * p - 1, w).mean() - D(fake, w).mean() - c.d2_weight * D2(fake).mean()
    z2 = torch.randn(B, c.latent)
    f2 = F.normalize(2 * torch.sigmoid(m.G(torch.cat([z2, w], 1))) - 1, dim=1)
    Wc = m.C.weight  # (Dt, Dx)

    def ce(rows, weight):  # per-sample -log softmax_k(x_i Wᵀ t_k)[y_i], then the mean
        per = []
        for i in range(B):
            s = torch.stack([rows[i] @ weight.T @ T[k] for k in range(len(T))])
            per.append(-(s[y[i]] - torch.logsumexp(s, 0)))
        return torch.stack(per).mean()
    cls = ce(x, Wc)
    dis = ce(f2, Wc.detach())  # the generator's term: C held fixed
    if c.contrast == "supcon":
        fr, lab = torch.cat([x, f2]), torch.cat([y, y])
        con = _torch_supcon_loop(fr, lab, c.temperature)
    else:
        con = _torch_cross_loop(f2, x, y, c.temperature)
    gen = c.gan_weight * adv + c.vae_weight * (rec + kl) + c.disc_weight * dis + c.contrast_weight * con
    return critic, cls, gen, dict(cls=cls, dis=dis, con=con, rec=rec, kl=kl, adv=adv)


def _torch_supcon_loop(f, labels, tau):  # the loop of _supcon_loop, differentiable
    per = []
    for i in range(len(f)):
        others = [a for a in range(len(f)) if a != i]
        pos = [p for p in others if labels[p] == labels[i]]
        if pos:
            logits = torch.stack([f[i] @ f[a] / tau for a in others])
            lse = torch.logsumexp(logits, 0)
            per.append(-torch.stack([f[i] @ f[p] / tau - lse for p in pos]).mean())
    return torch.stack(per).mean()


def _torch_cross_loop(anchor, real, y, tau):
    per = []
    for i in range(len(anchor)):
        logits = torch.stack([anchor[i] @ real[j] / tau for j in range(len(real))])
        lse = torch.logsumexp(logits, 0)
        per.append(-torch.stack([logits[j] - lse for j in range(len(real)) if y[j] == y[i]]).mean())
    return torch.stack(per).mean()


@pytest.mark.parametrize("contrast", ["supcon", "cross"])
def test_loss_is_the_documented_sum_and_each_network_gets_only_its_own_objective(contrast):
    m = model(contrast=contrast, gan_weight=3.0, vae_weight=0.5, ud_weight=0.8, d2_weight=0.4,
              disc_weight=2.5, contrast_weight=1.5, temperature=0.3)
    b, T = batch(), text()
    critic, cls, gen, parts = _explicit(m, b, T, TARGET, seed=5)
    torch.manual_seed(5)
    m.train()
    total, terms = m.loss(b, T, TARGET)
    assert float(total.detach()) == pytest.approx(float((critic + cls + gen).detach()), rel=1e-5)
    for k in ("cls", "dis", "con", "rec", "kl", "adv"):
        assert float(terms[k]) == pytest.approx(float(parts[k].detach()), rel=1e-5, abs=1e-7), k
    total.backward()
    nets = {"critic": (critic, [*m.D.parameters(), *m.D2.parameters()]),
            "classifier": (cls, [m.C.weight]),
            "generator": (gen, [*m.G.parameters(), *m.E.parameters(), *m.E_mean.parameters(),
                                *m.E_logvar.parameters()])}
    for name, (objective, params) in nets.items():  # each network: exactly its own objective's gradient
        want = torch.autograd.grad(objective, params, retain_graph=True, allow_unused=True)
        for p, w in zip(params, want):  # allclose: torch.testing's first call imports torch.distributed (~1.5 s)
            w = torch.zeros_like(p) if w is None else w
            assert torch.allclose(p.grad, w, rtol=1e-4, atol=1e-6), (name, float((p.grad - w).abs().max()))
    # one backward at a generator step reaches every parameter, except the critics' output biases: a
    # Wasserstein critic's constant cancels between its real and fake means and the penalty does not see it
    flat = {k: p.grad for k, p in m.named_parameters()}
    cancels = {"D.fc2.bias", "D2.fc2.bias"}
    assert all(g is not None and g.abs().sum() > 0 for k, g in flat.items() if k not in cancels), \
        [k for k, g in flat.items() if g is None or g.abs().sum() == 0]
    assert all(float(flat[k].abs().max()) < 1e-6 for k in cancels)


def test_zero_weights_leave_fvaegan_plus_the_classifier_term_that_trains_only_c():
    m = model(disc_weight=0.0, contrast_weight=0.0)
    base = build_model("fvaegan", SMALL, DIMS)
    base.load_state_dict({k: v for k, v in m.state_dict().items() if not k.startswith("C.")})
    b, T = batch(), text()
    m.train(), base.train()
    torch.manual_seed(7)
    total, terms = m.loss(b, T, TARGET)
    torch.manual_seed(7)
    want, _ = base.loss(b, T, TARGET)
    assert float(total.detach()) == pytest.approx(float(want.detach() + terms["cls"]), rel=1e-6)


def test_the_generator_terms_follow_the_critic_schedule_and_the_classifier_learns_every_step():
    m = model(critic_iter=3)
    m.train()
    b, T = batch(), text()
    seen = []
    for _ in range(6):
        m.zero_grad()
        loss, terms = m.loss(b, T, TARGET)
        loss.backward()
        seen.append(("dis" in terms, "con" in terms, "adv" in terms))
        assert m.C.weight.grad is not None and m.C.weight.grad.abs().sum() > 0
        if "adv" not in terms:
            assert all(p.grad is None for p in m.G.parameters())
    assert seen == [(True, True, True), (False, False, False), (False, False, False)] * 2


def test_the_classifier_takes_any_number_of_classes():
    m = model()
    x = torch.randn(4, DIMS.audio + DIMS.video)
    assert m.scores(x, text(3)).shape == (4, 3) and m.scores(x, text(8)).shape == (4, 8)


def test_presets_load():
    for ds, syn in (("ucf", 1000), ("activitynet", 1000), ("vggsound", 10000)):
        cfg = load_config(resolve_config(f"avfs_{ds}"), [])
        assert cfg.model == "avfs" and cfg.model_cfg.syn_num == syn and cfg.model_cfg.contrast == "supcon"


@pytest.mark.parametrize("kw, msg", [(dict(contrast="triplet"), "avfs.contrast"),
                                     (dict(recon="bce", decoder_output="linear"), "avfs.recon=bce needs"),
                                     (dict(decoder_output="tanh"), "avfs.decoder_output"),
                                     (dict(temperature=0.0), "avfs.temperature"),
                                     (dict(disc_weight=-1.0), "avfs.disc_weight")])
def test_bad_config_is_one_line_error(kw, msg):
    with pytest.raises(ConfigError, match=msg) as e:
        build_model("avfs", kw, DIMS)
    assert "\n" not in str(e.value)


def test_temporal_inputs_are_averaged_over_real_steps_first():
    m = model()
    b = batch(4, seed=9)
    mask = torch.tensor([[True, False, False], [True, True, False], [True, True, True], [True, True, True]])

    def steps(v):  # (B, D) -> (B, 3, D): every real step is the averaged row, padding is 9s
        return torch.where(mask[..., None], v[:, None, :].expand(-1, 3, -1), torch.tensor(9.0))
    temporal = Batch(steps(b.audio), steps(b.video), mask, mask)
    assert torch.allclose(m.features(temporal), m.features(b), atol=1e-6)
