"""WavCaps HTSAT-BERT CLAP (Mei et al., 2023) from its released checkpoint: the CLAP part of ClipClap-GZSL's
space ``clip-vit-b32+clap-wavcaps`` (CLIP ViT-B/32 text 512 ‖ WavCaps text 1024; audio: WavCaps 1024).

The checkpoint (``{"model": state_dict, ...}`` of WavCaps' ``ASE``): ``text_encoder.text_encoder.*`` (BERT
base, no pooler), ``text_proj`` / ``audio_proj`` (Linear(768, 1024) - ReLU - Linear(1024, 1024)), ``temp``,
``audio_encoder.audio_enc.*`` (HTSAT: STFT kernels + mel filterbank, ``bn0``, a Swin of 256x256 input, an
unused AudioSet head). Text: BERT tokens (at most 30), the last hidden state of [CLS], ``text_proj``, L2;
ClipClap-GZSL averages a class's "audio" templates so (``prompt_ensemble``). Audio: 10 s at 32 kHz
(``fit_clip``) -> |STFT|^2 (the checkpoint's kernels, hop 320) -> mel -> 10 log10 -> HTSAT -> mean of the
last map -> ``audio_proj``, L2. The Swin is ``transformers``' ``ClapAudioModel`` (the same HTSAT), WavCaps'
tensors renamed, ``qkv`` split. Configs come from the tensors' shapes; every tensor is checked (strict).

Weights, local only: ``--clap-weights FILE.pt`` (or a folder holding one ``.pt``), ``--weights DIR`` holding
``wavcaps/``, or ``$AVGZSL_WAVCAPS_WEIGHTS`` (ClipClap-GZSL's ``HTSAT_BERT_zero_shot.pt``). The BERT
tokenizer: ``$AVGZSL_WAVCAPS_TOKENIZER``, else ``bert-base-uncased/`` next to the checkpoint, else its folder.
"""
from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..spaces import join_spaces
from .text import ClipClapTextEncoder, ClipTextEncoder, TextEncoder, load_templates, prompt_ensemble, register_encoder
from .towers import EncoderError, offline_hub, quiet_transformers, require

__all__ = ["WAVCAPS_FILE", "WAVCAPS_SAMPLE_RATE", "resolve_wavcaps", "read_wavcaps_state", "wavcaps_space_name",
           "WavCapsText", "build_wavcaps_text", "load_wavcaps_text", "WavCapsTextEncoder", "ClipClapWavCapsTextEncoder",
           "WavCapsAudio", "build_wavcaps_audio", "load_wavcaps_audio", "fit_clip"]

WAVCAPS_FILE = "HTSAT_BERT_zero_shot.pt"  # the name ClipClap-GZSL gives the WavCaps zero-shot checkpoint
WAVCAPS_MAX_TOKENS = 30  # WavCaps TextEncoder: truncation=True, max_length=30
WAVCAPS_SAMPLE_RATE, WAVCAPS_CLIP_SECONDS = 32000, 10  # audio_args.sr; ClipClap-GZSL's clip length
WAVCAPS_HOP = 320  # audio_args.hop_length (the STFT stride; not in the checkpoint)
_ENV, _TOK_ENV = "AVGZSL_WAVCAPS_WEIGHTS", "AVGZSL_WAVCAPS_TOKENIZER"
_BERT = "text_encoder.text_encoder."
# buffers an older transformers (the 4.24 WavCaps used) saved with a BertModel; not weights
_OLD_BUFFERS = (_BERT + "embeddings.position_ids", _BERT + "embeddings.token_type_ids")
_AUDIO_PREFIXES = ("audio_encoder.", "audio_proj.")

_DOWNLOAD = (f"download the WavCaps HTSAT-BERT zero-shot checkpoint (ClipClap-GZSL's {WAVCAPS_FILE}) from the "
             f"WavCaps release (github.com/XinhaoMei/WavCaps, retrieval/README.md: Pretrained Models)")
_WHERE = f"point to it with --clap-weights FILE.pt, --weights DIR (holding wavcaps/{WAVCAPS_FILE}) or ${_ENV}"
_TOKENIZER_HINT = (f"put bert-base-uncased's vocab.txt in bert-base-uncased/ next to the checkpoint or point "
                   f"${_TOK_ENV} to such a folder; make it on a machine with internet access with `hf download "
                   f"bert-base-uncased vocab.txt tokenizer_config.json --local-dir DIR/bert-base-uncased`")


