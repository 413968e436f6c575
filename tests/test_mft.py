"""MFT (models/mft.py): shapes, gradients, attention layouts, modality switches, checkpoints, configs."""
from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from torch import nn

from avgzsl import losses
from avgzsl.config import load_config
from avgzsl.errors import ConfigError
from avgzsl.models import Batch, build_model, list_models, model_config
from avgzsl.models.mft import (
    AUDIO,
    CLS,
    VIDEO,
    MFTConfig,
    cross_modal_mask,
    sinusoidal_time_embedding,
)

ROOT = Path(__file__).resolve().parents[1]
DIMS = dict(audio=6, video=5, text=7)
TINY = dict(d_model=8, heads=2, depth=2, hidden=16, dim_out=4)
NO_DROPOUT = dict(dropout=0.0, dropout_encoder=0.0, dropout_decoder=0.0, dropout_text=0.0)
B, TA, TV, K = 6, 4, 3, 5


def make_model(temporal=False, **over):
    torch.manual_seed(0)
    return build_model("mft", {**TINY, **over}, dict(**DIMS, temporal=temporal))


def make_batch(temporal=False, seed=1):
    g = torch.Generator().manual_seed(seed)
    if not temporal:
        return Batch(torch.randn(B, DIMS["audio"], generator=g), torch.randn(B, DIMS["video"], generator=g))
    a_len = torch.tensor([4, 3, 1, 2, 4, 2])
    v_len = torch.tensor([3, 1, 2, 3, 2, 1])
    a_mask = torch.arange(TA) < a_len.unsqueeze(1)  # (B, TA)
    v_mask = torch.arange(TV) < v_len.unsqueeze(1)  # (B, TV)
    audio = torch.randn(B, TA, DIMS["audio"], generator=g) * a_mask.unsqueeze(-1)
    video = torch.randn(B, TV, DIMS["video"], generator=g) * v_mask.unsqueeze(-1)
    a_times = torch.arange(TA, dtype=torch.float32) * 0.96 * a_mask  # seconds, 0 on padding
    v_times = torch.arange(TV, dtype=torch.float32) * 1.0 * v_mask
    return Batch(audio, video, a_mask, v_mask, a_times, v_times)


def replace(batch: Batch, **fields) -> Batch:
    d = {k: getattr(batch, k) for k in ("audio", "video", "audio_mask", "video_mask", "audio_times",
                                         "video_times")}
    d.update(fields)
    return Batch(**d)


def text_and_target(seed=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(K, DIMS["text"], generator=g), torch.tensor([0, 1, 1, 3, 4, 0])


def test_registered():
    assert "mft" in list_models()
    assert isinstance(model_config("mft"), MFTConfig)


@pytest.mark.parametrize("temporal,attention,modalities",
                         list(itertools.product([False, True], ["full", "cross", "none"],
                                                ["both", "audio", "video"])))
def test_forward_backward(temporal, attention, modalities):
    model = make_model(temporal, attention=attention, modalities=modalities)
    model.train()
    batch = make_batch(temporal)
    text, target = text_and_target()
    total, terms = model.loss(batch, text, target)
    assert set(terms) == {"ce", "reg", "rec", "kl", "cos", "total"}
    assert all(torch.isfinite(v) and v.ndim == 0 and not v.requires_grad for v in terms.values())
    assert torch.isfinite(total) and total.requires_grad
    total.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)  # every parameter is used
    model.eval()
    with torch.no_grad():
        emb = model.embed_videos(batch)
        cls = model.embed_classes(text)
        dist = model.distances(batch, cls)
    assert emb.shape == (B, TINY["dim_out"]) and cls.shape == (K, TINY["dim_out"])
    assert dist.shape == (B, K) and torch.isfinite(dist).all()


@pytest.mark.parametrize("temporal,attention", [(False, "full"), (True, "cross"), (True, "none")])
def test_checkpoint_round_trip(temporal, attention, tmp_path):
    model = make_model(temporal, attention=attention)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    text, target = text_and_target()
    model.train()
    for _ in range(3):  # move the weights and the BatchNorm running statistics off their init
        opt.zero_grad()
        model.loss(make_batch(temporal), text, target)[0].backward()
        opt.step()
    torch.save(model.state_dict(), tmp_path / "mft.pt")
    fresh = build_model("mft", model.cfg, model.dims)
    fresh.load_state_dict(torch.load(tmp_path / "mft.pt"))
    model.eval()
    fresh.eval()
    batch = make_batch(temporal, seed=5)
    with torch.no_grad():
        assert torch.equal(model.embed_videos(batch), fresh.embed_videos(batch))
        assert torch.equal(model.embed_classes(text), fresh.embed_classes(text))
        assert torch.equal(model.loss(batch, text, target)[0], fresh.loss(batch, text, target)[0])
    with torch.no_grad():  # and the trained model differs from a fresh init (the test can fail)
        assert not torch.equal(model.embed_videos(batch), make_model(temporal, attention=attention).eval()
                               .embed_videos(batch))


