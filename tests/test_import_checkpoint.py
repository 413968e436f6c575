"""`avgzsl import-checkpoint clipclap`: a checkpoint laid out as the public ClipClap-GZSL code saves it
becomes a run folder whose model computes what the public model computes.

The public side is written out here from the public code, not taken from avgzsl: its state-dict keys
(`ClipClap_model` in src/clipclap_model.py: blocks O_enc, W_enc, O_proj, D_o, W_proj, D_w, each an
`EmbeddingNet` whose layers sit in `self.fc = nn.Sequential(...)`), the dict `src/utils.py:save_best_model`
saves ({"epoch", "model", "optimizer", "metric"}), and its forward pass in eval mode (Linear, BatchNorm
with running statistics, ReLU; Dropout is the identity), computed from the original tensors.
"""
from __future__ import annotations

import json
import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_benchmark
import avgzsl.import_checkpoint as imp
from avgzsl.checkpoint import load_model, read_checkpoint
from avgzsl.cli import main
from avgzsl.data.types import Split
from avgzsl.errors import AvgzslError
from avgzsl.import_checkpoint import import_checkpoint, import_clipclap
from avgzsl.metrics import gzsl_metrics, nearest_seen_unseen
from avgzsl.models.base import Batch
from avgzsl.predict import Predictor
from avgzsl.protocol import evaluate_run
from avgzsl.runfolder import RunFolder

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

VIDEO, AUDIO, TEXT = 512, 1024, 1536  # the release's CLIP / WavCaps CLAP features, CLIP+WavCaps text
WORD = 512  # word_embedding_dim, hard-coded in ClipClap_model.__init__ (W_proj input, D_o/D_w output)
EPS = 1e-5  # nn.BatchNorm1d's default


# ---- the public side --------------------------------------------------------------------------------

def public_state(modality: str = "both", words: str = "both", bn: bool = True, decoder_hidden: int = 512,
                 dim_out: int = 64, seed: int = 0) -> OrderedDict:
    """A state dict with the keys and shapes ClipClap_model(params).state_dict() has.

    modality: --modality (both | audio | video); words: --word_embeddings for modality both (both |
    wavcaps | clip); bn: embeddings_batch_norm (BatchNorm of the hidden layer of O_proj and D_o).
    EmbeddingNet.fc, one group: Linear, BatchNorm1d, ReLU, Dropout. With a hidden layer: Linear,
    [BatchNorm1d if use_bn], ReLU, Dropout, Linear, BatchNorm1d, ReLU, Dropout.
    """
    g = torch.Generator().manual_seed(seed)
    d_in = {"both": VIDEO + AUDIO, "audio": AUDIO, "video": VIDEO}[modality]
    d_w = {"audio": AUDIO, "video": VIDEO}.get(modality) or {"both": TEXT, "wavcaps": AUDIO, "clip": VIDEO}[words]
    enc = 512  # O_enc / W_enc output, hard-coded
    blocks = {  # block: [(in, out) of each Linear]
        "O_enc": [(d_in, enc)],
        "W_enc": [(d_w, enc)],
        "O_proj": [(enc, decoder_hidden), (decoder_hidden, dim_out)],
        "D_o": [(dim_out, decoder_hidden), (decoder_hidden, WORD)],
        "W_proj": [(WORD, dim_out)],
        "D_w": [(dim_out, WORD)],
    }
    state = OrderedDict()
    for name, linears in blocks.items():
        i = 0
        for j, (a, b) in enumerate(linears):
            state[f"{name}.fc.{i}.weight"] = torch.randn(b, a, generator=g) / math.sqrt(a)
            state[f"{name}.fc.{i}.bias"] = 0.1 * torch.randn(b, generator=g)
            i += 1
            hidden_layer = len(linears) == 2 and j == 0
            if bn or not hidden_layer:  # use_bn only reaches the hidden layer's BatchNorm
                state[f"{name}.fc.{i}.weight"] = 1 + 0.2 * torch.randn(b, generator=g)
                state[f"{name}.fc.{i}.bias"] = 0.2 * torch.randn(b, generator=g)
                state[f"{name}.fc.{i}.running_mean"] = 0.3 * torch.randn(b, generator=g)
                state[f"{name}.fc.{i}.running_var"] = 0.5 + torch.rand(b, generator=g)
                state[f"{name}.fc.{i}.num_batches_tracked"] = torch.tensor(1234)
                i += 1
            i += 2  # ReLU, Dropout: no weights
    return state


