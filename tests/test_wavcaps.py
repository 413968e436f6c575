"""WavCaps HTSAT-BERT CLAP (src/avgzsl/encoders/wavcaps.py): a tiny random checkpoint with the key layout
of WavCaps' ASE model, saved as WavCaps' pretrain.py saves it, loaded with strict checks; text compared
with an explicit forward written here from WavCaps' ASE.encode_text and ClipClap-GZSL's class ensemble."""
from __future__ import annotations

import importlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from avgzsl.encoders import EncoderError, text as text_module  # noqa: E402
from avgzsl.encoders.text import TEMPLATES  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

BERT = "text_encoder.text_encoder."
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@pytest.fixture(scope="module")
def wc():
    """The module (imported here, not at collection: it registers `clipclap-wavcaps`; the registration is
    undone afterwards unless avgzsl.encoders itself imports the module)."""
    had = "clipclap-wavcaps" in text_module._REGISTRY
    yield importlib.import_module("avgzsl.encoders.wavcaps")
    if not had:
        text_module._REGISTRY.pop("clipclap-wavcaps", None)


def write_tokenizer(folder) -> int:
    """A BERT WordPiece vocabulary of single characters (and ## continuations): any lowercase text."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789") + list(".,'-!?")
    vocab = SPECIALS + chars + ["##" + c for c in chars]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return len(vocab)


def tiny_state(vocab: int, seed: int = 0, hidden: int = 128, embed: int = 24) -> dict:
    """An ASE state dict of WavCaps' layout: a 2-layer BERT (2 heads), text/audio projections, a stand-in
    audio tower, temp, and the position_ids buffer transformers 4.24 saved."""
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(vocab_size=vocab + 3, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=40, type_vocab_size=2)
    bert = transformers.BertModel(cfg, add_pooling_layer=False)
    sd = {BERT + k: v.clone() for k, v in bert.state_dict().items() if not k.endswith("token_type_ids")}
    sd[BERT + "embeddings.position_ids"] = torch.arange(40).expand((1, -1)).clone()
    text_proj = torch.nn.Sequential(torch.nn.Linear(hidden, embed), torch.nn.ReLU(), torch.nn.Linear(embed, embed))
    audio_proj = torch.nn.Sequential(torch.nn.Linear(16, embed), torch.nn.ReLU(), torch.nn.Linear(embed, embed))
    sd.update({"text_proj." + k: v for k, v in text_proj.state_dict().items()})
    sd.update({"audio_proj." + k: v for k, v in audio_proj.state_dict().items()})
    sd["audio_encoder.audio_enc.bn0.weight"] = torch.ones(64)
    sd["audio_encoder.audio_enc.audio_feats_extractor.log_trans.melW"] = torch.rand(513, 64)
    sd["temp"] = torch.tensor(0.07)
    return sd


def save_like_wavcaps(path, state: dict) -> None:
    """As WavCaps' retrieval/pretrain.py saves its best model."""
    torch.save({"model": state, "optimizer": {"state": {}, "param_groups": [{"lr": 5e-5, "params": [0, 1]}]},
                "config": {"embed_size": 1024, "audio_args": {"sr": 32000}, "text_encoder_args":
                           {"type": "bert-base-uncased", "freeze": False}}, "epoch": 7}, str(path))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """weights/wavcaps/HTSAT_BERT_zero_shot.pt + weights/wavcaps/bert-base-uncased/vocab.txt."""
    root = tmp_path_factory.mktemp("weights")
    folder = root / "wavcaps"
    n = write_tokenizer(folder / "bert-base-uncased")
    state = tiny_state(n)
    save_like_wavcaps(folder / "HTSAT_BERT_zero_shot.pt", state)
    return root, state


