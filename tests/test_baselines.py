"""Comparison methods (docs/baselines.md): each loss against an explicit per-sample loop, and each
model's scoring rule against an explicit computation."""
import math

import pytest
import torch
import torch.nn.functional as F

from avgzsl.losses import ranking as LB
from avgzsl.data.types import FeatureDims
from avgzsl.losses import LOSSES
from avgzsl.models import build_model
from avgzsl.models.base import Batch

DIMS = FeatureDims(audio=6, video=5, text=7)


def _scores(B=5, K=6, seed=0, scale=0.2):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(B, K, generator=g) * scale  # ~ the margin: many, but not all, margins are violated
    target = torch.randint(0, K, (B,), generator=g)
    return scores, target


def _violations_loop(scores, target, margin):
    """list of per-sample lists of hinge violations over the other classes."""
    out = []
    for i in range(scores.shape[0]):
        y = int(target[i])
        out.append([max(0.0, margin + float(scores[i, j]) - float(scores[i, y]))
                    for j in range(scores.shape[1]) if j != y])
    return out


# ----------------------------------------------------------------------------------------------- losses

def test_losses_are_registered():
    for name in ("devise", "ale", "sje", "triplet"):
        assert name in LOSSES


@pytest.mark.parametrize("margin", [0.1, 0.5])
def test_devise_sums_violations(margin):
    scores, target = _scores()
    expected = sum(sum(v) for v in _violations_loop(scores, target, margin)) / scores.shape[0]
    assert math.isclose(float(LB.devise_rank_loss(scores, target, margin)), expected, rel_tol=1e-5)


@pytest.mark.parametrize("margin", [0.1, 0.5])
def test_sje_takes_the_max_violation(margin):
    scores, target = _scores()
    expected = sum(max(v) for v in _violations_loop(scores, target, margin)) / scores.shape[0]
    assert math.isclose(float(LB.sje_max_loss(scores, target, margin)), expected, rel_tol=1e-5)


@pytest.mark.parametrize("margin", [0.1, 0.5])
def test_ale_weights_by_rank(margin):
    scores, target = _scores(B=8, K=7, seed=1, scale=2 * margin)
    total = 0.0
    for v in _violations_loop(scores, target, margin):
        r = sum(x > 0 for x in v)
        weight = sum(1.0 / i for i in range(1, r + 1)) / r if r else 0.0
        total += weight * sum(v)
    ranks = [sum(x > 0 for x in v) for v in _violations_loop(scores, target, margin)]
    assert len(set(ranks)) > 2  # the case really exercises several ranks
    assert math.isclose(float(LB.ale_rank_loss(scores, target, margin)), total / 8, rel_tol=1e-5)


def test_ale_hand_computed():
    # true class 0 at score 0; margin 0.1: violations 0.15 (class 1), 0.3 (class 2), 0 (class 3)
    # rank 2 -> weight (1 + 1/2) / 2 = 0.75 -> loss 0.75 * 0.45 = 0.3375
    scores = torch.tensor([[0.0, 0.05, 0.2, -0.5]])
    assert math.isclose(float(LB.ale_rank_loss(scores, torch.tensor([0]), 0.1)), 0.3375, rel_tol=1e-6)
    # rank 3: weight (1 + 1/2 + 1/3) / 3
    scores = torch.tensor([[0.0, 0.05, 0.2, 0.0]])
    w = (1 + 1 / 2 + 1 / 3) / 3
    assert math.isclose(float(LB.ale_rank_loss(scores, torch.tensor([0]), 0.1)), w * (0.15 + 0.3 + 0.1), rel_tol=1e-6)
    # no violation: 0
    assert float(LB.ale_rank_loss(torch.tensor([[1.0, 0.0, -1.0]]), torch.tensor([0]), 0.1)) == 0.0
    torch.testing.assert_close(LB.ale_rank_weights(torch.tensor([0, 1, 2, 4])),
                               torch.tensor([0.0, 1.0, 0.75, (1 + 1 / 2 + 1 / 3 + 1 / 4) / 4], dtype=torch.float64))