def save_public(path, state, epoch: int = 6, **extra):
    """As src/utils.py:save_best_model(epoch, ...) does: torch.save of {"epoch": epoch + 1, "model", "optimizer",
    "metric"} (`epoch` counts from 0 there)."""
    params = [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(4))]
    opt = torch.optim.Adam(params, lr=7e-5, weight_decay=1e-5)  # with state: exp_avg etc. after one step
    (params[0].sum() + params[1].sum()).backward()
    opt.step()
    torch.save({"epoch": epoch + 1, "model": state, "optimizer": opt.state_dict(), "metric": "score", **extra}, path)
    return path


def _block(x: torch.Tensor, state: dict, name: str) -> torch.Tensor:
    """EmbeddingNet.forward in eval mode, from the tensors of `state` (Dropout = identity)."""
    i = 0
    while f"{name}.fc.{i}.weight" in state:
        x = x @ state[f"{name}.fc.{i}.weight"].T + state[f"{name}.fc.{i}.bias"]  # Linear
        i += 1
        if f"{name}.fc.{i}.running_mean" in state:  # BatchNorm1d with its running statistics
            p = f"{name}.fc.{i}."
            x = (x - state[p + "running_mean"]) / torch.sqrt(state[p + "running_var"] + EPS) * state[p + "weight"] \
                + state[p + "bias"]
            i += 1
        x = torch.relu(x)  # ReLU, then Dropout
        i += 2
    return x


def public_forward(state: dict, audio, video, text, modality: str = "both", words: str = "both") -> dict:
    """ClipClap_model.forward / get_embeddings in eval mode; distances as src/utils.py's evaluation: cdist."""
    if modality == "audio":
        x, w = audio, text[:, 512:]
    elif modality == "video":
        x, w = video, text[:, :512]
    else:
        x = torch.cat((video, audio), dim=1)
        w = {"wavcaps": text[:, 512:], "clip": text[:, :512]}.get(words, text)
    theta_o = _block(_block(x, state, "O_enc"), state, "O_proj")
    theta_w = _block(_block(w, state, "W_enc"), state, "W_proj")
    return {"theta_o": theta_o, "theta_w": theta_w, "rho_o": _block(theta_o, state, "D_o"),
            "rho_w": _block(theta_w, state, "D_w"), "distances": torch.cdist(theta_o, theta_w)}


def _inputs(n: int = 9, classes: int = 7, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, AUDIO, generator=g), torch.randn(n, VIDEO, generator=g),
            F.normalize(torch.randn(classes, TEXT, generator=g), dim=1))


def _ours(model, audio, video, text) -> dict:
    with torch.no_grad():
        theta_o = model.embed_videos(Batch(audio, video))
        theta_w = model.embed_classes(text)
        return {"theta_o": theta_o, "theta_w": theta_w, "rho_o": model.D_o(theta_o), "rho_w": model.D_w(theta_w),
                "distances": model.distances(Batch(audio, video), theta_w)}


def _assert_same(ours: dict, theirs: dict) -> None:
    for k in ("theta_o", "theta_w", "rho_o", "rho_w", "distances"):
        torch.testing.assert_close(ours[k], theirs[k], rtol=1e-4, atol=1e-4, msg=lambda m, k=k: f"{k}: {m}")


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """The released configuration (both modalities, CLIP+WavCaps text, BatchNorm everywhere), imported."""
    d = tmp_path_factory.mktemp("released")
    state = public_state()
    src = save_public(d / "ClipClap_model_score_ckpt_6.pt", state)
    out = import_clipclap(src, d / "run", beta=0.37)
    return dict(state=state, src=src, out=out)


