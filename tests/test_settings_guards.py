"""Settings and checkpoints (Reliability II, issue 13), one level below the CLI: every numeric setting of
every config dataclass declares its range and is checked before anything runs; YAML aliases are refused;
a non-finite loss stops training with the run still resumable; a checkpoint is checked against the model
it rebuilds before anything is allocated. The CLI-level cases are at the end of tests/test_bad_data.py."""
from __future__ import annotations

import dataclasses
import math
import os
import typing

import numpy as np
import pytest
import torch

from avgzsl.checkpoint import load_model, read_checkpoint, save_checkpoint
from avgzsl.config import RunConfig, load_config, parse_set, read_yaml
from avgzsl.errors import AvgzslError, ConfigError
from avgzsl.models import build_model, get_model_class, list_models, model_config
from avgzsl.protocol import run_protocol

pytestmark = pytest.mark.usefixtures("one_thread")


def numeric_fields(dc_type):
    """(field, base type) of every int/float setting (bool is not a number here)."""
    hints = typing.get_type_hints(dc_type)
    out = []
    for f in dataclasses.fields(dc_type):
        tp = hints[f.name]
        options = typing.get_args(tp) or (tp,)
        num = [t for t in options if t in (int, float)]
        if num:
            out.append((f, num[0]))
    return out


CONFIGS = [("run", RunConfig)] + [(name, get_model_class(name).Config) for name in list_models()]


# ---- case 7: every numeric setting declares its range ---------------------------------------------------