def test_rank_losses_differ():
    scores, target = _scores(B=8, K=7, seed=1)
    d, a, s = (float(f(scores, target, 0.1)) for f in (LB.devise_rank_loss, LB.ale_rank_loss, LB.sje_max_loss))
    assert len({round(d, 6), round(a, 6), round(s, 6)}) == 3


def test_triplet_against_loop_and_torch():
    g = torch.Generator().manual_seed(0)
    a, p, n = (torch.randn(7, 4, generator=g) for _ in range(3))
    w = torch.rand(7, generator=g)
    valid = torch.tensor([True, True, False, True, True, False, True])
    per = [max(0.0, 1.0 + float((a[i] - p[i] + 1e-6).norm()) - float((a[i] - n[i] + 1e-6).norm())) for i in range(7)]
    assert math.isclose(float(LB.triplet_margin(a, p, n, 1.0)), sum(per) / 7, rel_tol=1e-5)
    assert math.isclose(float(LB.triplet_margin(a, p, n, 1.0)),
                        float(torch.nn.TripletMarginLoss(margin=1.0)(a, p, n)), rel_tol=1e-6)
    expected = sum(per[i] * float(w[i]) for i in range(7) if valid[i]) / int(valid.sum())
    assert math.isclose(float(LB.triplet_margin(a, p, n, 1.0, valid=valid, weight=w)), expected, rel_tol=1e-5)


def test_random_negatives_are_other_classes():
    torch.manual_seed(0)
    target = torch.tensor([0, 0, 1, 2, 1, 0])
    seen = set()
    for _ in range(200):
        idx, valid = LB.random_negatives(target)
        assert valid.all()
        for i in range(6):
            assert target[idx[i]] != target[i]
            seen.add((i, int(idx[i])))
    # every other-class index is drawn for every anchor (uniform over the other-class videos)
    assert seen == {(i, j) for i in range(6) for j in range(6) if target[i] != target[j]}
    _, valid = LB.random_negatives(torch.tensor([3, 3, 3]))
    assert not valid.any()  # no other class in the batch: every row left out


def test_hardest_negatives_against_loop():
    g = torch.Generator().manual_seed(0)
    anchor, pool = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    target = torch.tensor([0, 1, 0, 2, 1, 1])
    idx, valid = LB.hardest_negatives(anchor, pool, target)
    for i in range(6):
        cands = [j for j in range(6) if target[j] != target[i]]
        best = min(cands, key=lambda j: float((anchor[i] - pool[j]).norm()))
        assert int(idx[i]) == best
    assert valid.all()


def test_negative_picker_random_is_shared():
    torch.manual_seed(0)
    target = torch.tensor([0, 1, 2, 3, 0, 1])
    pick = LB.NegativePicker("random", target)
    pool1, pool2 = torch.arange(6.0).view(6, 1), 10 * torch.arange(6.0).view(6, 1)
    n1, _ = pick(None, pool1)
    n2, _ = pick(None, pool2)
    assert torch.equal(n2, 10 * n1)  # the same negative video for every triplet of the step


# ----------------------------------------------------------------------------------- linear baselines

def _batch(B=6, seed=0, dims=DIMS):
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.randn(B, dims.audio, generator=g), torch.randn(B, dims.video, generator=g))


@pytest.mark.parametrize("name,loss_fn", [("devise", LB.devise_rank_loss), ("ale", LB.ale_rank_loss),
                                          ("sje", LB.sje_max_loss)])
@pytest.mark.parametrize("normalize", [False, True])
def test_linear_models_score_and_evaluate_as_specified(name, loss_fn, normalize):
    torch.manual_seed(0)
    m = build_model(name, {"normalize_inputs": normalize, "margin": 0.3}, DIMS)
    assert m.W.bias is None and m.W.weight.shape == (DIMS.text, DIMS.video + DIMS.audio)
    b = _batch()
    text = torch.randn(4, DIMS.text)
    y = torch.tensor([0, 1, 2, 3, 0, 2])
    x = torch.cat([b.video, b.audio], 1)  # video first
    if normalize:
        x = x / x.norm(dim=1, keepdim=True)
    z = x @ m.W.weight.t()  # (B, Dt)

    m.eval()  # no dropout: the explicit computation must match exactly
    loss, terms = m.loss(b, text, y)
    torch.testing.assert_close(loss, loss_fn(z @ text.t(), y, 0.3))
    assert set(terms) == {name, "total"}
    # evaluation: the class prototype is the raw text, the distance is L2 to it
    assert torch.equal(m.embed_classes(text), text)
    d = m.distances(b, m.embed_classes(text))
    expected = torch.stack([torch.stack([(z[i] - text[c]).norm() for c in range(4)]) for i in range(6)])
    torch.testing.assert_close(d, expected, rtol=1e-4, atol=1e-5)