# ---- (a) the imported model computes the public model's outputs -------------------------------------

def test_imported_model_computes_the_public_forward(released):
    model, ckpt = load_model(RunFolder(released["out"]).stage2_final_path)
    assert ckpt["model"] == "clipclap" and ckpt["stage"] == 2 and ckpt["beta"] == pytest.approx(0.37)
    assert ckpt["text_space"] == {"name": "clip-vit-b32+clap-wavcaps", "dim": 1536, "feature_set": "clipclap"}
    assert ckpt["dims"] == {"audio": 1024, "video": 512, "text": 1536, "temporal": False, "feature_set": "clipclap"}
    assert ckpt["epoch"] == 6  # the public "epoch" counts from 1
    a, v, t = _inputs()
    _assert_same(_ours(model, a, v, t), public_forward(released["state"], a, v, t))


@pytest.mark.parametrize("modality,words,bn", [("audio", "both", True), ("video", "both", True),
                                               ("both", "wavcaps", False), ("both", "clip", True)])
def test_other_public_layouts(tmp_path, modality, words, bn):
    state = public_state(modality, words, bn, dim_out=32, seed=3)
    out = import_clipclap(save_public(tmp_path / "c.pt", state), tmp_path / "run", beta=0.0)
    model, ckpt = load_model(RunFolder(out).stage2_final_path)
    want_part = {"audio": "clap", "video": "clip"}.get(modality) or {"both": "all", "wavcaps": "clap", "clip": "clip"}[words]
    assert ckpt["model_config"]["modalities"] == modality and ckpt["model_config"]["text_part"] == want_part
    assert ckpt["model_config"]["batch_norm"] is bn and ckpt["model_config"]["dim_out"] == 32
    a, v, t = _inputs(seed=4)
    _assert_same(_ours(model, a, v, t), public_forward(state, a, v, t, modality, words))


def test_a_wrong_mapping_would_be_caught(tmp_path, monkeypatch, released):
    """The comparison above is not vacuous: the encoders swapped (same shapes) or a BatchNorm's
    statistics swapped load without complaint but compute something else."""
    right = imp.clipclap_key_map

    def swapped_encoders(batch_norm=True):
        swap = {"O_enc": "W_enc", "W_enc": "O_enc"}
        return {k: swap.get(v.split(".")[0], v.split(".")[0]) + v[v.index("."):] for k, v in right(batch_norm).items()}

    def swapped_stats(batch_norm=True):
        m = dict(right(batch_norm))
        m["D_w.fc.1.running_mean"], m["D_w.fc.1.running_var"] = m["D_w.fc.1.running_var"], m["D_w.fc.1.running_mean"]
        return m

    a, v, t = _inputs()
    theirs = public_forward(released["state"], a, v, t)
    for i, wrong in enumerate((swapped_encoders, swapped_stats)):
        monkeypatch.setattr(imp, "clipclap_key_map", wrong)
        out = import_clipclap(released["src"], tmp_path / f"wrong{i}", beta=0.0)
        model, _ = load_model(RunFolder(out).stage2_final_path)
        with pytest.raises(AssertionError):
            _assert_same(_ours(model, a, v, t), theirs)


def test_key_table_covers_our_model_exactly():
    from avgzsl.models import build_model
    from avgzsl.models.clipclap import ClipClapConfig
    from avgzsl.data.types import FeatureDims
    for bn in (True, False):
        m = imp.clipclap_key_map(bn)
        assert set(m) == set(public_state(bn=bn))  # every public key, once
        assert len(set(m.values())) == len(m)
        ours = build_model("clipclap", ClipClapConfig(batch_norm=bn, batch_norm_scope="hidden"),
                           FeatureDims(AUDIO, VIDEO, TEXT)).state_dict()
        assert set(m.values()) == set(ours)


# ---- (b) the run folder works with evaluate_run and predict -----------------------------------------