def wavcaps_space_name(embed_dim: int, text_width: int) -> str:
    """The WavCaps CLAP space: ``clap-wavcaps`` for HTSAT-BERT's 1024-d (BERT base), else its shape."""
    return "clap-wavcaps" if (embed_dim, text_width) == (1024, 768) else f"clap-wavcaps-w{text_width}-d{embed_dim}"


# ---- where the weights are -----------------------------------------------------------------------

def _pick_checkpoint(folder: Path, source: str) -> Path:
    found = [folder / WAVCAPS_FILE] if (folder / WAVCAPS_FILE).is_file() else sorted(folder.glob("*.pt"))
    if len(found) != 1:
        raise EncoderError(f"{folder} ({source}): " + (f"{len(found)} .pt files, name one with --clap-weights FILE.pt"
                           if found else f"no WavCaps checkpoint (.pt) in this folder; {_DOWNLOAD}"))
    return found[0]


def resolve_wavcaps(weights: str | Path | None = None, clap_weights: str | Path | None = None,
                    need_tokenizer: bool = True) -> tuple[Path, Path | None]:
    """(checkpoint, tokenizer folder or None if not `need_tokenizer`), in the order of the module docstring;
    anything missing is a one-line EncoderError saying what to download and where to put it."""
    if clap_weights:
        path, source = Path(clap_weights), "--clap-weights"
    elif weights:
        path, source = Path(weights) / "wavcaps", "--weights"
    elif os.environ.get(_ENV):
        path, source = Path(os.environ[_ENV]), f"${_ENV}"
    else:
        raise EncoderError(f"no WavCaps CLAP weights given: {_DOWNLOAD}; {_WHERE}")
    if not path.exists():
        raise EncoderError(f"{path} ({source}): no such file or folder; {_DOWNLOAD}; {_WHERE}")
    ckpt = _pick_checkpoint(path, source) if path.is_dir() else path
    return ckpt, _resolve_tokenizer(ckpt) if need_tokenizer else None


def _resolve_tokenizer(ckpt: Path) -> Path:
    env = os.environ.get(_TOK_ENV)
    for folder in [Path(env)] if env else [ckpt.parent / "bert-base-uncased", ckpt.parent]:
        if (folder / "vocab.txt").is_file() or (folder / "tokenizer.json").is_file():
            return folder
    if env:
        raise EncoderError(f"{env} (${_TOK_ENV}): no BERT tokenizer here (vocab.txt or tokenizer.json); "
                           f"{_TOKENIZER_HINT}")
    raise EncoderError(f"{ckpt}: no BERT tokenizer for the WavCaps text tower (no vocab.txt or tokenizer.json in "
                       f"{ckpt.parent / 'bert-base-uncased'} or {ckpt.parent}); {_TOKENIZER_HINT}")


# ---- the checkpoint ------------------------------------------------------------------------------

def read_wavcaps_state(path: Path) -> dict[str, torch.Tensor]:
    """The ASE state dict of a WavCaps checkpoint (its ``model`` entry, or a bare state dict)."""
    try:
        # memory-mapped where possible: the file also holds the optimizer's state, which is never read
        obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as e:  # unpickling refused, truncated file, not a torch file
        msg = (str(e).strip().splitlines() or [""])[0][:160]
        raise EncoderError(f"{path}: not a readable WavCaps checkpoint ({type(e).__name__}: {msg}); "
                           f"{_DOWNLOAD}") from None
    state = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EncoderError(f"{path}: not a WavCaps checkpoint (expected a dict with a 'model' state dict of "
                           f"tensors); {_DOWNLOAD}")
    return state


def _need(state: dict[str, torch.Tensor], key: str, path: Path) -> torch.Tensor:
    if key not in state:
        raise EncoderError(f"{path}: not a WavCaps HTSAT-BERT checkpoint: no {key} (first tensors: "
                           f"{_first(state)}); {_DOWNLOAD}")
    return state[key]