def _fuse(model, batch):
    model.eval()
    with torch.no_grad():
        return model.fuse(batch)


@pytest.mark.parametrize("temporal", [False, True])
def test_full_attention_mixes_modalities(temporal):
    model = make_model(temporal, attention="full", **NO_DROPOUT)
    batch = make_batch(temporal)
    other = replace(batch, video=batch.video + torch.randn_like(batch.video) * batch.video.ne(0))
    f0, f1 = _fuse(model, batch), _fuse(model, other)
    audio_tok = f0.segment == AUDIO
    real = ~f0.pad[:, audio_tok]  # (B, Ta)
    diff = (f0.tokens[:, audio_tok] - f1.tokens[:, audio_tok]).abs().amax(-1)  # (B, Ta)
    assert (diff[real] > 1e-6).all()  # every real audio token sees the video


def test_token_layout():
    model = make_model(True)
    fused = _fuse(model, make_batch(True))
    assert fused.tokens.shape == (B, 1 + TA + TV, TINY["d_model"])
    assert fused.segment.tolist() == [CLS] + [AUDIO] * TA + [VIDEO] * TV
    assert fused.pad[:, 0].logical_not().all()


def test_padding_is_ignored():
    model = make_model(True, **NO_DROPOUT)
    batch = make_batch(True)
    noisy = replace(batch, audio=batch.audio + 5 * (~batch.audio_mask).unsqueeze(-1),
                    video=batch.video - 3 * (~batch.video_mask).unsqueeze(-1))
    for attention in ("full", "cross", "none"):
        for norm in ("layernorm", "batchnorm"):
            m = make_model(True, attention=attention, encoder_norm=norm, **NO_DROPOUT)
            m.train()  # BatchNorm batch statistics: must also ignore padding
            torch.manual_seed(0)
            a = m.embed_videos(batch)
            torch.manual_seed(0)
            b = m.embed_videos(noisy)
            assert torch.allclose(a, b, atol=1e-5), (attention, norm)
    model.eval()
    with torch.no_grad():  # control: changing a REAL step does change the output
        real = replace(batch, audio=batch.audio + 5 * batch.audio_mask.unsqueeze(-1))
        assert not torch.allclose(model.embed_videos(batch), model.embed_videos(real))


def test_cross_attention_layout():
    seg = torch.tensor([CLS, AUDIO, AUDIO, VIDEO, VIDEO, VIDEO])
    blocked = cross_modal_mask(seg)
    allowed = ~blocked
    assert allowed[0].all()  # [CLS] attends to every token
    assert allowed[:, 0].all()  # every token attends to [CLS]
    assert not allowed[1:3, 1:3].any() and not allowed[3:, 3:].any()  # no within-modality attention
    assert allowed[1:3, 3:].all() and allowed[3:, 1:3].all()  # across modalities


def test_cross_attention_audio_tokens_ignore_other_audio_tokens():
    batch = make_batch(True)
    # change audio step 0 only (real in every sample)
    bumped = batch.audio.clone()
    bumped[:, 0] += torch.randn(B, DIMS["audio"])
    f0 = _fuse(make_model(True, attention="cross", **NO_DROPOUT), batch)
    audio_idx = (f0.segment == AUDIO).nonzero().flatten()
    others = audio_idx[1:]  # audio tokens 1..Ta-1
    real_others = ~f0.pad[:, others]
    # at depth >= 2, audio token j can hear audio token 0 second-hand through [CLS] / video tokens of an
    # earlier block; within ONE attention layer it cannot, so exact independence is checked at depth 1
    model1 = make_model(True, attention="cross", depth=1, **NO_DROPOUT)
    g0, g1 = _fuse(model1, batch), _fuse(model1, replace(batch, audio=bumped))
    assert torch.allclose(g0.tokens[:, others], g1.tokens[:, others], atol=1e-6)
    assert not torch.allclose(g0.tokens[:, 0], g1.tokens[:, 0])  # [CLS] sees audio
    # but audio tokens do depend on the video
    vid = replace(batch, video=batch.video + torch.randn_like(batch.video) * batch.video_mask.unsqueeze(-1))
    g2 = _fuse(model1, vid)
    d_audio = (g0.tokens[:, audio_idx] - g2.tokens[:, audio_idx]).abs().amax(-1)
    assert (d_audio[~g0.pad[:, audio_idx]] > 1e-6).all()
    # control: with full attention the same change of audio step 0 reaches the other audio tokens
    full = make_model(True, attention="full", depth=1, **NO_DROPOUT)
    h0, h1 = _fuse(full, batch), _fuse(full, replace(batch, audio=bumped))
    d_full = (h0.tokens[:, others] - h1.tokens[:, others]).abs().amax(-1)
    assert (d_full[real_others] > 1e-6).all()


