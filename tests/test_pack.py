"""Packed runs (pack.py, stacked.py): one step of each packed member equals its solo step (every registered model),
a pack of one is bit-identical to the solo protocol, members keep their own streams and run folders,
and the models declared packable really take the vmapped path."""
import copy
import json

import numpy as np
import pytest
import torch

from avgzsl import pack as packing
from avgzsl import stacked
from avgzsl.config import load_config
from avgzsl.data.types import FeatureDims
from avgzsl.models import build_model, get_model_class, list_models
from avgzsl.protocol import run_protocol
from avgzsl.train import solo_step
from conftest import tiny_benchmark
from test_models import DIMS, make_batch

pytestmark = pytest.mark.usefixtures("one_thread")


def members(name: str, k: int, temporal: bool = False):
    """k models of `name` from seeds 0..k-1, each with its Adam and its post-init RNG state."""
    dims = FeatureDims(**DIMS, temporal=temporal)
    out = []
    for seed in range(k):
        torch.manual_seed(seed)
        model = build_model(name, None, dims).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=model.adam_betas, weight_decay=1e-4)
        rng = stacked.MemberRNG(torch.device("cpu"))
        rng.capture()
        out.append((model, opt, rng))
    return out


def inputs(k: int, temporal: bool = False):
    """Each member's own batch, class texts and targets (they differ, as different seeds' batches do)."""
    g = torch.Generator().manual_seed(7)
    rows = []
    for i in range(k):
        text = torch.nn.functional.normalize(torch.randn(4, DIMS["text"], generator=g), dim=1)
        target = torch.randint(0, 4, (8,), generator=g)
        target[:4] = torch.arange(4)  # every class present (some losses need positives and negatives)
        rows.append((make_batch(8, temporal, seed=10 + i), text, target))
    return rows


def solo_reference(name: str, k: int, temporal: bool = False):
    out = []
    for (model, opt, rng), (batch, text, target) in zip(members(name, k, temporal), inputs(k, temporal)):
        torch.set_rng_state(rng.cpu.get_state())
        loss, _ = solo_step(model, opt, batch, text, target)
        out.append((float(loss), {n: p.detach().clone() for n, p in model.state_dict().items()},
                    torch.get_rng_state(), grads(model)))
    return out


def grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def packed_round(name: str, k: int, vmap: bool = True, temporal: bool = False):
    """One round of a k-member pack, run in this thread (what the rendezvous does once all members wait)."""
    ms = members(name, k, temporal)
    pk = packing.Pack(k, torch.device("cpu"), vmap=vmap)
    reqs = [stacked.StepRequest(m, o, b, t, y, None, r) for (m, o, r), (b, t, y) in zip(ms, inputs(k, temporal))]
    pk._run_group(reqs)
    return [(float(r.result[0]), {n: p.detach().clone() for n, p in r.model.state_dict().items()},
             r.rng.cpu.get_state(), grads(r.model)) for r in reqs], pk.stats


@pytest.mark.parametrize("name", list_models())
def test_each_packed_member_steps_as_its_solo_run(name):
    """k = 3: loss, every gradient, BatchNorm statistic and updated weight within 1e-5 of the solo step,
    and each member's generator advanced exactly as its solo run's (same dropout draws).

    Weights are compared where the gradient is above float noise: Adam's first update is lr * sign(g),
    and a bias in front of a BatchNorm has a true gradient of 0, so there the sign is the noise's."""
    solo = solo_reference(name, 3)
    packed, stats = packed_round(name, 3)
    assert stats["vmapped_steps"] + stats["solo_steps"] == 3
    for (l0, w0, r0, g0), (l1, w1, r1, g1) in zip(solo, packed):
        assert abs(l0 - l1) <= 1e-5 * max(1.0, abs(l0))
        assert g0.keys() == g1.keys()
        for n in g0:
            scale = float(g0[n].abs().max())
            torch.testing.assert_close(g1[n], g0[n], rtol=1e-4, atol=1e-6 + 1e-5 * scale)
        for n in w0:
            if not w0[n].dtype.is_floating_point:
                assert torch.equal(w1[n], w0[n]), n
                continue
            keep = (g0[n].abs() > 1e-3 * float(g0[n].abs().max()) + 1e-6) if n in g0 \
                else torch.ones_like(w0[n], dtype=bool)
            torch.testing.assert_close(w1[n][keep], w0[n][keep], rtol=1e-5, atol=1e-5)
        assert torch.equal(r0, r1), "the member's RNG stream moved differently from its solo run's"


@pytest.mark.parametrize("name", list_models())
def test_packable_models_take_the_vmapped_path(name):
    """The class flag is a measured fact: packable models vmap (no fallback), the others fall back."""
    _, stats = packed_round(name, 2)
    expect = get_model_class(name).packable
    assert (stats["vmapped_steps"] == 2) == expect and (stats["solo_steps"] == 2) == (not expect), stats


def test_dropout_masks_come_from_each_members_stream():
    """A control for the step test: with the members' streams swapped, the packed step is no longer
    the solo one (so the test above would catch masks drawn from the wrong generator)."""
    solo = solo_reference("clipclap", 2)
    ms = members("clipclap", 2)
    ms[0], ms[1] = (ms[0][0], ms[0][1], ms[1][2]), (ms[1][0], ms[1][1], ms[0][2])
    pk = packing.Pack(2, torch.device("cpu"))
    reqs = [stacked.StepRequest(m, o, b, t, y, None, r) for (m, o, r), (b, t, y) in zip(ms, inputs(2))]
    pk._run_group(reqs)
    assert pk.stats["vmapped_steps"] == 2
    assert abs(float(reqs[0].result[0]) - solo[0][0]) > 1e-4