def _bert_config(state: dict[str, torch.Tensor], path: Path):
    """A BertConfig of the shape of the checkpoint's BERT (heads: BERT's 64 dims per head)."""
    transformers = require("transformers")

    def get(key: str) -> torch.Tensor:
        return _need(state, _BERT + key, path)
    vocab, hidden = get("embeddings.word_embeddings.weight").shape
    layers = {int(m.group(1)) for k in state if (m := re.match(re.escape(_BERT) + r"encoder\.layer\.(\d+)\.", k))}
    return transformers.BertConfig(
        vocab_size=int(vocab), hidden_size=int(hidden), num_hidden_layers=max(layers) + 1 if layers else 0,
        num_attention_heads=max(1, int(hidden) // 64),
        intermediate_size=int(get("encoder.layer.0.intermediate.dense.weight").shape[0]),
        max_position_embeddings=int(get("embeddings.position_embeddings.weight").shape[0]),
        type_vocab_size=int(get("embeddings.token_type_embeddings.weight").shape[0]),
        hidden_act="gelu", layer_norm_eps=1e-12, pad_token_id=0)


def _projection(width: int, embed: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, embed), nn.ReLU(), nn.Linear(embed, embed))


class WavCapsText(nn.Module):
    """The text side of WavCaps' ASE, with its parameter names: ``text_encoder.text_encoder`` (BERT, no
    pooler) and ``text_proj``. ``forward(input_ids, attention_mask)`` -> unit (N, embed_dim)."""

    def __init__(self, bert_config, embed_dim: int):
        super().__init__()
        transformers = require("transformers")
        bert = transformers.BertModel(bert_config, add_pooling_layer=False)
        self.text_encoder = nn.ModuleDict({"text_encoder": bert})  # WavCaps' TextEncoder wrapper
        self.text_width, self.dim = int(bert_config.hidden_size), int(embed_dim)
        self.text_proj = _projection(self.text_width, self.dim)
        self.space = wavcaps_space_name(self.dim, self.text_width)
        self.tokenizer = self.path = self.tokenizer_path = None  # set by load_wavcaps_text

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.text_encoder["text_encoder"](input_ids=input_ids, attention_mask=attention_mask)[0]
        return nn.functional.normalize(self.text_proj(hidden[:, 0, :]), dim=-1)

    @torch.inference_mode()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """WavCaps' ``ASE.encode_text``: (N, dim) unit vectors."""
        enc = self.tokenizer(list(texts), padding="longest", truncation=True, max_length=WAVCAPS_MAX_TOKENS,
                             return_tensors="pt")
        device = self.text_proj[0].weight.device
        return self(enc["input_ids"].to(device), enc["attention_mask"].to(device)).float()