def _attention_like(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules()
            if isinstance(m, (nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerEncoder))
            or "attention" in type(m).__name__.lower() or "transformer" in type(m).__name__.lower()]


@pytest.mark.parametrize("temporal", [False, True])
def test_no_attention_module_with_attention_none(temporal):
    none = make_model(temporal, attention="none")
    assert not any(isinstance(m, nn.MultiheadAttention) for m in none.modules())
    assert _attention_like(none) == []
    assert not any(n.startswith(("cls_token", "modality_emb")) for n, _ in none.named_parameters())
    full = make_model(temporal, attention="full")
    assert sum(isinstance(m, nn.MultiheadAttention) for m in full.modules()) == TINY["depth"]
    assert _attention_like(full)  # the check above can fail


@pytest.mark.parametrize("temporal,attention", list(itertools.product([False, True], ["full", "cross", "none"])))
def test_audio_only_ignores_video(temporal, attention):
    model = make_model(temporal, modalities="audio", attention=attention).eval()
    assert list(model.encoders) == ["audio"]
    assert not any("video" in n for n, _ in model.named_parameters())
    assert not any("video" in n for n in model.state_dict())
    batch = make_batch(temporal)
    other = replace(batch, video=torch.randn_like(batch.video) * 10)
    with torch.no_grad():
        assert torch.equal(model.embed_videos(batch), model.embed_videos(other))
        if attention != "none":
            assert model.fuse(batch).segment.tolist() == [CLS] + [AUDIO] * (TA if temporal else 1)
        # control: the audio input does matter
        assert not torch.equal(model.embed_videos(batch), model.embed_videos(replace(batch, audio=batch.audio + 1)))
    both = make_model(temporal, attention=attention).eval()
    with torch.no_grad():  # control: with both modalities the video input matters
        assert not torch.allclose(both.embed_videos(batch), both.embed_videos(other))


@pytest.mark.parametrize("temporal", [False, True])
def test_video_only_ignores_audio(temporal):
    model = make_model(temporal, modalities="video").eval()
    assert list(model.encoders) == ["video"]
    assert not any("audio" in n for n, _ in model.named_parameters())
    batch = make_batch(temporal)
    with torch.no_grad():
        assert torch.equal(model.embed_videos(batch),
                           model.embed_videos(replace(batch, audio=torch.randn_like(batch.audio))))


def test_time_embedding():
    t = torch.tensor([[0.0, 1.0, 2.5]])
    e = sinusoidal_time_embedding(t, 9, 0.5, 128.0)
    assert e.shape == (1, 3, 9)
    assert torch.allclose(e[0, 0, :4], torch.zeros(4)) and torch.allclose(e[0, 0, 4:8], torch.ones(4))
    assert torch.equal(e[..., 8], torch.zeros(1, 3))  # odd width: zero pad
    assert torch.allclose(e[0, 1, 0], torch.sin(torch.tensor(2 * torch.pi / 0.5)), atol=1e-5)
    batch = make_batch(True)
    shifted = replace(batch, audio_times=batch.audio_times + 0.7)
    for mode, changes in (("sinusoidal", True), ("none", False)):
        model = make_model(True, time_embedding=mode).eval()
        with torch.no_grad():
            same = torch.equal(model.embed_videos(batch), model.embed_videos(shifted))
        assert same != changes, mode
    model = make_model(True, **NO_DROPOUT)  # the same embedding in training and evaluation
    with torch.no_grad():
        model.train()
        tr = model.fuse(batch).tokens
        model.eval()
        ev = model.fuse(batch).tokens
    assert torch.allclose(tr, ev, atol=1e-6)


