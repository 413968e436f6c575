"""Hyper-multiple (models/hyper_avca.py): geoopt's Poincaré maps as used against closed forms, the
alignment term against a per-sample loop, the full loss against AVCA's, gradients, configs, presets."""
from __future__ import annotations

import math

import pytest
import torch

from avgzsl.config import load_config, resolve_config
from avgzsl.errors import ConfigError
from avgzsl.losses.ranking import NegativePicker
from avgzsl.models import Batch, build_model, model_config
from avgzsl.models.avca import AVCA
from avgzsl.models.hyper_avca import ball_to_tangent, cosine_matrix

pytestmark = pytest.mark.usefixtures("one_thread")

DIMS = dict(audio=7, video=5, text=6)
TINY = dict(d_model=9, enc_hidden=11, dec_hidden=10, dim_out=4, heads=2, dim_head=3, mlp_dim=8)
NO_DROPOUT = dict(dropout_encoder=0.0, dropout_proj=0.0, dropout_decoder=0.0)
B = 8


def make_model(**over):
    torch.manual_seed(0)
    return build_model("hyper_avca", {**TINY, **over}, DIMS)


def make_inputs(seed=1):
    g = torch.Generator().manual_seed(seed)
    batch = Batch(torch.randn(B, DIMS["audio"], generator=g), torch.randn(B, DIMS["video"], generator=g))
    class_text = torch.randn(4, DIMS["text"], generator=g)
    return batch, class_text, torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])


# ---- closed forms, written per row with Python floats ------------------------------------------------

def clip_to_ball(x: list[float], c: float) -> list[float]:
    r, n = (1 - 1e-3) / math.sqrt(c), math.sqrt(sum(v * v for v in x))  # hyptorch's margin 1e-3
    return [v * r / n for v in x] if n > r else list(x)


def log0(y: list[float], c: float) -> list[float]:
    n = math.sqrt(sum(v * v for v in y))
    return [math.atanh(math.sqrt(c) * n) * v / (math.sqrt(c) * n) for v in y]


def exp0(v: list[float], c: float) -> list[float]:
    n = math.sqrt(sum(u * u for u in v))
    return [math.tanh(math.sqrt(c) * n) * u / (math.sqrt(c) * n) for u in v]


def cos(x: list[float], y: list[float]) -> float:
    return sum(a * b for a, b in zip(x, y)) / math.sqrt(sum(a * a for a in x) * sum(b * b for b in y))


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def loop_alignment(model, phi_a: torch.Tensor, phi_v: torch.Tensor, rows: list[int]) -> tuple[float, list]:
    """A(φa, φv) over `rows` from the formula, one sample at a time, and the curvatures c[i][k]."""
    cfg = model.cfg
    W, b = model.curv.weight.tolist(), model.curv.bias.tolist()
    a, v = phi_a.tolist(), phi_v.tolist()
    c = [[cfg.curvature * sigmoid(sum(w * x for w, x in zip(W[k], v[i] + a[i])) + b[k])
          for k in range(cfg.num_curvatures)] for i in range(len(a))]
    total = 0.0
    for k in range(cfg.num_curvatures):
        psi_v = {i: log0(clip_to_ball(v[i], c[i][k]), c[i][k]) for i in rows}
        psi_a = {i: log0(clip_to_ball(a[i], c[i][k]), c[i][k]) for i in rows}
        se = [(cos(psi_v[i], psi_v[j]) - cos(psi_a[i], psi_a[j])) ** 2 for i in rows for j in rows]
        total += sum(se) / len(se)
    return total / cfg.num_curvatures, c


def loop_align_loss(model, phi_a, phi_v, neg_index: list[int]) -> float:
    pos, _ = loop_alignment(model, phi_a, phi_v, list(range(len(phi_a))))
    neg, _ = loop_alignment(model, phi_a[neg_index], phi_v[neg_index], list(range(len(neg_index))))
    return pos + neg


# ---- (1) the maps --------------------------------------------------------------------------------------

