"""APN (models/apn.py, losses/apn.py): the loss against a per-sample loop written from the formula, the
reference's quirks (double softmax, the evaluated ALE branch decoupled from the prototype branch), its
L2 scoring, gradients and config checks."""
import math

import pytest
import torch
import torch.nn.functional as F

from avgzsl.config import PRESET_DIR, RunConfig
from avgzsl.data.types import FeatureDims
from avgzsl.errors import ConfigError
from avgzsl.losses.apn import double_softmax_cross_entropy
from avgzsl.losses.registry import LOSSES
from avgzsl.models import build_model, model_config
from avgzsl.models.base import Batch
from avgzsl.settings import load_yaml

pytestmark = pytest.mark.usefixtures("one_thread")

DIMS = FeatureDims(audio=6, video=5, text=7)
B, K = 9, 4


def _setup(seed=0, scale=0.3, **cfg):
    """A model with weights large enough that the softmaxes are far from uniform, a batch, texts, targets."""
    g = torch.Generator().manual_seed(seed)
    model = build_model("apn", cfg, DIMS)
    with torch.no_grad():
        model.prototypes.copy_(scale * torch.randn(model.prototypes.shape, generator=g))
        model.ale_vector.copy_(scale * torch.randn(model.ale_vector.shape, generator=g))
    batch = Batch(torch.randn(B, DIMS.audio, generator=g), torch.randn(B, DIMS.video, generator=g))
    text = F.normalize(torch.randn(K, DIMS.text, generator=g), dim=1)
    target = torch.randint(0, K, (B,), generator=g)
    return model, batch, text, target


def _rows(t):
    return [[float(v) for v in row] for row in t]


def _loop_terms(model, batch, text, target, normalize):
    """Every term from the formula, one sample at a time, in plain Python floats."""
    W_ale, W_p, T = _rows(model.ale_vector.detach()), _rows(model.prototypes.detach()), _rows(text)
    sums = {"ce_ale": 0.0, "reg_ale": 0.0, "ce_proto": 0.0, "reg_proto": 0.0}
    for i in range(B):
        x = [float(v) for v in batch.video[i]] + [float(v) for v in batch.audio[i]]  # video first
        if normalize:
            n = math.sqrt(sum(v * v for v in x))
            x = [v / n for v in x]
        y = int(target[i])
        for branch, W in (("ale", W_ale), ("proto", W_p)):
            a = [sum(w * v for w, v in zip(row, x)) for row in W]  # predicted attributes (Dt,)
            s = [sum(ak * tk for ak, tk in zip(a, T[c])) for c in range(K)]  # scores (K,)
            z = sum(math.exp(v) for v in s)
            p = [math.exp(v) / z for v in s]  # first softmax: the model's output
            z2 = sum(math.exp(v) for v in p)
            sums[f"ce_{branch}"] += -math.log(math.exp(p[y]) / z2)  # CE applies log-softmax again
            sums[f"reg_{branch}"] += sum((ak - tk) ** 2 for ak, tk in zip(a, T[y]))
    return {"ce_ale": sums["ce_ale"] / B, "reg_ale": sums["reg_ale"] / (B * DIMS.text),
            "ce_proto": sums["ce_proto"] / B, "reg_proto": sums["reg_proto"] / (B * DIMS.text)}


# ------------------------------------------------------------------------------------------------ loss

@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("lam_ce,lam_reg", [(1.0, 1.0), (0.3, 2.0)])
def test_loss_matches_a_per_sample_loop(normalize, lam_ce, lam_reg):
    model, batch, text, target = _setup(normalize_inputs=normalize, lambda_ce=lam_ce, lambda_reg=lam_reg)
    total, terms = model.loss(batch, text, target)
    want = _loop_terms(model, batch, text, target, normalize)
    for k, v in want.items():
        assert math.isclose(float(terms[k]), v, rel_tol=1e-5), k
    expected = lam_ce * (want["ce_ale"] + want["ce_proto"]) + lam_reg * (want["reg_ale"] + want["reg_proto"])
    assert math.isclose(float(total.detach()), expected, rel_tol=1e-5)
    assert float(terms["total"]) == float(total.detach())


