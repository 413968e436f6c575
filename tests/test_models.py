"""Every registered model: forward, backward, finite values, checkpoint round trip, averaged and temporal."""
import pytest
import torch

from avgzsl.checkpoint import load_model, save_checkpoint
from avgzsl.data.types import FeatureDims
from avgzsl.models import build_model, list_models
from avgzsl.models.base import Batch

DIMS = dict(audio=12, video=8, text=10)


def make_batch(B: int, temporal: bool, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    if not temporal:
        return Batch(torch.randn(B, DIMS["audio"], generator=g), torch.randn(B, DIMS["video"], generator=g))
    T = 5
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    mask = torch.arange(T)[None, :] < lengths[:, None]  # (B, T)
    times = torch.arange(T, dtype=torch.float32).expand(B, T) * mask
    return Batch(torch.randn(B, T, DIMS["audio"], generator=g) * mask[..., None],
                 torch.randn(B, T, DIMS["video"], generator=g) * mask[..., None], mask, mask.clone(), times, times.clone())


@pytest.mark.parametrize("temporal", [False, True], ids=["averaged", "temporal"])
@pytest.mark.parametrize("name", list_models())
def test_model_contract(name, temporal, tmp_path):
    torch.manual_seed(0)
    dims = FeatureDims(**DIMS, temporal=temporal)
    model = build_model(name, None, dims)
    batch = make_batch(6, temporal)
    class_text = torch.nn.functional.normalize(torch.randn(4, DIMS["text"]), dim=1)
    target = torch.tensor([0, 1, 2, 3, 0, 1])
    model.train()
    loss, terms = model.loss(batch, class_text, target)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert "total" in terms and all(torch.isfinite(torch.as_tensor(v)) for v in terms.values())
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(g is None or torch.isfinite(g).all() for g in grads)

    model.eval()
    with torch.no_grad():
        cls = model.embed_classes(class_text)
        dist = model.distances(batch, cls)
    assert dist.shape == (6, 4) and torch.isfinite(dist).all()

    path = save_checkpoint(tmp_path / "m.pt", model, {"model": name}, {"name": "test", "dim": DIMS["text"]})
    again, ckpt = load_model(path)  # no flags: name, config and dims come from the file
    assert ckpt["model"] == name and type(again) is type(model)
    with torch.no_grad():
        assert torch.equal(again.distances(batch, again.embed_classes(class_text)), dist)