def _first(keys, n: int = 3) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def _strict_load(model: nn.Module, given: dict, path: Path, what: str) -> nn.Module:
    """Load `given` into `model` only if names and shapes match exactly; else a one-line EncoderError."""
    expected = model.state_dict()
    missing, unexpected = set(expected) - set(given), set(given) - set(expected)
    if missing or unexpected:
        parts = [f"{word} {_first(keys)}" for word, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
        raise EncoderError(f"{path}: not the WavCaps HTSAT-BERT layout ({what}): {'; '.join(parts)}; {_DOWNLOAD}")
    bad = [k for k in expected if tuple(expected[k].shape) != tuple(given[k].shape)]
    if bad:
        raise EncoderError(f"{path}: {bad[0]} has shape {tuple(given[bad[0]].shape)}, the {what} inferred from the "
                           f"checkpoint expects {tuple(expected[bad[0]].shape)} ({len(bad)} tensors differ)")
    model.load_state_dict(given, strict=True)
    return model.eval()


def build_wavcaps_text(state: dict[str, torch.Tensor], path: str | Path = "checkpoint") -> WavCapsText:
    """WavCaps' text tower + projection from an ASE state dict, every tensor checked (names and shapes)."""
    path = Path(path)
    embed = int(_need(state, "text_proj.0.weight", path).shape[0])
    with quiet_transformers():
        model = WavCapsText(_bert_config(state, path), embed)
    given = {k: v for k, v in state.items()
             if not k.startswith(_AUDIO_PREFIXES) and k != "temp" and k not in _OLD_BUFFERS}
    return _strict_load(model, given, path, "text tower")


def load_wavcaps_text(path: str | Path, tokenizer_path: str | Path, device: str = "cpu") -> WavCapsText:
    """The WavCaps text tower of checkpoint `path`, with the BERT tokenizer of folder `tokenizer_path`
    (``.encode_text(texts)``; ``.space``, ``.dim``, ``.path``, ``.tokenizer_path``)."""
    offline_hub()
    transformers = require("transformers")
    path, tokenizer_path = Path(path).resolve(), Path(tokenizer_path).resolve()
    text = build_wavcaps_text(read_wavcaps_state(path), path).to(device)
    try:
        with quiet_transformers():
            tok = transformers.BertTokenizerFast.from_pretrained(str(tokenizer_path), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise EncoderError(f"{tokenizer_path}: no usable BERT tokenizer ({type(e).__name__}: "
                           f"{(str(e).splitlines() or [''])[0][:160]}); {_TOKENIZER_HINT}") from None
    vocab = text.text_encoder["text_encoder"].config.vocab_size
    if len(tok) > vocab:
        raise EncoderError(f"{tokenizer_path}: a tokenizer of {len(tok)} tokens, but the BERT of {path.name} has "
                           f"{vocab}: not its tokenizer; {_TOKENIZER_HINT}")
    text.tokenizer, text.path, text.tokenizer_path = tok, path, tokenizer_path
    return text


# ---- text encoders -------------------------------------------------------------------------------

class WavCapsTextEncoder(TextEncoder):
    """WavCaps HTSAT-BERT text tower; templates: the "audio" list of the set (ClipClap-GZSL's)."""

    name = "wavcaps"  # not registered alone: its space is only ever used joined to CLIP's

    def __init__(self, *, weights=None, clip_weights=None, clap_weights=None, templates=None, device="cpu",
                 batch_size: int = 256):
        ckpt, tok = resolve_wavcaps(weights, clap_weights)
        self.tower = load_wavcaps_text(ckpt, tok, device)
        self.templates = load_templates(templates)["audio"]
        self.space, self.dim, self.batch_size = self.tower.space, self.tower.dim, batch_size

    def _embed(self, texts: list[str]) -> np.ndarray:  # also what encode_sentences embeds with
        return self.tower.encode_text(texts).cpu().numpy()

    def encode(self, names: Sequence[str], progress: bool = False) -> np.ndarray:
        return prompt_ensemble(self._embed, names, self.templates, self.batch_size, progress, desc=self.name)

    def describe(self) -> dict:
        return {"weights": str(self.tower.path), "tokenizer": str(self.tower.tokenizer_path),
                "templates": list(self.templates)}


@register_encoder("clipclap-wavcaps")
class ClipClapWavCapsTextEncoder(ClipClapTextEncoder):
    """CLIP ‖ WavCaps CLAP text (CLIP first), each with its own template list: the text of ClipClap-GZSL's
    released features (``clip-vit-b32+clap-wavcaps``, 512 + 1024)."""

    def __init__(self, *, weights=None, clip_weights=None, clap_weights=None, templates=None, device="cpu"):
        self.clip = ClipTextEncoder(weights=weights, clip_weights=clip_weights, templates=templates, device=device)
        self.clap = WavCapsTextEncoder(weights=weights, clap_weights=clap_weights, templates=templates, device=device)
        self.space, self.dim = join_spaces(self.clip.space, self.clap.space), self.clip.dim + self.clap.dim


# ---- the audio tower -----------------------------------------------------------------------------

_HTSAT = "audio_encoder.audio_enc."
_FRONT = {"audio_feats_extractor.mel_trans.stft.conv_real.weight": "conv_real",
          "audio_feats_extractor.mel_trans.stft.conv_imag.weight": "conv_imag",
          "audio_feats_extractor.log_trans.melW": "mel"}
# WavCaps HTSAT block modules -> transformers ClapAudio block modules (attn.qkv: split into query/key/value)
_BLOCK = {"norm1": "layernorm_before", "norm2": "layernorm_after", "attn": "attention.self",
          "attn.proj": "attention.output.dense", "mlp.fc1": "intermediate.dense", "mlp.fc2": "output.dense"}
_UNUSED = ("tscam_conv.", "head.")  # the AudioSet classifier after the embedding


def fit_clip(wave: np.ndarray, sample_rate: int = WAVCAPS_SAMPLE_RATE, seconds: float = WAVCAPS_CLIP_SECONDS):
    """ClipClap-GZSL's read_prepare_audio: mono audio zero-padded at the end, or centre-cropped, to 10 s."""
    wave, n = np.asarray(wave, dtype=np.float32).reshape(-1), int(round(sample_rate * seconds))
    start = max(0, len(wave) // 2 - n // 2)
    return np.pad(wave, (0, n - len(wave))) if len(wave) < n else wave[start:start + n]


class _LogMel(nn.Module):
    """WavCaps' AudioFeature from the checkpoint's kernels: |STFT|^2 (centred, reflect), mel, 10 log10."""

    def __init__(self, n_fft: int, n_mels: int, hop: int = WAVCAPS_HOP):
        super().__init__()
        self.n_fft, self.hop, bins = n_fft, hop, n_fft // 2 + 1
        for name, shape in (("conv_real", (bins, 1, n_fft)), ("conv_imag", (bins, 1, n_fft)), ("mel", (bins, n_mels))):
            self.register_parameter(name, nn.Parameter(torch.zeros(shape), requires_grad=False))

    def forward(self, wave: torch.Tensor) -> torch.Tensor:  # (B, L) -> (B, 1, frames, n_mels)
        x = nn.functional.pad(wave[:, None, :], (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        real, imag = (nn.functional.conv1d(x, k, stride=self.hop) for k in (self.conv_real, self.conv_imag))
        power = (real ** 2 + imag ** 2).transpose(1, 2)[:, None]  # (B, 1, frames, bins)
        return 10.0 * torch.log10(torch.clamp(power @ self.mel, min=1e-10))


class WavCapsAudio(nn.Module):
    """WavCaps' ASE.encode_audio: waveform (B, L) at 32 kHz -> unit (B, embed_dim)."""

    def __init__(self, audio_config, n_fft: int, embed_dim: int):
        super().__init__()
        transformers = require("transformers")
        self.front = _LogMel(n_fft, int(audio_config.num_mel_bins))
        self.htsat = transformers.ClapAudioModel(audio_config)
        width = int(audio_config.patch_embeds_hidden_size * 2 ** (len(audio_config.depths) - 1))
        self.audio_width, self.dim, self.sample_rate = width, int(embed_dim), WAVCAPS_SAMPLE_RATE
        self.audio_proj = _projection(width, self.dim)
        self.space, self.path = wavcaps_space_name(self.dim, 768), None  # set by load_wavcaps_audio

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        pooled = self.htsat(input_features=self.front(wave)).pooler_output
        return nn.functional.normalize(self.audio_proj(pooled), dim=-1)

    @torch.inference_mode()
    def encode_audio(self, waves: Sequence[np.ndarray]) -> torch.Tensor:
        """Mono 32 kHz waveforms -> (N, dim) unit vectors; each fitted to 10 s first (``fit_clip``)."""
        batch = torch.from_numpy(np.stack([fit_clip(w) for w in waves]))
        return self(batch.to(self.audio_proj[0].weight.device)).float()


def _audio_config(state: dict[str, torch.Tensor], path: Path):
    """A ClapAudioConfig of the shape of the checkpoint's HTSAT."""
    transformers = require("transformers")

    def get(key: str) -> torch.Tensor:
        return _need(state, _HTSAT + key, path)
    embed, _, patch, _ = get("patch_embed.proj.weight").shape
    blocks = {(int(m.group(1)), int(m.group(2))) for k in state
              if (m := re.match(re.escape(_HTSAT) + r"layers\.(\d+)\.blocks\.(\d+)\.", k))}
    window = int(round(get("layers.0.blocks.0.attn.relative_position_index").shape[0] ** 0.5))
    n_layers = max(i for i, _ in blocks) + 1
    depths = [1 + max((j for i, j in blocks if i == layer), default=-1) for layer in range(n_layers)]
    heads = [int(get(f"layers.{i}.blocks.0.attn.relative_position_bias_table").shape[1]) for i in range(n_layers)]
    mask = state.get(_HTSAT + "layers.0.blocks.1.attn_mask")  # (spec / patch / window)^2 windows; else HTSAT's 256
    spec = int(round(mask.shape[0] ** 0.5)) * window * int(patch) if mask is not None else 256
    mlp = get("layers.0.blocks.0.mlp.fc1.weight").shape[0] / embed
    return transformers.ClapAudioConfig(
        depths=depths, num_attention_heads=heads, patch_embeds_hidden_size=int(embed),
        hidden_size=int(embed) * 2 ** (n_layers - 1), window_size=window, spec_size=spec,
        num_mel_bins=int(get("bn0.weight").shape[0]), patch_size=int(patch), patch_stride=[int(patch), int(patch)],
        mlp_ratio=float(mlp), enable_fusion=False, enable_patch_layer_norm=_HTSAT + "patch_embed.norm.weight" in state,
        drop_path_rate=0.0, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, hidden_act="gelu",
        layer_norm_eps=1e-5, qkv_bias=_HTSAT + "layers.0.blocks.0.attn.qkv.bias" in state)


def _rename_htsat(state: dict[str, torch.Tensor], path: Path) -> tuple[dict, dict]:
    """WavCaps' HTSAT tensors -> (front-end tensors, ClapAudioModel tensors). A tensor of no known role
    is an EncoderError."""
    front, clap, unknown = {}, {}, []
    block = re.compile(r"layers\.(\d+)\.blocks\.(\d+)\.(.+)\.([^.]+)$")
    for key, value in state.items():
        if not key.startswith(_HTSAT):
            continue
        rest = key[len(_HTSAT):]
        if rest in _FRONT:
            front[_FRONT[rest]] = value
        elif rest.startswith(_UNUSED) or re.fullmatch(r"layers\.\d+\.blocks\.\d+\.attn_mask", rest):
            continue  # the classifier; the shift masks (recomputed by ClapAudio)
        elif rest.startswith("bn0."):
            clap["audio_encoder.batch_norm." + rest[4:]] = value
        elif rest.startswith(("patch_embed.", "norm.")) or re.match(r"layers\.\d+\.downsample\.", rest):
            clap["audio_encoder." + rest] = value
        elif (m := block.match(rest)) and (m.group(3) == "attn.qkv" or m.group(3) in _BLOCK):
            i, j, name, leaf = m.groups()
            head = f"audio_encoder.layers.{i}.blocks.{j}."
            if name == "attn.qkv":
                for part, chunk in zip(("query", "key", "value"), value.chunk(3, dim=0)):
                    clap[f"{head}attention.self.{part}.{leaf}"] = chunk.contiguous()
            else:
                clap[f"{head}{_BLOCK[name]}.{leaf}"] = value
        else:
            unknown.append(key)
    if unknown:
        raise EncoderError(f"{path}: not the WavCaps HTSAT-BERT layout: unexpected {_first(unknown)}; {_DOWNLOAD}")
    return front, clap


def build_wavcaps_audio(state: dict[str, torch.Tensor], path: str | Path = "checkpoint") -> WavCapsAudio:
    """WavCaps' audio tower + projection from an ASE state dict, every tensor checked (names and shapes)."""
    path = Path(path)
    embed = int(_need(state, "audio_proj.0.weight", path).shape[0])
    cfg = _audio_config(state, path)
    front, clap = _rename_htsat(state, path)
    if len(front) < len(_FRONT):
        missing = [_HTSAT + k for k, v in _FRONT.items() if v not in front]
        raise EncoderError(f"{path}: not the WavCaps HTSAT-BERT layout: missing {_first(missing)}; {_DOWNLOAD}")
    with quiet_transformers():
        model = WavCapsAudio(cfg, int(front["conv_real"].shape[-1]), embed)
    given = {**{"front." + k: v for k, v in front.items()}, **{"htsat." + k: v for k, v in clap.items()},
             **{k: v for k, v in state.items() if k.startswith("audio_proj.")}}
    return _strict_load(model, given, path, "audio tower, names as loaded")


def load_wavcaps_audio(path: str | Path, device: str = "cpu") -> WavCapsAudio:
    """The WavCaps audio tower of checkpoint `path` (no tokenizer needed; ``.encode_audio(waves)``)."""
    offline_hub()
    state = read_wavcaps_state(path := Path(path).resolve())
    audio = build_wavcaps_audio(state, path).to(device)
    width = int(state["text_proj.0.weight"].shape[1]) if "text_proj.0.weight" in state else 768
    audio.space, audio.path = wavcaps_space_name(audio.dim, width), path
    return audio