def test_the_ce_term_is_registered():
    assert LOSSES["apn_ce"] is double_softmax_cross_entropy


# ------------------------------------------------------------------------------------------------ quirks

def test_double_softmax_cannot_reach_zero_loss():
    """A perfectly confident score still costs log(1 + (K-1)/e): the CE sees probabilities in [0, 1].
    With one softmax the loss would be ~0; with a third one it would sit near log K."""
    target = torch.arange(K)
    scores = 60.0 * F.one_hot(target, K).float()  # softmax(scores) is one-hot to float precision
    got = float(double_softmax_cross_entropy(scores, target))
    assert math.isclose(got, math.log(1 + (K - 1) / math.e), rel_tol=1e-6)
    assert float(F.cross_entropy(scores, target)) < 1e-6  # single softmax, for contrast


def test_double_softmax_damps_the_gradient_by_k_at_uniform_scores():
    """At equal scores (APN's tiny init) the extra softmax scales the CE gradient by exactly 1/K."""
    target = torch.tensor([1, 3])
    s2 = torch.zeros(2, K, requires_grad=True)
    double_softmax_cross_entropy(s2, target).backward()
    s1 = torch.zeros(2, K, requires_grad=True)
    F.cross_entropy(s1, target).backward()
    assert torch.allclose(s2.grad, s1.grad / K, atol=1e-7)


def test_evaluation_reads_only_the_ale_branch():
    model, batch, text, _ = _setup()
    model.eval()
    d0 = model.distances(batch, model.embed_classes(text))
    with torch.no_grad():
        model.prototypes.mul_(-3.0).add_(1.0)
    assert torch.equal(model.distances(batch, model.embed_classes(text)), d0)  # prototypes: no effect
    with torch.no_grad():
        model.ale_vector.add_(0.1)
    assert not torch.allclose(model.distances(batch, model.embed_classes(text)), d0)


def test_the_branches_share_nothing_and_are_the_same_function():
    """ALE-branch terms give the prototypes no gradient and vice versa; swapping the two weight
    matrices swaps the terms (identical form and loss, only the init differs)."""
    model, batch, text, target = _setup()
    _, terms = model.loss(batch, text, target)
    grads = {}
    for branch in ("ale", "proto"):
        model.zero_grad(set_to_none=True)
        _, t = model.loss(batch, text, target)
        # the logged terms are detached: rebuild this branch's two terms with a graph
        a_ale, a_p = model.attributes(batch)
        a = a_ale if branch == "ale" else a_p
        loss = double_softmax_cross_entropy(a @ text.t(), target) + F.mse_loss(a, text[target])
        assert torch.allclose(loss, t[f"ce_{branch}"] + t[f"reg_{branch}"])  # the model's two terms
        loss.backward()
        grads[branch] = (model.ale_vector.grad, model.prototypes.grad)
    assert grads["ale"][1] is None and grads["ale"][0].abs().sum() > 0
    assert grads["proto"][0] is None and grads["proto"][1].abs().sum() > 0
    with torch.no_grad():
        p, a = model.prototypes.clone(), model.ale_vector.clone()
        model.prototypes.copy_(a), model.ale_vector.copy_(p)
    _, swapped = model.loss(batch, text, target)
    assert torch.allclose(swapped["ce_ale"], terms["ce_proto"]) and torch.allclose(swapped["reg_proto"], terms["reg_ale"])


def test_initialisation_draws_prototypes_then_ale_vector_uniform():
    torch.manual_seed(3)
    want_p = 2e-4 * torch.rand(DIMS.text, DIMS.video + DIMS.audio)
    want_a = 2e-4 * torch.rand(DIMS.text, DIMS.video + DIMS.audio)
    torch.manual_seed(3)
    model = build_model("apn", None, DIMS)
    assert torch.equal(model.prototypes.detach(), want_p) and torch.equal(model.ale_vector.detach(), want_a)
    w = model.ale_vector.detach()
    assert float(w.min()) >= 0 and float(w.max()) < 2e-4