def test_loss_terms_and_switches():
    batch = make_batch()
    text, target = text_and_target()
    for lk, lc in ((1.0, 1.0), (0.0, 1.0), (1.0, 0.0), (0.0, 0.0), (0.5, 2.0)):
        model = make_model(lambda_kl=lk, lambda_cos=lc, **NO_DROPOUT).eval()  # eval: deterministic
        total, t = model.loss(batch, text, target)
        expect = t["ce"] + t["reg"] + t["rec"] + lk * t["kl"] + lc * t["cos"]
        assert torch.allclose(total.detach(), expect) and torch.allclose(t["total"], expect)
        assert t["kl"] > 0 and t["cos"] > 0  # logged even when switched off
    # with λ_kl = λ_cos = 0 no gradient flows from l_kl, l_cos: the gradient is ClipClap's three terms
    m0 = make_model(lambda_kl=0.0, lambda_cos=0.0, **NO_DROPOUT).eval()
    m0.loss(batch, text, target)[0].backward()
    g_switch = [p.grad.clone() for p in m0.parameters()]
    m1 = make_model(**NO_DROPOUT).eval()
    m1.load_state_dict(m0.state_dict())
    theta_o = m1.embed_videos(batch)
    w = m1.W_enc(text[target])
    theta_w = m1.W_proj(w)
    base = (losses.embedding_cross_entropy(theta_o, m1.embed_classes(text), target)
            + losses.regression(theta_o, theta_w) + losses.reconstruction(w, m1.D_o(theta_o), m1.D_w(theta_w)))
    base.backward()
    for g, p in zip(g_switch, m1.parameters()):
        assert torch.allclose(g, p.grad, atol=1e-6)


def test_kl_target_uses_raw_text():
    """The semantic target is a fixed function of the raw text: same q whatever the weights."""
    text, target = text_and_target()
    for kind in losses.KL_TARGETS:
        m = make_model(kl_target=kind, lambda_cos=0.0, **NO_DROPOUT).eval()
        _, t = m.loss(make_batch(), text, target)
        theta_o = m.embed_videos(make_batch())
        theta_w = m.embed_classes(text)
        q = losses.kl_target(kind, text, target, m.cfg.kl_eps, m.cfg.kl_tau_q)
        exclude = target if kind == "nontarget" else None
        assert torch.allclose(t["kl"], losses.kl_divergence(theta_o, theta_w, q, m.cfg.kl_tau, exclude=exclude).detach(),
                              atol=1e-6)


@pytest.mark.parametrize("bad", [dict(attention="sparse"), dict(modalities="text"), dict(d_model=10, heads=4),
                                 dict(kl_target="uniform"), dict(kl_eps=1.5), dict(kl_tau=0.0),
                                 dict(lambda_kl=-1.0), dict(dropout=1.0), dict(depth=0),
                                 dict(encoder_norm="groupnorm"), dict(time_min_period=2.0, time_max_period=1.0),
                                 dict(unknown_key=1)])
def test_config_validation(bad):
    with pytest.raises(ConfigError):
        model_config("mft", bad)


def test_any_feature_dims():
    for dims in (dict(audio=1024, video=512, text=1536), dict(audio=128, video=4096, text=300)):
        for temporal in (False, True):
            m = build_model("mft", TINY, dict(**dims, temporal=temporal)).eval()
            shape = (2, 3) if temporal else (2,)
            batch = Batch(torch.randn(*shape, dims["audio"]), torch.randn(*shape, dims["video"]))
            with torch.no_grad():
                assert m.distances(batch, m.embed_classes(torch.randn(4, dims["text"]))).shape == (2, 4)


ABLATIONS = [  # every row of the paper's Tables 3-5, as --set switches (docs/method.md)
    [], ["mft.attention=none"], ["mft.lambda_cos=0"], ["mft.lambda_kl=0"],
    ["mft.modalities=audio"], ["mft.modalities=video"], ["mft.attention=cross"],
]


