"""Reference mode: one test per reproduced reference behaviour (config.REFERENCE_BEHAVIOURS), each of
which fails if the switch stops doing it, and the config rules around the switch."""
from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import avgzsl.protocol as protocol
from avgzsl import reference
from avgzsl.config import REFERENCE_BEHAVIOURS, RunConfig, load_config, resolve_config
from avgzsl.data.types import FeatureDims
from avgzsl.errors import ConfigError
from avgzsl.metrics import Nearest, gzsl_metrics
from avgzsl.models import build_model
from avgzsl.models.base import Batch
from avgzsl.train import SplitTensors, train_one_epoch
from conftest import tiny_benchmark
from test_protocol import FAST, record_training, scripted_eval

pytestmark = pytest.mark.usefixtures("one_thread")
REF = FAST + ["reference_mode=true"]


def _off(*names):
    return REF + [f"reference_off=[{', '.join(names)}]"]


# ------------------------------------------------------------------------------------------ config

def test_reference_mode_sets_the_three_existing_switches_and_reference_off_keeps_ours():
    cfg = load_config(None, REF)
    assert (cfg.text_alignment, cfg.stage2_lr, cfg.fused_adam) == ("reference_order", "reference", False)
    assert cfg.reference() == frozenset(REFERENCE_BEHAVIOURS)
    ours = load_config(None, _off("text_pairing", "stage2_scheduler", "per_tensor_adam"))
    assert (ours.text_alignment, ours.stage2_lr, ours.fused_adam) == ("by_name", "replay", True)
    assert load_config(None, FAST).reference() == frozenset()


def test_a_setting_that_contradicts_reference_mode_is_an_error_naming_reference_off():
    with pytest.raises(ConfigError, match=r"fused_adam=True contradicts reference_mode.*per_tensor_adam"):
        load_config(None, REF + ["fused_adam=true"])
    with pytest.raises(ConfigError, match=r"clipclap.text_part.*contradicts"):
        load_config(None, REF + ["clipclap.modalities=audio", "clipclap.text_part=all"])
    with pytest.raises(ConfigError, match=r"unknown behaviour.*'nope'"):
        load_config(None, _off("nope"))
    with pytest.raises(ConfigError, match=r"reference_off is set but reference_mode is false"):
        load_config(None, FAST + ["reference_off=[double_bn]"])


def test_a_resolved_reference_config_round_trips_and_the_presets_resolve():
    cfg = load_config(None, REF + ["clipclap.modalities=video"])
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    for ds in ("ucf", "activitynet", "vggsound"):
        ref, ours = (load_config(resolve_config(f"clipclap_{ds}{x}")) for x in ("_reference", ""))
        assert ref.reference_mode and not ours.reference_mode
        assert (ref.epochs, ref.lr) == (ours.epochs, ours.lr)  # the same run, only the behaviours differ


# ------------------------------------------------------------------------------------- rng_stream

class _WeightedBatches:
    """The reference's batch sampler as its FINDINGS describe it: torch.multinomial(weights, bs, True)
    per batch on the global generator, mapped to the video order."""

    def __init__(self, order, weights, n_batches, bs):
        self.order, self.weights, self.n, self.bs = order, weights, n_batches, bs

    def __iter__(self):
        for _ in range(self.n):
            yield self.order[torch.multinomial(self.weights, self.bs, True)].tolist()

    def __len__(self):
        return self.n


def _real_loader(loader: reference.ReferenceLoader, workers: int = 4) -> DataLoader:
    sampler = _WeightedBatches(loader.order, loader.weights, loader.n_batches, loader.bs)
    return DataLoader(list(range(len(loader.order))), batch_sampler=sampler, num_workers=workers,  # as main.py
                      collate_fn=torch.tensor, multiprocessing_context="fork")