def explicit_encode_text(state: dict, tok_folder, texts: list[str]) -> np.ndarray:
    """WavCaps ASE.encode_text, written out: BERT last hidden state of token 0, Linear-ReLU-Linear, L2."""
    tok = transformers.BertTokenizer.from_pretrained(str(tok_folder))
    enc = tok(texts, padding="longest", truncation=True, max_length=30, return_tensors="pt")
    cfg = transformers.BertConfig(vocab_size=state[BERT + "embeddings.word_embeddings.weight"].shape[0],
                                  hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                  max_position_embeddings=40, type_vocab_size=2)
    bert = transformers.BertModel(cfg, add_pooling_layer=False).eval()
    bert.load_state_dict({k[len(BERT):]: v for k, v in state.items()
                          if k.startswith(BERT) and not k.endswith("position_ids")}, strict=True)
    with torch.no_grad():
        cls = bert(input_ids=enc.input_ids, attention_mask=enc.attention_mask)[0][:, 0, :]
        h = torch.relu(cls @ state["text_proj.0.weight"].T + state["text_proj.0.bias"])
        e = h @ state["text_proj.2.weight"].T + state["text_proj.2.bias"]
        return torch.nn.functional.normalize(e, dim=-1).numpy()


def class_embedding(state, tok_folder, name: str, templates: list[str]) -> np.ndarray:
    """ClipClap-GZSL's wavcaps_zeroshot_classifier: all templates of a class at once, mean, renormalised."""
    e = explicit_encode_text(state, tok_folder, [t.format(name) for t in templates]).mean(axis=0)
    return e / np.linalg.norm(e)


# --------------------------------------------------------------------------------------------------

def test_text_tower_matches_the_public_math(wc, tiny):
    root, state = tiny
    ckpt, tok = wc.resolve_wavcaps(weights=root)
    assert ckpt == root / "wavcaps" / wc.WAVCAPS_FILE and tok == root / "wavcaps" / "bert-base-uncased"
    tower = wc.load_wavcaps_text(ckpt, tok)
    assert (tower.dim, tower.space) == (24, "clap-wavcaps-w128-d24")
    assert wc.wavcaps_space_name(1024, 768) == "clap-wavcaps"
    texts = ["a dog barking can be heard.", "the person playing violin can be heard.", "rain"]
    got = tower.encode_text(texts).numpy()
    assert got.shape == (3, 24)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got, explicit_encode_text(state, tok, texts), atol=2e-5)
    # the first token, not a mean over tokens: the text changes the [CLS] state only through attention
    long_text = " ".join(["word"] * 40)  # truncated to 30 tokens, as WavCaps does
    np.testing.assert_allclose(tower.encode_text([long_text]).numpy(), explicit_encode_text(state, tok, [long_text]),
                               atol=2e-5)


def test_wavcaps_encoder_is_clipclap_gzsl_ensemble(wc, tiny):
    root, state = tiny
    enc = wc.WavCapsTextEncoder(weights=root, templates="vggsound")
    names = ["dog barking", "playing violin"]
    got = enc.encode(names)
    audio = TEMPLATES["vggsound"]["audio"]
    assert enc.templates == audio and got.shape == (2, 24) and got.dtype == np.float32
    tok = root / "wavcaps" / "bert-base-uncased"
    want = np.stack([class_embedding(state, tok, n, audio) for n in names])
    np.testing.assert_allclose(got, want, atol=3e-5)
    assert enc.describe()["weights"].endswith(wc.WAVCAPS_FILE)
    sent = enc.encode_sentences(["a dog barks twice."])
    np.testing.assert_allclose(sent, explicit_encode_text(state, tok, ["a dog barks twice."]), atol=2e-5)