def test_linear_model_dropout_on_inputs_in_training_only():
    torch.manual_seed(0)
    m = build_model("devise", {"dropout": 0.5, "dropout_text": 0.0}, DIMS)
    b, text = _batch(), torch.randn(4, DIMS.text)
    m.train()
    assert not torch.equal(m.embed_videos(b), m.embed_videos(b))
    m.eval()
    assert torch.equal(m.embed_videos(b), m.embed_videos(b))
    assert torch.equal(m.scores(b, text), m.embed_videos(b) @ text.t())


def test_linear_models_pool_temporal_inputs():
    torch.manual_seed(0)
    m = build_model("sje", None, DIMS).eval()
    a, v = torch.randn(2, 3, DIMS.audio), torch.randn(2, 3, DIMS.video)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    tb = Batch(a, v, mask, mask.clone())
    avg = Batch(torch.stack([a[0, :2].mean(0), a[1].mean(0)]), torch.stack([v[0, :2].mean(0), v[1].mean(0)]))
    torch.testing.assert_close(m.embed_videos(tb), m.embed_videos(avg))


# ------------------------------------------------------------------------------------------ avgzslnet

def test_avgzslnet_distance_is_audio_plus_video():
    torch.manual_seed(0)
    m = build_model("avgzslnet", {"hidden": 16, "dim_out": 8}, DIMS).eval()
    b, text = _batch(), torch.randn(5, DIMS.text)
    cls = m.embed_classes(text)
    a, v = m.F_A(b.audio), m.F_V(b.video)
    expected = torch.stack([torch.stack([(a[i] - cls[c]).norm() + (v[i] - cls[c]).norm() for c in range(5)])
                            for i in range(6)])
    torch.testing.assert_close(m.distances(b, cls), expected, rtol=1e-4, atol=1e-5)


def test_avgzslnet_loss_equals_explicit_terms():
    torch.manual_seed(0)
    m = build_model("avgzslnet", {"hidden": 16, "dim_out": 8}, DIMS).eval()
    b, text = _batch(), torch.randn(4, DIMS.text)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    torch.manual_seed(1)
    loss, terms = m.loss(b, text, y)
    torch.manual_seed(1)
    j, _ = LB.random_negatives(y)  # the same draw as inside the loss
    xt = text[y]
    a, v, t = m.F_A(b.audio), m.F_V(b.video), m.F_T(xt)
    dec = lambda x: F.normalize(m.F_DEC(x), dim=1)  # noqa: E731
    da, dv, dt = dec(a), dec(v), dec(t)
    T = lambda an, po, ne: LB.triplet_margin(an, po, ne, 1.0)  # noqa: E731
    rec = sum((d - xt).norm(dim=1).mean() for d in (dt, da, dv))
    torch.testing.assert_close(terms["rec"], rec)
    torch.testing.assert_close(terms["cta"], T(dt, da, da[j]))
    torch.testing.assert_close(terms["ctv"], T(dt, dv, dv[j]))
    torch.testing.assert_close(terms["ct"], T(t, a, a[j]) + T(a, t, t[j]) + T(t, v, v[j]) + T(v, t, t[j]))
    torch.testing.assert_close(loss, rec + terms["cta"] + terms["ctv"] + terms["ct"])


# ----------------------------------------------------------------------------------------------- cjme

