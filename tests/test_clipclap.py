"""ClipClap-GZSL: shapes, and the loss against an explicit per-term computation."""
import torch

from avgzsl.data.types import FeatureDims
from avgzsl.models import build_model
from avgzsl.models.base import Batch


def test_shapes_follow_the_paper():
    m = build_model("clipclap", None, FeatureDims(audio=1024, video=512, text=1536)).eval()
    b = Batch(torch.randn(3, 1024), torch.randn(3, 512))
    assert m.O_enc[0].in_features == 1536  # concat[video 512, audio 1024]
    assert m.embed_videos(b).shape == (3, 64)
    assert m.embed_classes(torch.randn(7, 1536)).shape == (7, 64)
    assert m.D_o(torch.randn(3, 64)).shape == (3, 512)


def test_video_comes_first_in_the_concatenation():
    m = build_model("clipclap", None, FeatureDims(audio=4, video=3, text=5))
    b = Batch(torch.arange(8.0).view(2, 4), -torch.arange(6.0).view(2, 3))
    x = m._inputs(b)
    assert torch.equal(x[:, :3], b.video) and torch.equal(x[:, 3:], b.audio)


def test_loss_equals_explicit_terms():
    torch.manual_seed(0)
    m = build_model("clipclap", {"hidden": 16, "dim_out": 8}, FeatureDims(audio=6, video=5, text=7))
    m.eval()  # no dropout/BN noise: the explicit computation below must match exactly
    b = Batch(torch.randn(4, 6), torch.randn(4, 5))
    text = torch.randn(3, 7)
    y = torch.tensor([2, 0, 1, 2])
    loss, terms = m.loss(b, text, y)

    theta_o = m.O_proj(m.O_enc(torch.cat([b.video, b.audio], 1)))
    theta_w_all = m.W_proj(m.W_enc(text))
    scores = theta_o @ theta_w_all.T
    ce = sum(-torch.log_softmax(scores[i], 0)[y[i]] for i in range(4)) / 4
    w = m.W_enc(text[y])
    theta_w = m.W_proj(w)
    reg = sum(((theta_o[i] - theta_w[i]) ** 2).sum() for i in range(4)) / theta_o.numel()
    rho_o, rho_w = m.D_o(theta_o), m.D_w(theta_w)
    rec = ((w - rho_o) ** 2).mean() + ((w - rho_w) ** 2).mean()
    torch.testing.assert_close(terms["ce"], ce)
    torch.testing.assert_close(terms["reg"], reg)
    torch.testing.assert_close(terms["rec"], rec)
    torch.testing.assert_close(loss, ce + reg + rec)
