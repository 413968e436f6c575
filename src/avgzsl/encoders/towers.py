"""CLIP and CLAP towers from local folders: weight resolution, loading, pooled and normalised outputs.

Weights are read from local folders only (nothing is downloaded): ``weights=DIR`` (the model
folder, or a folder holding ``clip/`` and ``clap/``), or ``clip_weights=`` / ``clap_weights=``
explicitly, or the environment variables ``AVGZSL_CLIP_WEIGHTS`` / ``AVGZSL_CLAP_WEIGHTS``. A missing
package or folder is an ``EncoderError`` (one line: what to install or where to point). A loaded
tower carries the name of its space (``src/avgzsl/spaces.py``).
"""
from __future__ import annotations

import importlib
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import AvgzslError
from ..spaces import clap_space_name, clip_space_name

__all__ = ["EncoderError", "INSTALL_HINT", "LoadedTower", "require", "offline_hub", "quiet_transformers",
           "resolve_weights", "load_clip", "load_clap", "pooled_features", "l2_normalise", "max_text_length"]

INSTALL_HINT = "pip install 'avgzsl[predict]'"


class EncoderError(AvgzslError):
    """An encoder or extractor cannot run: a missing package or missing/unreadable weights."""


def require(module: str, package: str | None = None):
    """Import an optional dependency or raise a one-line EncoderError naming what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise EncoderError(f"the Python package {package or module!r} is needed here but is not installed "
                           f"({e.msg}); install it with: {INSTALL_HINT}") from None


def offline_hub() -> None:
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


def pooled_features(out):
    """The pooled output of ``get_*_features``: transformers 4.x returns a tensor, 5.x an output
    object (its ``pooler_output``)."""
    return out if hasattr(out, "shape") else out.pooler_output


def l2_normalise(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm, in float32."""
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
def quiet_transformers():
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
    offline_hub()
    transformers = require("transformers")  # optional (the predict extra): imported only here
    with quiet_transformers():
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


def load_clip(path: str | Path, device: str = "cpu", image: bool = False) -> LoadedTower:
    """A CLIP folder in transformers format (``CLIPModel.save_pretrained`` or a Hub snapshot)."""
    path = Path(path).resolve()
    model, tok, proc = _load_parts(path, "CLIPModel", image, "CLIP")
    model = model.to(device).eval()
    cfg = model.config
    space = clip_space_name(cfg.vision_config.patch_size, cfg.vision_config.hidden_size, cfg.projection_dim)
    return LoadedTower(model, tok, proc, space, int(cfg.projection_dim), path, str(device))


def load_clap(path: str | Path, device: str = "cpu", audio: bool = False) -> LoadedTower:
    """A CLAP folder in transformers format (``ClapModel.save_pretrained``, e.g. laion/clap-htsat-unfused)."""
    path = Path(path).resolve()
    model, tok, proc = _load_parts(path, "ClapModel", audio, "CLAP")
    model = model.to(device).eval()
    cfg = model.config
    return LoadedTower(model, tok, proc, clap_space_name(cfg.projection_dim), int(cfg.projection_dim), path,
                       str(device))


def max_text_length(tok, max_positions: int) -> int:
    """The longest prompt (in tokens) a text tower takes: its tokenizer's limit, at most `max_positions`."""
    m = getattr(tok, "model_max_length", None) or max_positions
    return int(min(m, max_positions))