def test_reference_loader_draws_what_a_real_four_worker_dataloader_draws():
    labels = np.repeat([3, 0, 1, 2], [5, 2, 7, 4])
    rank = np.array([2, 0, 3, 1])  # our id -> the reference's
    loader = reference.ReferenceLoader(labels, rank, n_batches=12, bs=5)

    def consume(batches):  # each step draws from the same generator (its dropout masks), between batches
        return [(b, torch.rand(2)) for b in batches]

    torch.manual_seed(7)
    real = consume(_real_loader(loader))
    after_real = torch.get_rng_state()
    torch.manual_seed(7)
    ours = consume(loader.epoch())
    assert len(ours) == 12
    assert all(torch.equal(a, b) and torch.equal(x, y) for (a, x), (b, y) in zip(real, ours))
    assert torch.equal(torch.get_rng_state(), after_real)  # the same draws, in the same number
    # videos ordered by the reference's class id (0, 3, 1, 2 in ours), file order within a class
    assert labels[loader.order.numpy()].tolist() == [1] * 7 + [3] * 5 + [0] * 2 + [2] * 4
    assert np.allclose(loader.weights.numpy(), np.repeat(0.25 / np.array([7, 5, 2, 4]), [7, 5, 2, 4]))


def test_validation_pass_draws_like_the_reference_val_step():
    """val_step iterates its sampled loader; at the first batch its metric iterates a sequential
    evaluation loader (src/train.py:val_step -> evaluate_dataset_baseline)."""
    labels = np.repeat([0, 1, 2], 6)
    loader = reference.ReferenceLoader(labels, np.arange(3), n_batches=15, bs=4)
    torch.manual_seed(3)
    real = []
    for i, b in enumerate(_real_loader(loader)):
        real.append(b)
        if i == 0:
            list(DataLoader(list(range(10)), batch_size=4, num_workers=4, multiprocessing_context="fork"))
    after_real = torch.get_rng_state()
    torch.manual_seed(3)
    ours = loader.validation_pass()
    assert len(ours) == 15 and all(torch.equal(a, b) for a, b in zip(real, ours))
    assert torch.equal(torch.get_rng_state(), after_real)


def test_rng_stream_trains_on_the_reference_batches_with_ce_rows_in_its_class_order(monkeypatch):
    bench = tiny_benchmark()
    bench.class_names = ["b", "a", "D", "c"] + [f"z{i}" for i in range(6)]  # case-sensitive: D < a < b < c
    calls = record_training(monkeypatch)
    protocol.run_protocol(load_config(None, REF), bench)
    rows = calls[0].class_text
    want = bench.text[[2, 1, 0, 3]]  # stage-1 classes 0-3 in the reference's order
    assert torch.allclose(rows, torch.from_numpy(want))
    calls.clear()
    protocol.run_protocol(load_config(None, _off("rng_stream")), bench)
    assert torch.allclose(calls[0].class_text, torch.from_numpy(bench.text[[0, 1, 2, 3]]))


def test_rng_stream_changes_the_batches_and_stays_deterministic():
    a = protocol.run_protocol(load_config(None, REF), tiny_benchmark())
    b = protocol.run_protocol(load_config(None, REF), tiny_benchmark())
    c = protocol.run_protocol(load_config(None, _off("rng_stream")), tiny_benchmark())
    assert a["test"] == b["test"]
    assert a["curves"]["val"] != c["curves"]["val"]


# --------------------------------------------------------------------------- call_order, double_bn

def _clipclap(**kw):
    dims = FeatureDims(audio=12, video=8, text=10)
    return build_model("clipclap", {"hidden": 16, "dim_out": 8, **kw}, dims)