def test_packed_attention_equals_torch_multihead_attention():
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(16, 4, dropout=0.0, batch_first=True).eval()
    ours = copy.deepcopy(mha)
    ours.__class__ = stacked._PackedAttention
    q, kv = torch.randn(3, 2, 16), torch.randn(3, 5, 16)
    pad = torch.tensor([[False] * 5, [False, False, False, True, True], [False] * 4 + [True]])
    block = torch.zeros(2, 5, dtype=torch.bool)
    block[0, 1] = True
    want, _ = mha(q, kv, kv, key_padding_mask=pad, attn_mask=block, need_weights=False)
    got, _ = ours(q, kv, kv, key_padding_mask=pad, attn_mask=block, need_weights=False)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


FAST = ["epochs=3", "n_batches=3", "bs=8", "lr=1e-3", "clipclap.hidden=16", "clipclap.dim_out=8"]


def test_pack_of_one_is_bit_identical_to_the_solo_protocol(tmp_path):
    bench = tiny_benchmark()
    cfg = load_config(None, FAST)
    solo = run_protocol(cfg, bench, tmp_path / "solo")
    (packed,) = packing.run_packed([cfg], bench, [tmp_path / "packed"])
    assert json.dumps(packed, sort_keys=True) == json.dumps(solo, sort_keys=True)
    for name in ("results.json", "log.jsonl", "steps.jsonl"):
        a, b = (tmp_path / d / name for d in ("solo", "packed"))
        if name == "log.jsonl":  # wall times differ; everything else must not
            strip = lambda p: [{k: v for k, v in json.loads(line).items() if not k.endswith("_s")}
                               for line in p.read_text().splitlines()]
            assert strip(a) == strip(b)
        else:
            assert a.read_text() == b.read_text(), name
    a = torch.load(tmp_path / "solo" / "checkpoints" / "stage2_final.pt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "packed" / "checkpoints" / "stage2_final.pt", weights_only=False)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)


MFT_TINY = ["epochs=3", "n_batches=3", "bs=8", "lr=1e-3", "model=mft", "mft.d_model=16", "mft.heads=2",
            "mft.depth=1", "mft.dim_out=8", "mft.hidden=16"]


def first_epoch_losses(run_dir):
    row = json.loads((run_dir / "steps.jsonl").read_text().splitlines()[0])
    return np.asarray(row["terms"]["total"])


@pytest.mark.parametrize("model", ["clipclap", "mft"])
def test_packed_seeds_are_their_solo_runs_and_repeat(tmp_path, model):
    """Three seeds packed: each member's run folder is its own (its seed, a complete results.json), its
    first epoch's step losses follow its solo run's to float noise (later epochs drift like two BLAS
    builds: see pack.py), the pack really vmapped, and a second identical pack repeats bit for bit."""
    bench = tiny_benchmark()
    sets = MFT_TINY if model == "mft" else FAST
    cfgs = [load_config(None, sets + [f"seed={s}"]) for s in range(3)]
    for s, c in enumerate(cfgs):
        run_protocol(c, bench, tmp_path / f"solo{s}")
    stats: dict = {}
    first = packing.run_packed(cfgs, bench, [tmp_path / f"a{s}" for s in range(3)], stats=stats)
    again = packing.run_packed(cfgs, bench, [tmp_path / f"b{s}" for s in range(3)])
    # every stage-1 step vmapped (3 epochs x 3 batches x 3 members); stage 2 steps solo only where one
    # member is left (stage-2 lengths follow each member's best epoch)
    assert stats["vmapped_steps"] >= 27, stats
    assert json.dumps(first, sort_keys=True) == json.dumps(again, sort_keys=True)
    for s in range(3):
        on_disk = json.loads((tmp_path / f"a{s}" / "results.json").read_text())
        assert on_disk["seed"] == s == first[s]["seed"] and on_disk["test"] == first[s]["test"]
        np.testing.assert_allclose(first_epoch_losses(tmp_path / f"a{s}"), first_epoch_losses(tmp_path / f"solo{s}"),
                                   rtol=1e-4, atol=1e-5)
    # a control: the members differ from each other (their seeds reach the model and the sampler)
    assert not np.allclose(first_epoch_losses(tmp_path / "a0"), first_epoch_losses(tmp_path / "a1"))


def test_a_failing_member_does_not_hang_the_pack(tmp_path):
    bench = tiny_benchmark()
    good = load_config(None, FAST)
    bad = load_config(None, FAST + ["seed=1", "lr=1e9"])  # diverges: NonFiniteLoss in its first epoch
    with pytest.raises(Exception, match="nan|inf"):
        packing.run_packed([good, bad], bench, [tmp_path / "a", tmp_path / "b"])
    assert (tmp_path / "a" / "results.json").exists()  # the healthy member finished its run


def test_reference_mode_is_refused():
    with pytest.raises(Exception, match="reference"):
        packing.run_packed([load_config(None, FAST + ["reference_mode=true"])], tiny_benchmark())