@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_cjme_attention_weights(mode):
    torch.manual_seed(0)
    m = build_model("cjme", {"hidden": 16, "dim_out": 8, "eval_attention": mode}, DIMS).eval()
    b = _batch(B=20)
    w = m.modality_weights(b)
    assert w.shape == (20, 2)
    torch.testing.assert_close(w.sum(1), torch.ones(20))  # audio weight + video weight = 1
    if mode == "soft":
        assert ((w > 0) & (w < 1)).all()
        alpha = torch.sigmoid(m.attention(torch.cat([b.audio, b.video], 1))).squeeze(1)
        torch.testing.assert_close(w[:, 1], alpha)  # column 1 is the video weight α
        assert w[:, 1].std() > 0  # per-video weights, not a constant
    else:
        assert set(w.flatten().tolist()) <= {0.0, 1.0}
    # the distance is the attention-weighted sum of the audio and video distances
    text = torch.randn(5, DIMS.text)
    cls = m.embed_classes(text)
    a, v = m.f_a(b.audio), m.f_v(b.video)
    expected = w[:, :1] * torch.cdist(a, cls) + w[:, 1:] * torch.cdist(v, cls)
    torch.testing.assert_close(m.distances(b, cls), expected)


def test_cjme_attention_target_follows_entropy():
    t = torch.eye(3) * 5  # three class embeddings
    a = torch.tensor([[5.0, 0, 0], [0.0, 0, 0], [1.0, 0, 0]])  # confident, uniform, almost uniform
    v = torch.tensor([[0.0, 0, 0], [5.0, 0, 0], [1.0, 0, 0]])
    s = build_model("cjme", None, DIMS).attention_target(a, v, t, 0.1)
    assert s.tolist() == [0.0, 1.0, 0.5]  # audio confident -> 0 (audio); video -> 1; tie -> 0.5


def test_cjme_loss_weights_each_sample_by_its_own_attention():
    torch.manual_seed(0)
    m = build_model("cjme", {"hidden": 16, "dim_out": 8}, DIMS).eval()
    b, text = _batch(), torch.randn(4, DIMS.text)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    torch.manual_seed(3)
    loss, terms = m.loss(b, text, y)
    torch.manual_seed(3)
    j, _ = LB.random_negatives(y)
    a, v = m.f_a(b.audio), m.f_v(b.video)
    t = m.f_t(text)[y]
    alpha = torch.sigmoid(m.attention(torch.cat([b.audio, b.video], 1))).squeeze(1)
    a, v, t, alpha = a.detach(), v.detach(), t.detach(), alpha.detach()
    per = []
    for i in range(6):  # explicit per-sample loop
        ta = max(0.0, 1.0 + float((t[i] - a[i] + 1e-6).norm()) - float((t[i] - a[j[i]] + 1e-6).norm()))
        tv = max(0.0, 1.0 + float((t[i] - v[i] + 1e-6).norm()) - float((t[i] - v[j[i]] + 1e-6).norm()))
        per.append((1 - float(alpha[i])) * ta + float(alpha[i]) * tv)
    assert math.isclose(float(terms["tri"]), sum(per) / 6, rel_tol=1e-5)
    torch.testing.assert_close(terms["av"], F.mse_loss(a, v))
    torch.testing.assert_close(loss, terms["tri"] + terms["av"] + terms["att"])


# ----------------------------------------------------------------------------------------------- avca

def test_avca_evaluates_the_video_branch():
    torch.manual_seed(0)
    m = build_model("avca", {"d_model": 12, "enc_hidden": 16, "dec_hidden": 16, "dim_out": 8,
                             "heads": 2, "dim_head": 6}, DIMS).eval()
    b, text = _batch(), torch.randn(5, DIMS.text)
    _, _, th_a, th_v = m.encode(b)
    assert not torch.allclose(th_a, th_v)
    torch.testing.assert_close(m.distances(b, m.embed_classes(text)), torch.cdist(th_v, m.W_proj(text)))