@pytest.mark.parametrize("c", [0.04, 0.5, 2.0])
def test_ball_maps_match_their_closed_forms(c):
    """Points inside and outside the ball (norms 0.05 to 40), float64 so the comparison is tight."""
    from geoopt.manifolds.stereographic import math as kmath

    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 5, generator=g, dtype=torch.float64) * torch.tensor([0.05, 0.3, 1, 3, 10, 40],
                                                                            dtype=torch.float64)[:, None]
    ct = torch.tensor(c, dtype=torch.float64)
    got = ball_to_tangent(x, ct)
    want = torch.tensor([log0(clip_to_ball(r, c), c) for r in x.tolist()], dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
    # log0 is the inverse of exp0 (the closed form above), on any tangent vector
    back = kmath.logmap0(torch.tensor([exp0(r, c) for r in x.tolist()], dtype=torch.float64), k=-ct)
    far = x.norm(dim=1) * math.sqrt(c) > 8  # tanh rounds to 1 there: no inverse in float64
    torch.testing.assert_close(back[~far], x[~far], rtol=1e-7, atol=1e-10)
    # each row is rescaled by a positive factor only: the direction is kept
    torch.testing.assert_close(torch.nn.functional.normalize(got, dim=1), torch.nn.functional.normalize(x, dim=1))


def test_per_row_curvatures_map_each_row_with_its_own():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(5, 4, generator=g, dtype=torch.float64) * 3
    c = torch.tensor([[0.04], [0.13], [0.43], [1.0], [3.0]], dtype=torch.float64)  # (B, 1)
    want = torch.tensor([log0(clip_to_ball(r, ci), ci) for r, ci in zip(x.tolist(), c[:, 0].tolist())],
                        dtype=torch.float64)
    torch.testing.assert_close(ball_to_tangent(x, c), want, rtol=1e-9, atol=1e-12)


# ---- (2) the term against a loop ----------------------------------------------------------------------

@pytest.mark.parametrize("K", [1, 3])
def test_alignment_term_matches_a_per_sample_loop(K):
    model = make_model(num_curvatures=K, curvature=0.43)
    with torch.no_grad():  # larger curvature-layer weights: the curvatures spread over (0, c_max)
        model.curv.weight.mul_(3)
    g = torch.Generator().manual_seed(5)
    phi_a = torch.relu(torch.randn(B, TINY["d_model"], generator=g)) * 2  # norms ~ 4-6: most rows clipped
    phi_v = torch.relu(torch.randn(B, TINY["d_model"], generator=g)) * 0.2  # ~ 0.5: inside the ball
    target = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    torch.manual_seed(6)
    neg = NegativePicker("random", target)
    got, c = model.align_loss(phi_a, phi_v, neg)
    want, c_loop = loop_align_loss(model, phi_a, phi_v, neg.random_index.tolist()), loop_alignment(
        model, phi_a, phi_v, [0])[1]
    torch.testing.assert_close(c, torch.tensor(c_loop), rtol=1e-5, atol=1e-7)
    assert c.min() > 1e-3 and c.max() < 0.43 and c.std() > 0.05  # the weights above do spread them
    assert got.item() == pytest.approx(want, rel=1e-4)
    assert want > 1e-3  # the loop is not comparing zeros
    # without the negatives' term: the positive batch alone
    model.cfg.align_negatives = False
    assert model.align_loss(phi_a, phi_v, neg)[0].item() == pytest.approx(
        loop_alignment(model, phi_a, phi_v, list(range(B)))[0], rel=1e-4)


def test_the_term_does_not_depend_on_the_curvatures():
    """The identity the docstring states: S(log0(Π(φ))) = S(φ), so l_align is the Euclidean cosine-structure
    MSE for every c_max and K (as in the official code)."""
    g = torch.Generator().manual_seed(7)
    phi_a, phi_v = torch.relu(torch.randn(2, B, TINY["d_model"], generator=g)) * 3
    euclid = torch.nn.functional.mse_loss(cosine_matrix(phi_v), cosine_matrix(phi_a))
    values = []
    for c_max, K in [(0.01, 1), (0.5, 3), (5.0, 2)]:
        model = make_model(curvature=c_max, num_curvatures=K, align_negatives=False)
        values.append(model.align_loss(phi_a, phi_v, NegativePicker("random", torch.arange(B) % 4))[0])
    torch.testing.assert_close(torch.stack(values), euclid.expand(3), rtol=1e-5, atol=1e-8)


# ---- (3) the full loss ---------------------------------------------------------------------------------

def test_loss_is_avcas_loss_plus_weighted_alignment():
    weight = 0.37  # far above 1e-3, so that a missing or mis-weighted term shows against the AVCA terms
    model = make_model(**NO_DROPOUT, align_weight=weight)
    model.train()
    seen = {}
    inner = model._loss

    def spy(*args):  # the tensors of this very forward pass
        seen["args"] = args
        return inner(*args)

    model._loss = spy
    batch, class_text, target = make_inputs()
    total, terms = model.loss(batch, class_text, target)
    args = seen["args"]
    phi_a, phi_v, neg = args[1], args[2], args[-1]
    avca_total, avca_terms = AVCA._loss(model, *args)
    align = loop_align_loss(model, phi_a.detach(), phi_v.detach(), neg.random_index.tolist())
    assert total.item() == pytest.approx(avca_total.item() + weight * align, rel=1e-5)
    assert terms["align"].item() == pytest.approx(align, rel=1e-4)
    assert weight * align > 1e-3 * total.item()  # the term is visible at this tolerance
    for k, v in avca_terms.items():
        if k != "total":
            assert torch.equal(terms[k], v), k
    assert terms["total"].item() == pytest.approx(total.item())


# ---- (4) gradients -------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["adaptive", "fixed"])
def test_one_backward_reaches_every_parameter(mode):
    """Every AVCA parameter gets a gradient. The curvature layer is in the graph but, by the identity
    above, its gradient is zero up to rounding (as in the official code): that is checked too."""
    model = make_model(curvature_mode=mode, num_curvatures=3 if mode == "adaptive" else 1)
    model.train()
    batch, class_text, target = make_inputs()
    loss, _ = model.loss(batch, class_text, target)
    loss.backward()
    named = dict(model.named_parameters())
    curv = {n for n in named if n.startswith("curv.")}
    assert (len(curv) == 2) == (mode == "adaptive")
    for n, p in named.items():
        assert p.grad is not None, n
        if n in curv:
            assert p.grad.abs().max() < 1e-6, n
        else:
            assert p.grad.abs().sum() > 0, n


def test_same_seed_same_avca_weights():
    """The curvature layer is built after every AVCA block: hyper_avca and avca start from the same weights."""
    hyper = make_model()
    torch.manual_seed(0)
    avca = build_model("avca", TINY, DIMS)
    sd = hyper.state_dict()
    assert all(torch.equal(v, sd[k]) for k, v in avca.state_dict().items())
    assert set(sd) - set(avca.state_dict()) == {"curv.weight", "curv.bias"}


# ---- (5) configs and presets ---------------------------------------------------------------------------

@pytest.mark.parametrize("over,match", [
    (dict(curvature_mode="learned"), r"hyper_avca\.curvature_mode='learned'"),
    (dict(curvature_mode="fixed"), r"hyper_avca\.num_curvatures=2 needs curvature_mode: adaptive"),
    (dict(negatives="semi"), r"hyper_avca\.negatives='semi'"),
    (dict(num_curvatures=0), r"hyper_avca\.num_curvatures=0"),
    (dict(curvature=0.0), r"hyper_avca\.curvature=0\.0"),
])
def test_bad_configs_are_refused(over, match):
    with pytest.raises(ConfigError, match=match) as e:
        model_config("hyper_avca", over)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("dataset,c,K", [("ucf", 0.43, 2), ("activitynet", 0.13, 3), ("vggsound", 0.04, 3)])
def test_presets_are_avcas_with_the_readme_curvatures(dataset, c, K):
    hyper = load_config(resolve_config(f"hyper_avca_{dataset}"))
    avca = load_config(resolve_config(f"avca_{dataset}"))
    assert (hyper.model, hyper.model_cfg.curvature, hyper.model_cfg.num_curvatures) == ("hyper_avca", c, K)
    assert hyper.model_cfg.curvature_mode == "adaptive" and hyper.model_cfg.align_weight == 1e-3
    for key in ("epochs", "n_batches", "bs", "lr", "weight_decay", "beta_grid"):
        assert getattr(hyper, key) == getattr(avca, key), key
    for key, value in vars(avca.model_cfg).items():
        assert getattr(hyper.model_cfg, key) == value, key