@pytest.mark.parametrize("name,dc_type", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_every_numeric_setting_declares_its_range(name, dc_type):
    """A new model (or a new setting) cannot forget: each int/float field carries metadata["range"]."""
    missing = [f.name for f, _ in numeric_fields(dc_type) if "range" not in f.metadata]
    assert not missing, f"{name}: numeric settings without a declared range: {missing}"


@pytest.mark.parametrize("name,dc_type", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_defaults_are_inside_their_ranges(name, dc_type):
    if name == "run":
        RunConfig().validate()
    else:
        build_model(name, model_config(name), dict(audio=12, video=8, text=10))


def outside_values(f, tp):
    """Values just outside the declared range (an open bound itself), plus NaN/inf for floats."""
    rng = f.metadata["range"]
    eps = 1 if tp is int else 1e-6
    bad = []
    if math.isfinite(rng.lo):
        bad.append(rng.lo if rng.lo_open else rng.lo - eps)
    if math.isfinite(rng.hi):
        bad.append(rng.hi if rng.hi_open else rng.hi + eps)
    if tp is float:
        bad += [float("nan"), float("inf"), float("-inf")]
    return [tp(v) for v in bad]


MODEL_CASES = [(name, f.name, v) for name, dc in CONFIGS if name != "run"
               for f, tp in numeric_fields(dc) if "range" in f.metadata for v in outside_values(f, tp)]
RUN_CASES = [(f.name, v) for f, tp in numeric_fields(RunConfig) if "range" in f.metadata
             for v in outside_values(f, tp)]


@pytest.mark.parametrize("model,key,value", MODEL_CASES, ids=[f"{m}.{k}={v!r}" for m, k, v in MODEL_CASES])
def test_out_of_range_model_setting_is_refused(model, key, value):
    with pytest.raises(ConfigError, match=rf"{model}\.{key}=") as e:
        load_config(None, {"model": model, model: {key: value}})
    assert len(str(e.value)) < 300 and "\n" not in str(e.value)


@pytest.mark.parametrize("key,value", RUN_CASES, ids=[f"{k}={v!r}" for k, v in RUN_CASES])
def test_out_of_range_run_setting_is_refused(key, value):
    with pytest.raises(ConfigError, match=rf"\b{key}="):
        load_config(None, {key: value})


@pytest.mark.parametrize("sets,key", [(["lr=nan"], "lr"), (["lr=inf"], "lr"), (["lr=.inf"], "lr"),
                                      (["weight_decay=-1"], "weight_decay"), ([f"seed={2**64}"], "seed"),
                                      ([f"seed={2**63}"], "seed"), (["seed=-1"], "seed"),
                                      (["clipclap.dropout_encoder=1.5"], "clipclap.dropout_encoder"),
                                      (["clipclap.hidden=-4"], "clipclap.hidden"),
                                      (["model=mft", "mft.kl_tau=nan"], "mft.kl_tau"),
                                      (["n_batches=100000", "bs=65536"], "n_batches")])
def test_the_issues_settings_are_refused_with_their_key(sets, key):
    with pytest.raises(ConfigError, match=rf"^(--set|config): {key}\b") as e:  # config: the merged check
        load_config(None, sets)
    assert "Traceback" not in str(e.value)


def test_the_largest_allowed_seed_runs(tiny_bench):
    """The seed's upper bound is one the whole protocol takes (torch, numpy, the sampler, results.json)."""
    cfg = load_config(None, [f"seed={2**63 - 1}", "epochs=1", "n_batches=2", "bs=8", "clipclap.hidden=16"])
    assert run_protocol(cfg, tiny_bench)["seed"] == 2**63 - 1


def test_settings_built_in_python_are_checked_too():
    """The API path: a dataclass built by hand is checked where it is used, not only dicts from YAML."""
    with pytest.raises(ConfigError, match=r"lr=nan"):
        RunConfig(lr=float("nan")).validate()
    cfg = get_model_class("clipclap").Config(hidden=-4)
    with pytest.raises(ConfigError, match=r"clipclap\.hidden=-4"):
        build_model("clipclap", cfg, dict(audio=12, video=8, text=10))


def test_a_bad_setting_in_a_file_names_the_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("model: clipclap\nlr: .nan\nclipclap:\n  hidden: 64\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: lr=nan"):
        load_config(p)
    p.write_text("model: clipclap\nclipclap:\n  dropout_text: 1.0\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: clipclap\.dropout_text=1\.0 .*\[0, 1\)"):
        load_config(p)


# ---- case 3: YAML aliases, long values --------------------------------------------------------------------

BOMB = """model: clipclap
clipclap:
  hidden: [&a [lol,lol,lol,lol,lol,lol,lol,lol,lol], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a],
           &c [*b,*b,*b,*b,*b,*b,*b,*b,*b], &d [*c,*c,*c,*c,*c,*c,*c,*c,*c], &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]]
"""


def test_yaml_aliases_are_refused_in_config_files(tmp_path):
    p = tmp_path / "bomb.yaml"
    p.write_text(BOMB)
    with pytest.raises(ConfigError) as e:
        read_yaml(p)
    assert str(e.value) == f"{p}: YAML aliases (&/*) are not allowed in configs"
    p.write_text("name: &x hello\n")  # an anchor alone is refused too: it only exists to be aliased
    with pytest.raises(ConfigError, match=r"YAML aliases \(&/\*\) are not allowed"):
        read_yaml(p)


def test_yaml_aliases_are_refused_in_set_values():
    with pytest.raises(ConfigError, match=r"--set name: YAML aliases \(&/\*\) are not allowed"):
        parse_set(["name=[&a x, *a, *a]"])
    assert parse_set(["name=a&b*c"]) == {"name": "a&b*c"}  # & and * inside a plain scalar are just text


def test_yaml_aliases_are_refused_in_sweep_files(tmp_path):
    from avgzsl.sweep import load_sweep
    p = tmp_path / "s.yaml"
    p.write_text("base: clipclap_ucf\nspace: &s\n  lr: {grid: [0.001, 0.01]}\nfinal: *s\n")
    with pytest.raises(ConfigError, match=r"s\.yaml: YAML aliases"):
        load_sweep(p)


@pytest.mark.parametrize("over", [{"name": ["x" * 1000] * 1000}, {"lr": "y" * 10**6},
                                  {"clipclap": {"modalities": "z" * 10**5}}, {"bogus" * 1000: 1}])
def test_config_error_messages_stay_short(over):
    with pytest.raises(ConfigError) as e:
        load_config(None, over)
    assert len(str(e.value)) <= 600, len(str(e.value))


def test_deeply_nested_yaml_is_one_line(tmp_path):
    p = tmp_path / "deep.yaml"
    p.write_text("name: " + "[" * 50000 + "]" * 50000 + "\n")
    with pytest.raises(ConfigError, match="deep.yaml"):
        read_yaml(p)


# ---- case 7: a non-finite loss during training ------------------------------------------------------------

SMALL = ["epochs=4", "n_batches=5", "bs=16", "lr=1e-3", "clipclap.hidden=32", "clipclap.dim_out=16"]


def poison_loss(monkeypatch, at_call: int, term: str = "reg", value=float("nan")):
    """ClipClap's loss returns a non-finite `term` (and total) from call `at_call` on (0-based)."""
    from avgzsl.models.clipclap import ClipClap
    orig = ClipClap.loss
    calls = {"n": 0}

    def loss(self, batch, class_text, target):
        total, terms = orig(self, batch, class_text, target)
        calls["n"] += 1
        if calls["n"] > at_call:
            bad = total * value
            terms = {**terms, term: bad.detach(), "total": bad.detach()}
            return bad, terms
        return total, terms
    monkeypatch.setattr(ClipClap, "loss", loss)


def test_non_finite_loss_stops_with_the_run_resumable(monkeypatch, tmp_path, tiny_bench):
    cfg = load_config(None, SMALL)
    clean = run_protocol(cfg, tiny_bench)  # the same run, never poisoned
    out = tmp_path / "run"
    poison_loss(monkeypatch, at_call=2 * 5 + 3)  # inside stage-1 epoch 3 (1-based)
    with pytest.raises(AvgzslError) as e:
        run_protocol(cfg, tiny_bench, out)
    msg = str(e.value)
    assert msg.startswith("stage 1 epoch 3: loss term 'reg' is nan"), msg
    assert "lr=0.001" in msg and f"--resume {out}" in msg and "epoch 2" in msg and "\n" not in msg
    assert not (out / "results.json").exists()
    state = torch.load(out / "state.pt", weights_only=True)
    assert state["stage"] == 1 and state["stage1"]["done"] == 2  # the last good epoch, not the bad one
    best = torch.load(out / "checkpoints" / "stage1_best.pt", weights_only=True)
    assert best["epoch"] <= 1
    monkeypatch.undo()
    resumed = run_protocol(cfg, tiny_bench, out, resume=True)
    assert resumed["test"] == clean["test"] and resumed["best_epoch"] == clean["best_epoch"]


def test_non_finite_loss_in_stage_2_names_stage_2(monkeypatch, tmp_path, tiny_bench):
    cfg = load_config(None, SMALL)
    poison_loss(monkeypatch, at_call=4 * 5 + 1, term="ce", value=float("inf"))  # stage 2, epoch 1
    out = tmp_path / "run"
    with pytest.raises(AvgzslError, match=r"^stage 2 epoch 1: loss term 'ce' is (inf|nan)"):
        run_protocol(cfg, tiny_bench, out)
    assert not (out / "results.json").exists() and not (out / "checkpoints" / "stage2_final.pt").exists()
    assert torch.load(out / "state.pt", weights_only=True)["stage"] == 1


def test_infinite_features_stop_at_the_first_epoch(tmp_path, tiny_bench):
    """Data that bypass the readers' NaN/inf check (an in-memory Benchmark) still cannot train to NaN."""
    tiny_bench.splits["stage_1_train"].audio[:3] = np.inf
    out = tmp_path / "run"
    with pytest.raises(AvgzslError, match=r"^stage 1 epoch 1: loss term '\w+' is (nan|inf).*no epoch"):
        run_protocol(load_config(None, SMALL), tiny_bench, out)
    assert not (out / "state.pt").exists() and not (out / "results.json").exists()
    assert not (out / "checkpoints" / "stage1_best.pt").exists()


def test_non_finite_weights_behind_a_finite_loss_are_caught(monkeypatch, tmp_path, tiny_bench):
    """One bad update on the last step of an epoch leaves NaN weights behind a finite loss: checked too."""
    from avgzsl.models.clipclap import ClipClap
    orig = ClipClap.loss
    calls = {"n": 0}

    def loss(self, batch, class_text, target):
        calls["n"] += 1
        if calls["n"] == 5:  # the last step of epoch 1: poison a weight after the loss was computed
            total, terms = orig(self, batch, class_text, target)
            with torch.no_grad():
                self.O_enc[0].weight[0, 0] = float("nan")
            return total, terms
        return orig(self, batch, class_text, target)
    monkeypatch.setattr(ClipClap, "loss", loss)
    with pytest.raises(AvgzslError, match=r"^stage 1 epoch 1: .*weights.*O_enc"):
        run_protocol(load_config(None, SMALL), tiny_bench, tmp_path / "run")


# ---- case 8: checkpoints with wrong contents --------------------------------------------------------------

DIMS = dict(audio=12, video=8, text=10)


@pytest.fixture
def ckpt_path(tmp_path):
    model = build_model("clipclap", {"hidden": 16, "dim_out": 8}, DIMS)
    path = tmp_path / "stage2_final.pt"
    save_checkpoint(path, model, RunConfig().to_dict() | {"clipclap": {"hidden": 16, "dim_out": 8}},
                    {"name": "clip-vit-b32+clap-wavcaps", "dim": 10}, stage=2, epoch=0, beta=0.5)
    return path


def rewrite(path, change):
    ckpt = torch.load(path, weights_only=True)
    change(ckpt)
    torch.save(ckpt, path)


def _set(key, value):
    def change(c):
        node = c
        *parents, last = key.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
    return change


def _delete(key):
    def change(c):
        node = c
        *parents, last = key.split(".", 1) if key.startswith("state_dict.") else key.split(".")
        for p in parents:
            node = node[p]
        del node[last]
    return change


def _state(key, change_tensor):
    def change(c):
        c["state_dict"][key] = change_tensor(c["state_dict"][key])
    return change


BAD_CHECKPOINTS = [
    ("huge_dim", _set("dims.audio", 10**12), r"dims\.audio"),
    ("float_dim", _set("dims.video", 8.5), r"dims\.video"),
    ("negative_dim", _set("dims.text", -3), r"dims\.text"),
    ("beta_string", _set("beta", "x"), r"beta"),
    ("beta_nan", _set("beta", float("nan")), r"beta"),
    ("wrong_shape", _state("O_enc.0.weight", lambda t: torch.zeros(3, 4)), r"O_enc\.0\.weight.*shape"),
    ("nan_weight", _state("O_enc.0.weight", lambda t: t * float("nan")), r"O_enc\.0\.weight.*NaN"),
    ("not_a_tensor", _state("O_enc.0.bias", lambda t: "x"), r"O_enc\.0\.bias"),
    ("missing_weight", _delete("state_dict.O_enc.0.weight"), r"missing.*O_enc\.0\.weight"),
    ("extra_weight", lambda c: c["state_dict"].update({"foo.weight": torch.zeros(1)}), r"unexpected.*foo\.weight"),
    ("missing_model_config", _delete("model_config"), r"model_config"),
    ("missing_dims", _delete("dims"), r"dims"),
    ("unknown_model", _set("model", "resnet"), r"resnet"),
    ("bad_model_setting", _set("model_config.dropout_encoder", 1.5), r"clipclap\.dropout_encoder"),
    ("unknown_model_setting", _set("model_config.colour", 1), r"colour"),
    ("bad_run_config", _set("run_config.lr", float("nan")), r"lr=nan"),
    ("run_config_not_a_dict", _set("run_config", [1, 2]), r"run_config"),
    ("wrong_format", _set("format", 99), r"format"),
    ("text_space_dim", _set("text_space.dim", "ten"), r"text_space"),
]


@pytest.mark.parametrize("change,must", [c[1:] for c in BAD_CHECKPOINTS], ids=[c[0] for c in BAD_CHECKPOINTS])
def test_a_checkpoint_with_wrong_contents_is_one_line(ckpt_path, change, must):
    rewrite(ckpt_path, change)
    with pytest.raises(AvgzslError, match=must) as e:
        load_model(ckpt_path)
    msg = str(e.value)
    assert msg.startswith(str(ckpt_path)), msg
    assert "\n" not in msg and len(msg) < 600, msg


def test_a_huge_dim_is_refused_before_anything_is_allocated(ckpt_path, monkeypatch):
    """dims under the sane bound but disagreeing with the weights: the model is compared on the meta
    device (no memory) and never built for real."""
    rewrite(ckpt_path, _set("dims.audio", 10**6))
    from torch import nn
    built = []
    orig = nn.Linear.__init__

    def spy(self, in_features, out_features, *a, **kw):
        orig(self, in_features, out_features, *a, **kw)
        built.append((in_features, self.weight.device.type))
    monkeypatch.setattr(nn.Linear, "__init__", spy)
    with pytest.raises(AvgzslError, match=r"O_enc\.0\.weight.*shape"):
        load_model(ckpt_path)
    huge = [dev for d_in, dev in built if d_in >= 10**6]
    assert huge and set(huge) == {"meta"}, built


def test_a_checkpoint_with_a_pickle_payload_names_the_global(tmp_path):
    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'PWNED'}",)
    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "model": "clipclap", "state_dict": {}, "x": Evil()}, path)
    with pytest.raises(AvgzslError) as e:
        read_checkpoint(path)
    msg = str(e.value)
    assert msg == f"unsafe checkpoint: {path} refers to {os.system.__module__}.system; nothing was executed", msg
    assert not (tmp_path / "PWNED").exists()


def test_a_good_checkpoint_still_loads(ckpt_path):
    model, ckpt = load_model(ckpt_path)
    assert ckpt["beta"] == 0.5 and not model.training