def test_evaluate_run_and_predict_on_the_imported_folder(released):
    bench = tiny_benchmark(n_per_class=3, da=AUDIO, dv=VIDEO, dt=TEXT)
    res = evaluate_run(released["out"], bench)
    s = bench.splits
    test = Split.concat([s["stage_2_test_seen"], s["stage_2_test_unseen"]])
    class_ids = np.union1d(s["stage_2_test_seen"].classes, s["stage_2_test_unseen"].classes)
    seen = np.isin(class_ids, s["stage_2_test_seen"].classes)
    a, v = torch.from_numpy(test.audio), torch.from_numpy(test.video)
    dist = public_forward(released["state"], a, v, torch.from_numpy(bench.text[class_ids]))["distances"].numpy()
    want = gzsl_metrics(nearest_seen_unseen(dist, seen), test.labels, class_ids, seen, np.array([0.37])).summary()
    for k in ("seen", "unseen", "hm", "zsl", "beta"):
        assert res[k] == pytest.approx(want[k], abs=1e-6), k

    p = Predictor.from_run(released["out"])
    assert p.beta == pytest.approx(0.37) and p.text_space["name"] == "clip-vit-b32+clap-wavcaps"
    pred = p.predict(test.audio, test.video, bench.text[class_ids], top_k=3, beta=p.beta, seen_mask=seen)
    np.testing.assert_array_equal(pred.top1, np.argmin(dist + np.where(seen, np.float32(0.37), 0), axis=1))


def test_run_folder_contents(released):
    out = released["out"]
    rec = json.loads((out / "imported.json").read_text())
    import hashlib
    assert rec["sha256"] == hashlib.sha256(released["src"].read_bytes()).hexdigest()
    assert rec["beta"] == 0.37 and rec["beta_source"].startswith("given")
    assert rec["state_dict_key"] == "model" and rec["public_epoch"] == 7 and rec["public_metric"] == "score"
    assert rec["key_map"]["O_proj.fc.4.weight"] == "O_proj.4.weight" and len(rec["key_map"]) == 56
    assert (out / "config.yaml").is_file() and (out / "env.json").is_file()
    assert not RunFolder(out).results_path.exists()  # no test numbers were computed: none are claimed
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_default_beta_is_zero_with_a_warning(tmp_path, caplog, released):
    with caplog.at_level("WARNING", logger="avgzsl.import_checkpoint"):
        out = import_clipclap(released["src"], tmp_path / "run")
    assert "stores no calibration beta" in caplog.text
    assert read_checkpoint(RunFolder(out).stage2_final_path)["beta"] == 0.0
    assert json.loads((out / "imported.json").read_text())["beta_source"].startswith("default 0.0")


def test_bare_and_data_parallel_state_dicts(tmp_path, released):
    state = released["state"]
    a, v, t = _inputs()
    theirs = public_forward(state, a, v, t)
    torch.save(state, tmp_path / "bare.pt")
    torch.save({"epoch": 3, "model": {f"module.{k}": x for k, x in state.items()}}, tmp_path / "dp.pt")
    for name in ("bare", "dp"):
        out = import_clipclap(tmp_path / f"{name}.pt", tmp_path / f"run-{name}", beta=0.0)
        model, _ = load_model(RunFolder(out).stage2_final_path)
        _assert_same(_ours(model, a, v, t), theirs)


# ---- (c) bad files: one line naming the file, no output folder --------------------------------------

_RAN = []


def _side_effect():  # what a hostile pickle would call
    _RAN.append(1)
    return "ran"


class Hostile:
    def __reduce__(self):
        return (_side_effect, ())


def _bad(kind: str, state: dict):
    state = OrderedDict(state)
    if kind == "missing key":
        del state["D_w.fc.1.running_var"]
    elif kind == "extra key":
        state["O_enc.fc.9.weight"] = torch.zeros(3, 3)
    elif kind == "wrong shape":
        state["W_proj.fc.0.weight"] = torch.zeros(64, 500)
    elif kind == "not a tensor":
        state["O_enc.fc.0.bias"] = [0.0] * 512
    elif kind == "nan":
        state["D_o.fc.4.weight"] = state["D_o.fc.4.weight"].clone()
        state["D_o.fc.4.weight"][0, 0] = float("nan")
    return state


