"""Every loss term against an explicit per-sample Python loop (avgzsl.losses)."""
from __future__ import annotations

import math

import pytest
import torch

from avgzsl import losses

B, K, E, DT = 7, 5, 4, 6


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    theta_o = torch.randn(B, E, generator=g, dtype=torch.float64)
    theta_w = torch.randn(K, E, generator=g, dtype=torch.float64)
    text = torch.randn(K, DT, generator=g, dtype=torch.float64)
    target = torch.tensor([0, 2, 2, 4, 1, 2, 0])
    return theta_o, theta_w, text, target


def _softmax(xs):
    m = max(xs)
    ex = [math.exp(x - m) for x in xs]
    return [e / sum(ex) for e in ex]


def _dot(a, b):
    return sum(float(x) * float(y) for x, y in zip(a, b))


def _cos(a, b):
    return _dot(a, b) / math.sqrt(_dot(a, a) * _dot(b, b))


def test_registry_has_new_terms():
    assert losses.LOSSES["kl"] is losses.kl_divergence
    assert losses.LOSSES["cos"] is losses.cosine_consistency
    assert {"ce", "reg", "rec", "kl", "cos"} <= set(losses.LOSSES)


def test_existing_terms_loop(data):
    theta_o, theta_w, _, target = data
    ce = 0.0
    for i in range(B):
        logits = [_dot(theta_o[i], theta_w[k]) for k in range(K)]
        ce += -math.log(_softmax(logits)[int(target[i])])
    assert losses.embedding_cross_entropy(theta_o, theta_w, target).item() == pytest.approx(ce / B, rel=1e-9)


@pytest.mark.parametrize("tau", [1.0, 0.5, 3.0])
def test_kl_loop(data, tau):
    theta_o, theta_w, text, target = data
    q = losses.mixed_target(text, target, eps=0.3, tau_q=0.2)
    expect = 0.0
    for i in range(B):
        p = _softmax([_dot(theta_o[i], theta_w[k]) / tau for k in range(K)])
        expect += sum(float(q[i, k]) * (math.log(float(q[i, k])) - math.log(p[k])) for k in range(K)
                      if q[i, k] > 0)
    got = losses.kl_divergence(theta_o, theta_w, q, tau)
    assert got.item() == pytest.approx(expect / B, rel=1e-9)
    assert got.item() > 0


def test_kl_one_hot_equals_cross_entropy(data):
    theta_o, theta_w, _, target = data
    one_hot = losses.smoothed_target(target, K, eps=0.0)
    assert torch.equal(one_hot, torch.nn.functional.one_hot(target, K).float())
    kl = losses.kl_divergence(theta_o, theta_w, one_hot.double(), tau=1.0)
    ce = losses.embedding_cross_entropy(theta_o, theta_w, target)
    assert kl.item() == pytest.approx(ce.item(), rel=1e-12)
    # and the mixed / smoothed targets reduce to it at eps = 0
    for q in (losses.kl_target("mixed", theta_w, target, 0.0, 0.1), losses.kl_target("smoothed", theta_w, target, 0.0, 0.1)):
        assert losses.kl_divergence(theta_o, theta_w, q.double()).item() == pytest.approx(ce.item(), rel=1e-12)


def test_kl_zero_when_prediction_matches_target(data):
    theta_o, theta_w, _, _ = data
    p = torch.softmax(theta_o @ theta_w.t() / 2.0, dim=1)
    assert losses.kl_divergence(theta_o, theta_w, p, tau=2.0).item() == pytest.approx(0.0, abs=1e-12)


def test_smoothed_target_loop(data):
    _, _, _, target = data
    eps = 0.2
    q = losses.smoothed_target(target, K, eps)
    for i in range(B):
        for k in range(K):
            expect = (1 - eps) * (k == int(target[i])) + eps / K
            assert q[i, k].item() == pytest.approx(expect, rel=1e-6)
    assert torch.allclose(q.sum(1), torch.ones(B))


def test_semantic_and_mixed_target_loop(data):
    _, _, text, target = data
    tau_q, eps = 0.25, 0.4
    sem = losses.semantic_target(text, target, tau_q)
    mix = losses.mixed_target(text, target, eps, tau_q)
    assert not sem.requires_grad
    for i in range(B):
        y = int(target[i])
        expect = _softmax([_cos(text[y], text[k]) / tau_q for k in range(K)])
        for k in range(K):
            assert sem[i, k].item() == pytest.approx(expect[k], rel=1e-5)
            assert mix[i, k].item() == pytest.approx((1 - eps) * (k == y) + eps * expect[k], rel=1e-5)
        assert int(sem[i].argmax()) == y  # cos(t_y, t_y) = 1 is the largest similarity
    assert losses.kl_target("semantic", text, target, eps, tau_q).equal(sem)


def test_semantic_target_zero_text_row():
    text = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    q = losses.semantic_target(text, torch.tensor([0, 1]), tau_q=1.0)
    assert torch.isfinite(q).all()
    assert torch.allclose(q[1], torch.full((3,), 1 / 3))  # zero text: cosine 0 with every class