def test_avca_loss_equals_explicit_terms():
    torch.manual_seed(0)
    m = build_model("avca", {"d_model": 12, "enc_hidden": 16, "dec_hidden": 16, "dim_out": 8,
                             "heads": 2, "dim_head": 6, "lambda_first": 0.5, "lambda_second": 2.0}, DIMS).eval()
    b, text = _batch(), torch.randn(4, DIMS.text)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    torch.manual_seed(2)
    loss, terms = m.loss(b, text, y)
    torch.manual_seed(2)
    j, _ = LB.random_negatives(y)
    w = text[y]
    phi_a, phi_v = m.A_enc(b.audio), m.V_enc(b.video)
    x = m.blocks[0](torch.stack([phi_a + m.pos_emb[0], phi_v + m.pos_emb[1]], 1))
    ta, tv, tw = m.A_proj(phi_a + x[:, 0]), m.V_proj(phi_v + x[:, 1]), m.W_proj(w)
    ra, rv, rw = m.D(ta), m.D(tv), m.D(tw)
    T = lambda an, po, ne: LB.triplet_margin(an, po, ne, 1.0)  # noqa: E731
    torch.testing.assert_close(terms["rec"], F.mse_loss(rv, w) + F.mse_loss(ra, w) + F.mse_loss(rw, w))
    torch.testing.assert_close(terms["ct"], T(rw, rv, rv[j]) + T(rw, ra, ra[j]))
    torch.testing.assert_close(terms["w"], T(tw, tv, tv[j]) + T(tw, ta, ta[j]) + T(ta, tw, tw[j]) + T(tv, tw, tw[j]))
    torch.testing.assert_close(terms["t"], 0.5 * (T(ta, tw, ta[j]) + T(tv, tw, tv[j]))
                               + 2.0 * (T(tw, ta, tw[j]) + T(tw, tv, tw[j])))
    torch.testing.assert_close(terms["reg"], F.mse_loss(m.V_rec(tv), phi_v) + F.mse_loss(m.A_rec(ta), phi_a)
                               + F.mse_loss(tv, tw) + F.mse_loss(ta, tw))
    torch.testing.assert_close(loss, sum(terms[k] for k in ("rec", "ct", "w", "t", "reg")))


def test_avca_position_embeddings_are_trained():
    torch.manual_seed(0)
    m = build_model("avca", {"d_model": 12, "enc_hidden": 16, "dec_hidden": 16, "dim_out": 8,
                             "heads": 2, "dim_head": 6}, DIMS).train()
    loss, terms = m.loss(_batch(), torch.randn(4, DIMS.text), torch.tensor([0, 1, 2, 3, 0, 1]))
    loss.backward()
    assert m.pos_emb.grad is not None and m.pos_emb.grad.abs().sum() > 0
    assert any(p is m.pos_emb for p in m.parameters())  # the protocol's Adam(model.parameters()) sees it
    assert set(terms) == {"rec", "ct", "w", "t", "reg", "total"}


# ----------------------------------------------------------------------------------------------- tcaf

def _tcaf(attention="cross", depth=1):
    torch.manual_seed(0)
    return build_model("tcaf", {"d_model": 16, "depth": depth, "heads": 2, "dim_head": 8, "mlp_dim": 16,
                                "hidden": 16, "dim_out": 8, "attention": attention},
                       FeatureDims(audio=6, video=5, text=7, temporal=True)).eval()


def _seq(seed=0, Ta=4, Tv=3, B=3):
    g = torch.Generator().manual_seed(seed)
    am = torch.ones(B, Ta, dtype=torch.bool)
    am[0, 3] = False  # a padded audio step
    vm = torch.ones(B, Tv, dtype=torch.bool)
    at = torch.arange(Ta, dtype=torch.float32).expand(B, Ta) * 0.96
    vt = torch.arange(Tv, dtype=torch.float32).expand(B, Tv) * 1.3
    return Batch(torch.randn(B, Ta, 6, generator=g) * am[..., None], torch.randn(B, Tv, 5, generator=g), am, vm,
                 at.clone(), vt.clone())


def _perturbed(b, audio_step=None, video_step=None):
    a, v = b.audio.clone(), b.video.clone()
    if audio_step is not None:
        a[:, audio_step] += 3.0
    if video_step is not None:
        v[:, video_step] += 3.0
    return Batch(a, v, b.audio_mask, b.video_mask, b.audio_times, b.video_times)