def _batch(B=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (Batch(torch.randn(B, 12, generator=g), torch.randn(B, 8, generator=g)),
            torch.randn(4, 10, generator=g), torch.tensor([0, 1, 2, 3, 0, 1]))


def test_call_order_keeps_the_loss_and_gradients_but_updates_batchnorm_in_the_reference_order():
    zero = {"dropout_encoder": 0.0, "dropout_decoder": 0.0, "dropout_text": 0.0}
    torch.manual_seed(0)
    ours, theirs = _clipclap(**zero), _clipclap(**zero)
    theirs.load_state_dict(ours.state_dict())
    fresh = copy.deepcopy(theirs.W_enc)
    batch, text, target = _batch()
    l1, _ = ours.loss(batch, text, target)
    l2, _ = theirs.reference_loss(batch, text, target)
    l1.backward(), l2.backward()
    assert torch.allclose(l1, l2, atol=1e-6)
    for (n, p1), p2 in zip(ours.named_parameters(), theirs.parameters()):
        assert torch.allclose(p1.grad, p2.grad, atol=1e-5), n
    # W_enc's BatchNorm: ours sees the K class texts, then the batch texts; the reference the reverse
    bn1, bn2 = ours.W_enc[1], theirs.W_enc[1]
    assert not torch.allclose(bn1.running_mean, bn2.running_mean)
    with torch.no_grad():
        fresh(text[target]), fresh(text)  # the reference's order, by hand
    assert torch.allclose(fresh[1].running_mean, bn2.running_mean, atol=1e-6)


def test_double_bn_updates_the_four_blocks_batchnorm_twice_per_step():
    torch.manual_seed(0)
    bench = tiny_benchmark()
    counts = {}
    for name, hooks in (("ours", (None, None)), ("reference", None)):
        torch.manual_seed(0)
        model = _clipclap()
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        run = reference.ReferenceRun(frozenset(REFERENCE_BEHAVIOURS), np.arange(10), "clipclap-gzsl",
                                     np.zeros(1, np.int64), 3, 8)
        loss_fn, after = run.step_hooks(model) if hooks is None else hooks
        data = SplitTensors.from_split(bench.splits["stage_1_train"])
        local = torch.full((10,), -1, dtype=torch.long)
        local[:4] = torch.arange(4)
        batches = torch.randint(len(data), (3, 8))
        train_one_epoch(model, opt, data, batches, torch.from_numpy(bench.text[:4]), local,
                        loss_fn=loss_fn, after_step=after)
        counts[name] = {b: int(getattr(model, b)[1].num_batches_tracked) for b in ("O_enc", "W_enc", "D_o")}
    # per step: ours O_enc 1, W_enc 2 (class texts, batch texts); the reference one more for O_enc, W_enc
    assert counts["ours"] == {"O_enc": 3, "W_enc": 6, "D_o": 3}
    assert counts["reference"] == {"O_enc": 6, "W_enc": 9, "D_o": 3}
    off = reference.ReferenceRun(frozenset(REFERENCE_BEHAVIOURS) - {"double_bn", "call_order"}, np.arange(10),
                                 "clipclap-gzsl", np.zeros(1, np.int64), 3, 8)
    assert off.step_hooks(model) == (None, None)


def test_avca_reference_passes_reach_its_batchnorm_with_our_gradients():
    dims = FeatureDims(audio=12, video=8, text=10)
    zero = {"dropout_encoder": 0.0, "dropout_proj": 0.0, "dropout_decoder": 0.0, "d_model": 12, "enc_hidden": 16,
            "dec_hidden": 16, "dim_out": 8, "heads": 2, "dim_head": 4, "mlp_dim": 8}
    torch.manual_seed(0)
    ours, theirs = build_model("avca", zero, dims), build_model("avca", zero, dims)
    theirs.load_state_dict(ours.state_dict())
    batch, text, target = _batch()
    torch.manual_seed(1)
    l1, _ = ours.loss(batch, text, target)
    torch.manual_seed(1)
    l2, _ = theirs.reference_loss(batch, text, target)
    l1.backward(), l2.backward()
    assert torch.allclose(l1, l2, atol=1e-5)
    for (n, p1), p2 in zip(ours.named_parameters(), theirs.parameters()):
        assert torch.allclose(p1.grad, p2.grad, atol=1e-4), n
    tracked = lambda m, net: int(getattr(m, net)[1].num_batches_tracked)  # noqa: E731
    # A_enc: positives (+ negatives); D: θa, θv, θw (+ their negatives); A_proj: + the reconstruction
    assert [tracked(ours, k) for k in ("A_enc", "D", "A_proj", "W_proj")] == [1, 3, 1, 1]
    assert [tracked(theirs, k) for k in ("A_enc", "D", "A_proj", "W_proj")] == [2, 6, 3, 2]
    theirs.reference_second_forward(batch, text, target)
    assert [tracked(theirs, k) for k in ("A_enc", "D", "A_proj", "W_proj")] == [3, 6, 4, 3]


# ------------------------------------------------------------------------------- best_epoch_rule

@pytest.mark.parametrize("hms, ours, theirs", [([0.0, 0.0, 0.0, 0.0], 0, 3), ([0.0, 0.3, 0.0, 0.3], 1, 1),
                                                ([0.2, 0.0, 0.0, 0.1], 0, 0)])
def test_best_epoch_rule_while_hm_is_zero(monkeypatch, tiny_bench, hms, ours, theirs):
    scripted_eval(monkeypatch, hms * 2, [0.5] * 8)
    assert protocol.run_protocol(load_config(None, _off("stage2_scheduler")), tiny_bench)["best_epoch"] == theirs
    scripted_eval(monkeypatch, hms, [0.5] * 4)
    assert protocol.run_protocol(load_config(None, _off("best_epoch_rule", "stage2_scheduler")),
                                 tiny_bench)["best_epoch"] == ours


# ---------------------------------------------------------------------------- metric_arithmetic

def test_float32_metrics_match_hand_arithmetic():
    # 3 classes (0, 1 seen; 2 unseen), 7 videos; at beta 0 the predictions are the nearest columns
    near = Nearest(np.array([0, 0, 1, 1, 0, 1, 0]), np.zeros(7, np.float32), np.full(7, 2), np.ones(7, np.float32))
    labels = np.array([0, 0, 0, 1, 1, 2, 2])
    r = gzsl_metrics(near, labels, np.arange(3), np.array([True, True, False]), np.array([0.0]), "float32")
    s = np.float32((np.float32(2) / np.float32(3) + np.float32(1) / np.float32(2)) / np.float32(2))
    assert r.seen[0] == float(s) and r.unseen[0] == 0.0 and r.hm[0] == 0.0
    r64 = gzsl_metrics(near, labels, np.arange(3), np.array([True, True, False]), np.array([0.0]))
    assert r64.seen[0] == (2 / 3 + 1 / 2) / 2 != r.seen[0]
    # at beta 2 everything goes unseen: S 0, U 1, HM = 0 / (1 + eps)
    r = gzsl_metrics(near, labels, np.arange(3), np.array([True, True, False]), np.array([2.0]), "float32")
    assert (r.seen[0], r.unseen[0], r.hm[0]) == (0.0, 1.0, 0.0)


def test_metric_arithmetic_uses_the_reference_beta_grid_and_test_beta(tiny_bench):
    cfg = load_config(None, REF)
    assert np.array_equal(cfg.betas(), torch.linspace(0, 5, 76).double().numpy())
    assert not np.array_equal(load_config(None, FAST).betas(), cfg.betas())
    r = protocol.run_protocol(cfg, tiny_bench)
    assert r["test_beta"] == (3 * r["val"]["beta"] + 1e-10) / 3 != r["val"]["beta"]
    assert reference.test_beta([0.0, 0.0, 0.0], "avca-gzsl") == 1e-10
    assert reference.test_beta([0.2, 0.4, 0.6], "avca-gzsl") == pytest.approx(0.4)


# ------------------------------------------------------------------------------ stage2_classes

def test_stage2_classes_come_from_the_stage1_lists(monkeypatch):
    bench = tiny_benchmark()
    s2 = bench.splits["stage_2_train"]
    bench.splits["stage_2_train"] = dataclasses.replace(s2, classes=np.append(s2.classes, 8))  # a stray class
    for sets, want in ((REF, 6), (_off("stage2_classes"), 7)):
        scripted_eval(monkeypatch, [0.5, 0.1, 0.1, 0.1] * 2, [0.0] * 8)
        calls = record_training(monkeypatch)
        protocol.run_protocol(load_config(None, sets), bench)
        assert [c.n_classes for c in calls if c.desc.startswith("stage 2")][0] == want


# ----------------------------------------------------------------------- modality_text, bn_scope

@pytest.mark.parametrize("model", ["clipclap", "mft"])
@pytest.mark.parametrize("modality, part, cols", [("audio", "clap", slice(512, 1536)), ("video", "clip", slice(0, 512)),
                                                  ("both", "all", slice(0, 1536))])
def test_modality_ablations_read_the_reference_text_in_reference_mode(model, modality, part, cols):
    cfg = load_config(None, [f"model={model}", f"{model}.modalities={modality}", "reference_mode=true"])
    assert cfg.model_cfg.text_part == part
    assert load_config(None, [f"model={model}", f"{model}.modalities={modality}"]).model_cfg.text_part == "all"
    net = build_model(model, cfg.model_cfg, FeatureDims(audio=1024, video=512, text=1536)).eval()
    text = torch.randn(5, 1536)
    other = text.clone()
    outside = torch.ones(1536, dtype=torch.bool)
    outside[cols] = False
    other[:, outside] += 1.0  # the columns it must not read
    assert torch.equal(net.embed_classes(text), net.embed_classes(other))
    if part != "all":
        changed = text.clone()
        changed[:, cols] += 1.0
        assert not torch.allclose(net.embed_classes(text), net.embed_classes(changed))


def test_bn_scope_keeps_the_output_batchnorm_in_reference_mode():
    def bns(sets):
        cfg = load_config(None, sets)
        m = build_model("clipclap", cfg.model_cfg, FeatureDims(audio=12, video=8, text=10))
        return {k: sum(isinstance(x, torch.nn.BatchNorm1d) for x in getattr(m, k)) for k in ("O_proj", "W_proj")}

    assert bns(["clipclap.batch_norm=false"]) == {"O_proj": 0, "W_proj": 0}
    assert bns(["clipclap.batch_norm=false", "reference_mode=true"]) == {"O_proj": 1, "W_proj": 1}
    assert bns(["clipclap.batch_norm=true", "reference_mode=true"]) == {"O_proj": 2, "W_proj": 1}


# ------------------------------------------------------------------------ mode_betas, hard_attention

CJME = ["model=cjme", "cjme.hidden=16", "cjme.dim_out=8"]


def test_cjme_test_beta_is_the_mean_of_its_three_mode_betas(monkeypatch, tiny_bench):
    seen_calls = []
    real = protocol.evaluate

    def spy(*a, **kw):
        res = real(*a, **kw)
        seen_calls.append((kw.get("distance_fn") is not None, res[0].beta))
        return res

    monkeypatch.setattr(protocol, "evaluate", spy)
    r = protocol.run_protocol(load_config(None, REF[:3] + CJME + ["lr=1e-3", "reference_mode=true"]), tiny_bench)
    a, v, both = r["val_mode_betas"]
    assert both == r["val"]["beta"]
    assert r["test_beta"] == (a + v + both) / 3 or r["test_beta"] == 1e-10
    assert sum(1 for single, _ in seen_calls if single) >= 2  # audio and video modes were evaluated
    ours = protocol.run_protocol(load_config(None, REF[:3] + CJME + ["lr=1e-3"]), tiny_bench)
    assert ours["val_mode_betas"] is None and ours["test_beta"] == ours["val"]["beta"]


def test_cjme_mode_distances_are_each_modality_alone():
    m = build_model("cjme", {"hidden": 16, "dim_out": 8}, FeatureDims(audio=12, video=8, text=10)).eval()
    batch, text, _ = _batch()
    emb = m.embed_classes(text)
    a, v = m._embed(batch)
    d = m.mode_distances(batch, emb)
    assert torch.allclose(d["audio"], torch.cdist(a, emb)) and torch.allclose(d["video"], torch.cdist(v, emb))


def test_hard_attention_in_reference_mode():
    assert load_config(None, CJME + ["reference_mode=true"]).model_cfg.eval_attention == "hard"
    assert load_config(None, CJME).model_cfg.eval_attention == "soft"
    assert load_config(None, CJME + ["reference_mode=true", "reference_off=[hard_attention]"]
                       ).model_cfg.eval_attention == "soft"