def test_clipclap_wavcaps_joint_space(wc, tiny):
    from test_text_encoders import make_tiny_clip
    from avgzsl.encoders import get_encoder
    root, state = tiny
    make_tiny_clip(root / "clip")
    enc = get_encoder("clipclap-wavcaps", weights=root)
    clip = get_encoder("clip", weights=root)
    assert isinstance(enc, wc.ClipClapWavCapsTextEncoder)
    assert enc.part_dims == (8, 24) and enc.dim == 32
    assert enc.space == f"{clip.space}+clap-wavcaps-w128-d24"  # with real weights: clip-vit-b32+clap-wavcaps
    names = ["dog barking", "playing violin", "rain"]
    e = enc.encode(names)
    assert e.shape == (3, 32)
    np.testing.assert_allclose(e[:, :8], clip.encode(names), atol=1e-6)  # CLIP first, its "visual" templates
    person = TEMPLATES["person"]["audio"]
    want = np.stack([class_embedding(state, root / "wavcaps" / "bert-base-uncased", n, person) for n in names])
    np.testing.assert_allclose(e[:, 8:], want, atol=3e-5)
    np.testing.assert_allclose(np.linalg.norm(e[:, :8], axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(e[:, 8:], axis=1), 1.0, atol=1e-5)
    assert enc.describe()["order"] == ["clip", "clap"]


def test_weights_given_as_file_folder_or_env(wc, tiny, tmp_path, monkeypatch):
    root, _ = tiny
    ckpt = root / "wavcaps" / wc.WAVCAPS_FILE
    assert wc.resolve_wavcaps(clap_weights=ckpt)[0] == ckpt
    assert wc.resolve_wavcaps(clap_weights=ckpt.parent)[0] == ckpt
    monkeypatch.setenv("AVGZSL_WAVCAPS_WEIGHTS", str(ckpt))
    assert wc.resolve_wavcaps() == (ckpt, ckpt.parent / "bert-base-uncased")
    monkeypatch.delenv("AVGZSL_WAVCAPS_WEIGHTS")
    with pytest.raises(EncoderError, match="no WavCaps CLAP weights given: download .*HTSAT_BERT_zero_shot.pt"):
        wc.resolve_wavcaps()
    with pytest.raises(EncoderError, match=r"wavcaps \(--weights\): no such file or folder"):
        wc.resolve_wavcaps(weights=tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EncoderError, match=r"no WavCaps checkpoint \(.pt\) in this folder"):
        wc.resolve_wavcaps(clap_weights=empty)


class Opaque:  # an object weights_only loading refuses
    pass


def _one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_missing_tokenizer_is_one_line(wc, tiny, tmp_path, monkeypatch):
    _, state = tiny
    save_like_wavcaps(tmp_path / "model.pt", state)
    with pytest.raises(EncoderError) as e:
        wc.resolve_wavcaps(clap_weights=tmp_path / "model.pt")
    msg = _one_line(e)
    assert "no BERT tokenizer" in msg and "vocab.txt" in msg and "hf download bert-base-uncased" in msg
    assert wc.resolve_wavcaps(clap_weights=tmp_path / "model.pt", need_tokenizer=False) == (tmp_path / "model.pt", None)
    monkeypatch.setenv("AVGZSL_WAVCAPS_TOKENIZER", str(tmp_path / "nowhere"))
    with pytest.raises(EncoderError, match=r"nowhere \(\$AVGZSL_WAVCAPS_TOKENIZER\): no BERT tokenizer"):
        wc.resolve_wavcaps(clap_weights=tmp_path / "model.pt")
    # a tokenizer larger than the checkpoint's vocabulary is not its tokenizer
    big = tmp_path / "big"
    big.mkdir()
    (big / "vocab.txt").write_text("\n".join(SPECIALS + [f"w{i}" for i in range(200)]) + "\n")
    with pytest.raises(EncoderError, match="not its tokenizer"):
        wc.load_wavcaps_text(tmp_path / "model.pt", big)


@pytest.mark.parametrize("damage, match", [
    ("drop_layer", r"missing text_encoder\.text_encoder\.encoder\.layer\.1\.attention\.output\.LayerNorm\.bias"),
    ("extra", r"unexpected text_encoder\.pooler\.dense\.weight"),
    ("no_proj", r"no text_proj\.0\.weight"),
    ("audio_only", r"no text_proj\.0\.weight"),
    ("shape", r"text_proj\.2\.bias has shape \(5,\)"),
])
def test_wrong_or_partial_checkpoint_is_one_line(wc, tiny, tmp_path, damage, match):
    root, state = tiny
    sd = dict(state)
    if damage == "drop_layer":
        sd = {k: v for k, v in sd.items() if not k.startswith(BERT + "encoder.layer.1.attention.output.LayerNorm.b")}
    elif damage == "extra":
        sd["text_encoder.pooler.dense.weight"] = torch.zeros(2, 2)
    elif damage == "no_proj":
        sd = {k: v for k, v in sd.items() if not k.startswith("text_proj.0")}
    elif damage == "audio_only":  # e.g. HTSAT.ckpt's audio tower alone
        sd = {k: v for k, v in sd.items() if k.startswith("audio_")}
    elif damage == "shape":
        sd["text_proj.2.bias"] = torch.zeros(5)
    path = tmp_path / "bad.pt"
    save_like_wavcaps(path, sd)
    with pytest.raises(EncoderError, match=match) as e:
        wc.load_wavcaps_text(path, root / "wavcaps" / "bert-base-uncased")
    assert str(path) in _one_line(e)


def test_unreadable_files_are_one_line(wc, tiny, tmp_path):
    tok = tiny[0] / "wavcaps" / "bert-base-uncased"
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(EncoderError, match="not a readable WavCaps checkpoint") as e:
        wc.load_wavcaps_text(junk, tok)
    _one_line(e)
    torch.save({"model": Opaque()}, str(tmp_path / "pickled.pt"))
    with pytest.raises(EncoderError, match="not a readable WavCaps checkpoint") as e:
        wc.load_wavcaps_text(tmp_path / "pickled.pt", tok)
    _one_line(e)
    torch.save({"model": {"a": 1}}, str(tmp_path / "nodict.pt"))
    with pytest.raises(EncoderError, match="not a WavCaps checkpoint"):
        wc.load_wavcaps_text(tmp_path / "nodict.pt", tok)


# --------------------------------------------------------------------------------------------------
# the audio tower: a tiny HTSAT in WavCaps' layout, and its forward written out from WavCaps' htsat.py

A = "audio_encoder.audio_enc."
TINY_HTSAT = dict(embed=8, depths=[2, 2, 1, 2], heads=[1, 2, 2, 4], window=8, spec=256, patch=4, n_mels=64, n_fft=256)


def relative_index(w: int) -> torch.Tensor:
    """Swin's relative position index of a w x w window."""
    ys, xs = torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")
    pos = torch.stack([ys.flatten(), xs.flatten()])  # 2, w*w
    rel = (pos[:, :, None] - pos[:, None, :]).permute(1, 2, 0) + (w - 1)
    return rel[..., 0] * (2 * w - 1) + rel[..., 1]


def shift_mask(res: int, w: int, s: int) -> torch.Tensor:
    """The shifted-window attention mask (0 / -100), nW x w*w x w*w."""
    img = torch.zeros(res, res)
    cuts = (slice(0, -w), slice(-w, -s), slice(-s, None))
    for n, (h, v) in enumerate((h, v) for h in cuts for v in cuts):
        img[h, v] = n
    win = img.view(res // w, w, res // w, w).permute(0, 2, 1, 3).reshape(-1, w * w)
    diff = win[:, None, :] - win[:, :, None]
    return torch.where(diff != 0, torch.tensor(-100.0), torch.tensor(0.0))


def block_geometry(res: int, w: int, j: int) -> tuple[int, int]:
    """(window, shift) of block j at resolution res, as SwinTransformerBlock sets them."""
    shift = 0 if j % 2 == 0 else w // 2
    if res <= w:
        return res, 0
    return w, shift


def tiny_htsat_state(seed: int = 1, embed_dim: int = 24, cfg=TINY_HTSAT) -> dict:
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, std=0.05):
        return torch.randn(*shape, generator=g) * std

    def ln(prefix, c):
        return {prefix + ".weight": 1 + rnd(c, std=0.1), prefix + ".bias": rnd(c)}

    n_fft, bins = cfg["n_fft"], cfg["n_fft"] // 2 + 1
    n = torch.arange(n_fft, dtype=torch.float64)
    k = torch.arange(bins, dtype=torch.float64)[:, None]
    hann = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
    sd = {A + "audio_feats_extractor.mel_trans.stft.conv_real.weight":
          (torch.cos(2 * np.pi * k * n / n_fft) * hann).float()[:, None, :],
          A + "audio_feats_extractor.mel_trans.stft.conv_imag.weight":
          (-torch.sin(2 * np.pi * k * n / n_fft) * hann).float()[:, None, :],
          A + "audio_feats_extractor.log_trans.melW": torch.rand(bins, cfg["n_mels"], generator=g) * 0.1}
    m = cfg["n_mels"]
    sd.update({A + "bn0.weight": 1 + rnd(m, std=0.1), A + "bn0.bias": rnd(m), A + "bn0.running_mean": -20 + rnd(m),
               A + "bn0.running_var": 300 + torch.rand(m, generator=g) * 100,
               A + "bn0.num_batches_tracked": torch.tensor(10)})
    c, p, w = cfg["embed"], cfg["patch"], cfg["window"]
    sd.update({A + "patch_embed.proj.weight": rnd(c, 1, p, p, std=0.2), A + "patch_embed.proj.bias": rnd(c)})
    sd.update({A + k: v for k, v in ln("patch_embed.norm", c).items()})
    res = cfg["spec"] // p
    for i, (depth, heads) in enumerate(zip(cfg["depths"], cfg["heads"])):
        for j in range(depth):
            b = f"{A}layers.{i}.blocks.{j}."
            win, shift = block_geometry(res, w, j)
            sd.update({A + k: v for k, v in ln(f"layers.{i}.blocks.{j}.norm1", c).items()})
            sd.update({A + k: v for k, v in ln(f"layers.{i}.blocks.{j}.norm2", c).items()})
            sd.update({b + "attn.relative_position_bias_table": rnd((2 * win - 1) ** 2, heads, std=0.5),
                       b + "attn.relative_position_index": relative_index(win),
                       b + "attn.qkv.weight": rnd(3 * c, c, std=0.3), b + "attn.qkv.bias": rnd(3 * c),
                       b + "attn.proj.weight": rnd(c, c, std=0.3), b + "attn.proj.bias": rnd(c),
                       b + "mlp.fc1.weight": rnd(4 * c, c, std=0.3), b + "mlp.fc1.bias": rnd(4 * c),
                       b + "mlp.fc2.weight": rnd(c, 4 * c, std=0.3), b + "mlp.fc2.bias": rnd(c)})
            if shift:
                sd[b + "attn_mask"] = shift_mask(res, win, shift)
        if i < len(cfg["depths"]) - 1:
            d = f"{A}layers.{i}.downsample."
            sd.update({d + "reduction.weight": rnd(2 * c, 4 * c, std=0.2)})
            sd.update({A + k: v for k, v in ln(f"layers.{i}.downsample.norm", 4 * c).items()})
            c, res = 2 * c, res // 2
    sd.update({A + k: v for k, v in ln("norm", c).items()})
    sf = cfg["spec"] // 2 ** (len(cfg["depths"]) - 1) // p // (cfg["spec"] // m)
    sd.update({A + "tscam_conv.weight": rnd(5, c, sf, 3), A + "tscam_conv.bias": rnd(5),
               A + "head.weight": rnd(5, 5), A + "head.bias": rnd(5)})
    proj = torch.nn.Sequential(torch.nn.Linear(c, embed_dim), torch.nn.ReLU(), torch.nn.Linear(embed_dim, embed_dim))
    sd.update({"audio_proj." + k: v for k, v in proj.state_dict().items()})
    return sd


def explicit_encode_audio(sd: dict, wave: torch.Tensor, cfg=TINY_HTSAT) -> torch.Tensor:
    """WavCaps ASE.encode_audio on (B, L) 32 kHz audio, written out from htsat.py / feature_extractor.py."""
    F = torch.nn.functional
    n_fft = cfg["n_fft"]
    x = F.pad(wave[:, None, :], (n_fft // 2, n_fft // 2), mode="reflect")
    re_ = F.conv1d(x, sd[A + "audio_feats_extractor.mel_trans.stft.conv_real.weight"], stride=320)
    im = F.conv1d(x, sd[A + "audio_feats_extractor.mel_trans.stft.conv_imag.weight"], stride=320)
    power = (re_ ** 2 + im ** 2)[:, None].transpose(2, 3)  # B, 1, T, bins
    x = 10 * torch.log10(torch.clamp(power @ sd[A + "audio_feats_extractor.log_trans.melW"], min=1e-10))
    x = F.batch_norm(x.transpose(1, 3), sd[A + "bn0.running_mean"], sd[A + "bn0.running_var"], sd[A + "bn0.weight"],
                     sd[A + "bn0.bias"], False, 0.0, 1e-5).transpose(1, 3)
    spec, fr = cfg["spec"], cfg["spec"] // cfg["n_mels"]
    x = F.interpolate(x, (spec * fr, x.shape[3]), mode="bicubic", align_corners=True)
    bsz = x.shape[0]
    x = x.permute(0, 1, 3, 2).reshape(bsz, 1, x.shape[3], fr, -1).permute(0, 1, 3, 2, 4).reshape(bsz, 1, spec, -1)

    def lnorm(t, prefix):
        return F.layer_norm(t, (t.shape[-1],), sd[A + prefix + ".weight"], sd[A + prefix + ".bias"], 1e-5)

    def lin(t, prefix):
        return t @ sd[A + prefix + ".weight"].T + sd[A + prefix + ".bias"]

    p = cfg["patch"]
    x = F.conv2d(x, sd[A + "patch_embed.proj.weight"], sd[A + "patch_embed.proj.bias"], stride=p)
    x = lnorm(x.flatten(2).transpose(1, 2), "patch_embed.norm")
    res = spec // p
    for i, (depth, heads) in enumerate(zip(cfg["depths"], cfg["heads"])):
        for j in range(depth):
            b = f"layers.{i}.blocks.{j}."
            w, s = block_geometry(res, cfg["window"], j)
            bsz, _, c = x.shape
            h = lnorm(x, b + "norm1").view(bsz, res, res, c)
            if s:
                h = torch.roll(h, (-s, -s), (1, 2))
            win = h.view(bsz, res // w, w, res // w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, c)
            qkv = lin(win, b + "attn.qkv").reshape(win.shape[0], w * w, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
            q, k, v = qkv[0] * (c // heads) ** -0.5, qkv[1], qkv[2]
            table = sd[A + b + "attn.relative_position_bias_table"]
            bias = table[sd[A + b + "attn.relative_position_index"].view(-1)].view(w * w, w * w, -1).permute(2, 0, 1)
            attn = q @ k.transpose(-2, -1) + bias[None]
            if s:
                mask = sd[A + b + "attn_mask"]
                nw = mask.shape[0]
                attn = (attn.view(-1, nw, heads, w * w, w * w) + mask[None, :, None]).view(-1, heads, w * w, w * w)
            out = lin((attn.softmax(-1) @ v).transpose(1, 2).reshape(-1, w * w, c), b + "attn.proj")
            out = out.view(bsz, res // w, res // w, w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(bsz, res, res, c)
            if s:
                out = torch.roll(out, (s, s), (1, 2))
            x = x + out.reshape(bsz, res * res, c)
            x = x + lin(F.gelu(lin(lnorm(x, b + "norm2"), b + "mlp.fc1")), b + "mlp.fc2")
        if i < len(cfg["depths"]) - 1:
            g = x.view(bsz, res, res, c)
            g = torch.cat([g[:, 0::2, 0::2], g[:, 1::2, 0::2], g[:, 0::2, 1::2], g[:, 1::2, 1::2]], -1)
            g = lnorm(g.view(bsz, -1, 4 * c), f"layers.{i}.downsample.norm")
            x = g @ sd[A + f"layers.{i}.downsample.reduction.weight"].T
            res //= 2
    x = lnorm(x, "norm")
    bsz, _, c = x.shape
    x = x.permute(0, 2, 1).reshape(bsz, c, res, res)
    cbin = res // fr
    x = x.reshape(bsz, c, res // cbin, cbin, res).permute(0, 1, 3, 2, 4).reshape(bsz, c, cbin, -1)
    latent = x.flatten(2).mean(-1)
    e = torch.relu(latent @ sd["audio_proj.0.weight"].T + sd["audio_proj.0.bias"])
    return F.normalize(e @ sd["audio_proj.2.weight"].T + sd["audio_proj.2.bias"], dim=-1)


@pytest.fixture(scope="module")
def tiny_full(tiny, tmp_path_factory):
    """A checkpoint with both towers (the text of `tiny`, a tiny HTSAT), in WavCaps' layout."""
    _, text_state = tiny
    state = {k: v for k, v in text_state.items() if not k.startswith(("audio_encoder.", "audio_proj."))}
    state.update(tiny_htsat_state())
    folder = tmp_path_factory.mktemp("full")
    path = folder / "HTSAT_BERT_zero_shot.pt"
    save_like_wavcaps(path, state)
    return path, state


def test_audio_tower_matches_the_public_math(wc, tiny, tiny_full):
    path, state = tiny_full
    tower = wc.load_wavcaps_audio(path)
    text = wc.load_wavcaps_text(path, tiny[0] / "wavcaps" / "bert-base-uncased")
    assert (tower.dim, tower.space, tower.sample_rate) == (text.dim, text.space, 32000)  # one space
    rng = np.random.default_rng(0)
    waves = [rng.normal(0, 0.1, 32000 * 7).astype(np.float32),  # padded to 10 s
             (0.5 * np.sin(2 * np.pi * 1000 * np.arange(32000 * 12 + 5) / 32000)
              * np.linspace(0, 1, 32000 * 12 + 5)).astype(np.float32)]  # a rising tone, centre-cropped to 10 s
    got = tower.encode_audio(waves)
    assert got.shape == (2, 24)
    fitted = torch.from_numpy(np.stack([wc.fit_clip(w) for w in waves]))
    assert fitted.shape == (2, 320000)
    assert torch.equal(fitted[0, :32000 * 7], torch.from_numpy(waves[0])) and not fitted[0, 32000 * 7:].any()
    start = len(waves[1]) // 2 - 160000
    assert torch.equal(fitted[1], torch.from_numpy(waves[1][start:start + 320000]))
    with torch.no_grad():
        want = explicit_encode_audio(state, fitted)
    assert (want[0] - want[1]).abs().max() > 1e-2  # inputs that differ give embeddings that differ
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    # the same model's text lands in the same space: similarities are defined
    assert (got @ text.encode_text(["a dog barking can be heard."]).T).shape == (2, 1)


@pytest.mark.parametrize("damage, match", [
    ("no_qkv", r"missing htsat\.audio_encoder\.layers\.1\.blocks\.0\.attention\.self\.key\.bias"),
    ("extra", r"unexpected audio_encoder\.audio_enc\.layers\.0\.blocks\.0\.attn\.extra\.weight"),
    ("no_mel", r"missing audio_encoder\.audio_enc\.audio_feats_extractor\.log_trans\.melW"),
    ("no_proj", r"no audio_proj\.0\.weight"),
    ("text_only", r"no audio_proj\.0\.weight"),
])
def test_wrong_or_partial_audio_checkpoint_is_one_line(wc, tiny_full, tmp_path, damage, match):
    _, state = tiny_full
    sd = dict(state)
    if damage == "no_qkv":
        sd.pop(A + "layers.1.blocks.0.attn.qkv.bias")
    elif damage == "extra":
        sd[A + "layers.0.blocks.0.attn.extra.weight"] = torch.zeros(1)
    elif damage == "no_mel":
        sd.pop(A + "audio_feats_extractor.log_trans.melW")
    elif damage == "no_proj":
        sd.pop("audio_proj.0.weight")
    elif damage == "text_only":
        sd = {k: v for k, v in sd.items() if not k.startswith(("audio_encoder.", "audio_proj."))}
    path = tmp_path / "bad.pt"
    save_like_wavcaps(path, sd)
    with pytest.raises(EncoderError, match=match) as e:
        wc.load_wavcaps_audio(path)
    assert str(path) in _one_line(e)