@pytest.mark.parametrize("name,epochs,lr", [("ucf", 20, 7e-5), ("activitynet", 15, 1e-4), ("vggsound", 15, 1e-4)])
@pytest.mark.parametrize("sets", ABLATIONS)
def test_configs(name, epochs, lr, sets):
    cfg = load_config(ROOT / "configs" / f"mft_{name}.yaml", sets)
    assert cfg.model == "mft" and cfg.epochs == epochs and cfg.lr == pytest.approx(lr)
    assert (cfg.bs, cfg.n_batches, cfg.seed) == (64, 300, 42)
    mcfg = cfg.model_cfg  # typed: the MFTConfig itself
    for s in sets:
        key, value = s.split("=")
        got = getattr(mcfg, key.split(".")[1])
        assert str(got) == value or got == float(value)


def test_config_rejects_bad_set():
    with pytest.raises(ConfigError):
        load_config(ROOT / "configs" / "mft_ucf.yaml", ["mft.attention=sparse"])


@pytest.mark.parametrize("temporal,attention,depth", list(itertools.product([False, True], ["full", "cross"], [1, 2])))
def test_cls_only_readout_matches_full_sequence(temporal, attention, depth):
    """embed_videos computes only [CLS] in the last block: the same value as the full token outputs."""
    model = make_model(temporal, attention=attention, depth=depth).eval()
    batch = make_batch(temporal)
    with torch.no_grad():
        full = model.fuse(batch)
        short = model.fuse(batch, cls_only=True)
        assert short.tokens.shape == (B, 1, TINY["d_model"])
        assert torch.allclose(short.tokens[:, 0], full.tokens[:, 0], atol=1e-6)
        assert torch.allclose(model.embed_videos(batch), model.O_proj(full.tokens[:, 0]), atol=1e-6)


def test_text_branch_shared():
    """text_branch=shared takes θw(y), w'(y) from the K-class pass: in eval mode (no dropout, running
    BatchNorm statistics) both branches give the same loss."""
    batch = make_batch()
    text, target = text_and_target()
    per = make_model().eval()
    shared = make_model(text_branch="shared").eval()
    shared.load_state_dict(per.state_dict())
    with torch.no_grad():
        assert torch.allclose(per.loss(batch, text, target)[0], shared.loss(batch, text, target)[0], atol=1e-5)
    shared.train()
    total, _ = shared.loss(batch, text, target)
    total.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in shared.parameters())
    with pytest.raises(ConfigError):
        model_config("mft", dict(text_branch="both"))


@pytest.mark.parametrize("temporal,attention", list(itertools.product([False, True], ["full", "cross"])))
def test_mode_distances_score_from_one_modality(temporal, attention):
    model = make_model(temporal, attention=attention).eval()
    assert model.eval_modes() == ("audio", "video")
    batch = make_batch(temporal)
    emb = model.embed_classes(text_and_target()[0])  # (K, E)
    new_video = replace(batch, video=torch.randn_like(batch.video) * 10)
    new_audio = replace(batch, audio=torch.randn_like(batch.audio) * 10)
    with torch.no_grad():
        d = model.mode_distances(batch, emb)
        assert d["audio"].shape == d["video"].shape == (B, K)
        assert torch.equal(d["audio"], model.mode_distances(new_video, emb)["audio"])
        assert torch.equal(d["video"], model.mode_distances(new_audio, emb)["video"])
        # controls: each mode reads its own modality, and neither is the both-modality scoring
        assert not torch.allclose(d["audio"], model.mode_distances(new_audio, emb)["audio"])
        assert not torch.allclose(d["video"], model.mode_distances(new_video, emb)["video"])
        assert not torch.allclose(d["audio"], model.distances(batch, emb))


def test_mode_padding_equals_leaving_the_tokens_out():
    """Audio mode: the [CLS] output is that of the sequence [CLS, audio tokens] with no video token at all."""
    model = make_model(True, attention="full").eval()
    batch = make_batch(True)
    with torch.no_grad():
        tok = model._tokens(batch)
        keep = tok.segment != VIDEO  # (L,)
        alone = model.fusion(tok.tokens[:, keep], tok.pad[:, keep], None)[:, 0]  # (B, d)
        assert torch.allclose(model.fuse(batch, only="audio").tokens[:, 0], alone, atol=1e-6)


@pytest.mark.parametrize("over", [dict(attention="none"), dict(modalities="audio"), dict(modalities="video")])
def test_no_modes_without_attention_or_with_one_modality(over):
    model = make_model(**over).eval()
    assert model.eval_modes() == ()
    with pytest.raises(NotImplementedError):
        model.mode_distances(make_batch(), model.embed_classes(text_and_target()[0]))