def test_kl_target_rejects_unknown(data):
    _, _, text, target = data
    with pytest.raises(ValueError, match="unknown KL target"):
        losses.kl_target("uniform", text, target, 0.1, 0.1)


def test_cos_anchor_loop(data):
    theta_o, theta_w, _, target = data
    theta_w_target = theta_w[target]
    expect = sum(1 - _cos(theta_o[i], theta_w_target[i]) for i in range(B)) / B
    got = losses.cosine_consistency(theta_o, theta_w_target)
    assert got.item() == pytest.approx(expect, rel=1e-9)


def test_cos_pairwise_loop(data):
    theta_o, theta_w, _, target = data
    theta_w_target = theta_w[target]
    pairs = [(i, j) for i in range(B) for j in range(B) if i != j and int(target[i]) == int(target[j])]
    assert pairs  # the fixture repeats classes 0 and 2
    pair_term = sum(1 - _cos(theta_o[i], theta_o[j]) for i, j in pairs) / len(pairs)
    anchor = sum(1 - _cos(theta_o[i], theta_w_target[i]) for i in range(B)) / B
    assert losses.pairwise_cosine(theta_o, target).item() == pytest.approx(pair_term, rel=1e-9)
    got = losses.cosine_consistency(theta_o, theta_w_target, target, pairwise=True)
    assert got.item() == pytest.approx(anchor + pair_term, rel=1e-9)


def test_cos_pairwise_no_repeated_class_contributes_zero(data):
    theta_o, theta_w, _, _ = data
    target = torch.arange(B)  # every class once
    theta_o = theta_o.clone().requires_grad_(True)
    with_pairs = losses.cosine_consistency(theta_o, theta_w[target % K], target, pairwise=True)
    without = losses.cosine_consistency(theta_o, theta_w[target % K], target, pairwise=False)
    assert with_pairs.item() == pytest.approx(without.item(), abs=0.0)
    assert losses.pairwise_cosine(theta_o, target).item() == 0.0
    with_pairs.backward()  # still differentiable
    assert torch.isfinite(theta_o.grad).all()


def test_cos_pairwise_needs_target(data):
    theta_o, theta_w, _, _ = data
    with pytest.raises(ValueError):
        losses.cosine_consistency(theta_o, theta_w[:1].expand(B, -1), None, pairwise=True)


def test_cos_identical_same_class_is_zero():
    z = torch.tensor([[1.0, 2.0], [2.0, 4.0], [1.0, 0.0]])
    assert losses.pairwise_cosine(z, torch.tensor([3, 3, 1])).item() == pytest.approx(0.0, abs=1e-6)
    assert losses.pairwise_cosine(z, torch.tensor([1, 1, 1])).item() == pytest.approx(4 * (1 - 5 ** -0.5) / 6)


@pytest.mark.parametrize("tau", [1.0, 0.5])
def test_nontarget_kl_loop(data, tau):
    """The non-target KL: the text ranking of the wrong classes against p renormalised over them."""
    theta_o, theta_w, text, target = data
    tau_q = 0.25
    q = losses.kl_target("nontarget", text, target, 0.0, tau_q)
    expect = 0.0
    for i in range(B):
        y = int(target[i])
        others = [k for k in range(K) if k != y]
        q_i = _softmax([_cos(text[y], text[k]) / tau_q for k in others])
        p_i = _softmax([_dot(theta_o[i], theta_w[k]) / tau for k in others])
        for j, k in enumerate(others):
            assert q[i, k].item() == pytest.approx(q_i[j], rel=1e-5)
        assert q[i, y].item() == 0.0
        expect += sum(a * (math.log(a) - math.log(b)) for a, b in zip(q_i, p_i))
    got = losses.kl_divergence(theta_o, theta_w, q.double(), tau, exclude=target)
    assert got.item() == pytest.approx(expect / B, rel=1e-5)


def test_nontarget_kl_never_pushes_the_true_class(data):
    """What makes `nontarget` more than a second cross-entropy: its gradient on each row's true-class
    logit is exactly 0 (the mixed target's is not), so removing it cannot be undone by a CE weight."""
    theta_o, theta_w, text, target = data
    logits = (theta_o @ theta_w.t()).requires_grad_(True)  # (B, K): the scores as leaves
    eye = torch.eye(K, dtype=torch.float64)  # theta_w = I turns theta_o @ theta_w.T into `logits`
    q = losses.kl_target("nontarget", text, target, 0.0, 0.25).double()
    losses.kl_divergence(logits, eye, q, exclude=target).backward()
    assert torch.count_nonzero(logits.grad.gather(1, target[:, None])) == 0
    assert logits.grad.abs().sum() > 0
    mixed = losses.kl_target("mixed", text, target, 0.2, 0.25).double()
    logits.grad = None
    losses.kl_divergence(logits, eye, mixed).backward()
    assert torch.count_nonzero(logits.grad.gather(1, target[:, None])) == B