BAD = {
    "missing key": "missing 'D_w.fc.1.running_var'",
    "extra key": "unexpected 'O_enc.fc.9.weight'",
    "wrong shape": "W_proj.fc.0.weight has shape (64, 500)",
    "not a tensor": "O_enc.fc.0.bias is a list, not a tensor",
    "nan": "D_o.fc.4.weight holds NaN",
    "decoder width": "decoder_hidden_size=256 differs",
    "pickled object": "refused by torch.load(weights_only=True)",
    "no weights": "holds no ClipClap-GZSL ClipClap_model weights",
    "not a checkpoint": "not a checkpoint torch.load(weights_only=True) can read",
}


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_checkpoints_are_one_line_and_leave_nothing(tmp_path, kind, released):
    src = tmp_path / "bad.pt"
    if kind == "decoder width":
        save_public(src, public_state(decoder_hidden=256))
    elif kind == "pickled object":
        save_public(src, released["state"], args=Hostile())
    elif kind == "no weights":
        torch.save({"epoch": 1, "weights": [1, 2]}, src)
    elif kind == "not a checkpoint":
        src.write_bytes(b"this is not a torch file")
    else:
        save_public(src, _bad(kind, released["state"]))
    out = tmp_path / "out" / "run"
    with pytest.raises(AvgzslError) as e:
        import_clipclap(src, out, beta=0.1)
    msg = str(e.value)
    assert "\n" not in msg and str(src) in msg and BAD[kind] in msg, msg
    assert not out.exists()
    assert not (out.parent.exists() and any(out.parent.iterdir()))  # no temporary folder either
    assert not _RAN  # the hostile object's reduce never ran


def test_out_folder_rules(tmp_path, released):
    src = released["src"]
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine")
    with pytest.raises(AvgzslError, match="not empty"):
        import_clipclap(src, full)
    with pytest.raises(AvgzslError, match="not a run folder"):
        import_clipclap(src, full, overwrite=True)
    assert (full / "notes.txt").read_text() == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert import_clipclap(src, empty, beta=0.0) == empty  # an empty folder is fine
    with pytest.raises(AvgzslError, match="--overwrite"):
        import_clipclap(src, empty, beta=0.0)
    import_clipclap(src, empty, beta=0.5, overwrite=True)  # an earlier import is replaced
    assert read_checkpoint(RunFolder(empty).stage2_final_path)["beta"] == 0.5
    with pytest.raises(AvgzslError, match="finite"):
        import_clipclap(src, tmp_path / "nan", beta=float("nan"))
    with pytest.raises(AvgzslError, match="supported: clipclap"):
        import_checkpoint("avca", src, tmp_path / "x")


# ---- (d) the command line -----------------------------------------------------------------------------

def test_cli_import_then_eval(tmp_path, capfd, released):
    from avgzsl.data.native import write_native
    out = tmp_path / "run"
    assert main(["import-checkpoint", "clipclap", str(released["src"]), "--out", str(out), "--beta", "0.37"]) == 0
    printed = capfd.readouterr().out
    assert str(out) in printed and "beta 0.37" in printed and RunFolder(out).stage2_final_path.is_file()

    bench = tiny_benchmark(n_per_class=3, da=AUDIO, dv=VIDEO, dt=TEXT)
    root = write_native(bench, tmp_path / "tiny")
    assert main(["eval", str(out), "--data", str(root)]) == 0  # its table goes to the stdout of import time
    capfd.readouterr()

    assert main(["import-checkpoint", "avca", str(released["src"]), "--out", str(tmp_path / "y")]) == 2
    err = capfd.readouterr().err.strip()
    assert "\n" not in err and "supported: clipclap" in err and not (tmp_path / "y").exists()