# ------------------------------------------------------------------------------------------------ scoring

def test_distances_are_the_reference_l2_between_ale_attributes_and_raw_text():
    model, batch, text, _ = _setup(normalize_inputs=True)
    model.eval()
    x = F.normalize(torch.cat([batch.video, batch.audio], dim=1), dim=1)  # (B, Dv + Da), video first
    want = torch.cdist(x @ model.ale_vector.detach().t(), text)  # the reference's distance matrix
    got = model.distances(batch, model.embed_classes(text))
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.equal(model.embed_classes(text), text)


def test_smaller_distance_is_the_true_class():
    """â = the video part's first Dt dims; a video built from its class text is nearest to that class.
    With unit-norm texts the L2 ranking equals the dot-product (softmax) ranking the CE trains."""
    dims = FeatureDims(audio=3, video=8, text=7)
    model = build_model("apn", None, dims)
    with torch.no_grad():
        model.ale_vector.zero_()
        model.ale_vector[:, :dims.text] = torch.eye(dims.text)
    g = torch.Generator().manual_seed(1)
    text = F.normalize(torch.randn(5, dims.text, generator=g), dim=1)
    target = torch.tensor([0, 1, 2, 3, 4, 2, 0])
    video = torch.cat([text[target], torch.zeros(len(target), 1)], dim=1) + 0.01 * torch.randn(len(target), 8, generator=g)
    batch = Batch(torch.randn(len(target), 3, generator=g), video)
    d = model.distances(batch, model.embed_classes(text))
    assert torch.equal(d.argmin(dim=1), target)
    assert torch.equal((model.embed_videos(batch) @ text.t()).argmax(dim=1), target)
    assert (d.gather(1, target[:, None]) < 0.1).all()


def test_temporal_input_is_the_masked_mean():
    model, _, text, _ = _setup()
    g = torch.Generator().manual_seed(2)
    mask = torch.tensor([[True, True, False], [True, False, False], [True, True, True]])
    a, v = torch.randn(3, 3, DIMS.audio, generator=g), torch.randn(3, 3, DIMS.video, generator=g)
    temporal = Batch(a, v, mask, mask.clone())
    m = mask[..., None].float()
    averaged = Batch((a * m).sum(1) / m.sum(1), (v * m).sum(1) / m.sum(1))
    assert torch.allclose(model.distances(temporal, text), model.distances(averaged, text), atol=1e-6)


# ------------------------------------------------------------------------------------------------ gradients

def test_one_backward_reaches_every_parameter():
    model, batch, text, target = _setup()
    model.loss(batch, text, target)[0].backward()
    params = dict(model.named_parameters())
    assert set(params) == {"prototypes", "ale_vector"}
    for name, p in params.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# ------------------------------------------------------------------------------------------------ config

@pytest.mark.parametrize("bad", [{"lambda_ce": 0.0, "lambda_reg": 0.0}, {"init_scale": 0.0},
                                 {"lambda_ce": -1.0}, {"prototypes": 3}])
def test_bad_config_is_refused(bad):
    with pytest.raises(ConfigError, match=r"apn\."):
        model_config("apn", bad)


def test_only_one_loss_weight_zero_is_fine():
    model_config("apn", {"lambda_ce": 0.0})
    model_config("apn", {"lambda_reg": 0.0})


@pytest.mark.parametrize("ds", ["ucf", "activitynet", "vggsound"])
def test_presets_take_the_reference_run_script_settings(ds):
    path = PRESET_DIR / f"apn_{ds}.yaml"
    cfg = RunConfig.from_dict(load_yaml(path.read_text(), str(path)))
    assert (cfg.model, cfg.epochs, cfg.n_batches, cfg.bs, cfg.lr, cfg.weight_decay, cfg.beta_grid) == \
        ("apn", 50, 500, 256, 1e-3, 0.0, "avca")
    assert cfg.model_cfg == model_config("apn")  # main features: no --norm_inputs