def test_tcaf_audio_tokens_do_not_attend_to_audio():
    # one block: an audio token's output is a function of its own input, [CLS] and the video tokens only
    # (with more blocks, information from other audio steps arrives through the video tokens, by design)
    m = _tcaf("cross")
    b = _seq()
    with torch.no_grad():
        out, Ta = m.transformer_tokens(b)
        out_a, _ = m.transformer_tokens(_perturbed(b, audio_step=2))  # change audio step 2
        out_v, _ = m.transformer_tokens(_perturbed(b, video_step=1))  # change video step 1
    audio0 = slice(1, 2)  # position of audio step 0 ([CLS] is position 0)
    torch.testing.assert_close(out_a[:, audio0], out[:, audio0], rtol=0, atol=1e-6)  # unchanged
    assert (out_v[:, audio0] - out[:, audio0]).abs().max() > 1e-3  # a video step does change it
    video0 = slice(1 + Ta, 2 + Ta)
    torch.testing.assert_close(out_v[:, video0], out[:, video0], rtol=0, atol=1e-6)  # symmetric for video
    assert (out_a[:, video0] - out[:, video0]).abs().max() > 1e-3
    assert (out_a[:, 0] - out[:, 0]).abs().max() > 1e-3  # [CLS] attends to everything


def test_tcaf_full_attention_does_see_other_audio_steps():
    m = _tcaf("full")  # the control: with full attention the same perturbation does leak
    b = _seq()
    with torch.no_grad():
        out, _ = m.transformer_tokens(b)
        out_a, _ = m.transformer_tokens(_perturbed(b, audio_step=2))
    assert (out_a[:, 1] - out[:, 1]).abs().max() > 1e-3


def test_tcaf_padding_is_ignored():
    m = _tcaf("cross", depth=2)
    b = _seq()  # video 0 has 3 real audio steps and one padded step
    a = b.audio.clone()
    a[0, 3] = 100.0  # garbage in the padded step
    trimmed = Batch(b.audio[:1, :3], b.video[:1], b.audio_mask[:1, :3], b.video_mask[:1],
                    b.audio_times[:1, :3], b.video_times[:1])  # the same video without the padded step
    with torch.no_grad():
        e0 = m.embed_videos(Batch(a, b.video, b.audio_mask, b.video_mask, b.audio_times, b.video_times))
        e1 = m.embed_videos(trimmed)
    torch.testing.assert_close(e0[:1], e1)


def test_tcaf_uses_step_times_in_seconds():
    m = _tcaf("cross")
    b = _seq()
    later = Batch(b.audio, b.video, b.audio_mask, b.video_mask, b.audio_times + 0.5, b.video_times)
    index = Batch(b.audio, b.video, b.audio_mask, b.video_mask, None, None)  # times absent: step index
    with torch.no_grad():
        e, e_later, e_index = m.embed_videos(b), m.embed_videos(later), m.embed_videos(index)
    assert (e - e_later).abs().max() > 1e-4 and (e - e_index).abs().max() > 1e-4


def test_tcaf_averaged_input_is_one_step():
    m = _tcaf("cross")
    g = torch.Generator().manual_seed(0)
    a, v = torch.randn(3, 6, generator=g), torch.randn(3, 5, generator=g)
    with torch.no_grad():
        e_avg = m.embed_videos(Batch(a, v))
        one = torch.ones(3, 1, dtype=torch.bool)
        e_seq = m.embed_videos(Batch(a[:, None], v[:, None], one, one, torch.zeros(3, 1), torch.zeros(3, 1)))
    torch.testing.assert_close(e_avg, e_seq)


def test_tcaf_mask_rows_never_empty():
    from avgzsl.models.tcaf import AUDIO, CLS, VIDEO, attention_mask
    seg = torch.tensor([CLS, AUDIO, AUDIO, VIDEO])
    real = torch.tensor([[True, True, False, True], [True, False, False, False]])
    for mode in ("cross", "full", "self"):
        allowed = attention_mask(seg, real, mode)
        assert allowed.any(-1).all()
        assert not allowed[0, :, 2].any()  # a padded key is never attended to
    cross = attention_mask(seg, real, "cross")
    assert cross[0].tolist() == [[True, True, False, True], [True, False, False, True],
                                 [True, False, False, True], [True, True, False, False]]
