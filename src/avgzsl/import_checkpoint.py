"""Checkpoints of published code as avgzsl run folders (`avgzsl import-checkpoint FAMILY PATH --out DIR`).

Supported families (`FAMILIES`): ``clipclap``, the checkpoints of the public ClipClap-GZSL code
(Kurzendörfer et al., CVPRW 2024). Its `src/utils.py:save_best_model` saves

    {"epoch": epoch + 1, "model": ClipClap_model.state_dict(), "optimizer": optimizer.state_dict(),
     "metric": "score" | "loss"}

as `ClipClap_model_<metric>.pt` (the best epoch of a run) and `checkpoints/ClipClap_model_<metric>_ckpt_<E>.pt`
(every epoch of the stage that retrains on train+val; `get_evaluation.py` evaluates the one at the best
stage-A epoch). `ClipClap_model` (`src/clipclap_model.py`) holds six `EmbeddingNet` blocks, each an
`nn.Sequential` named `fc` of Linear -> BatchNorm1d -> ReLU -> Dropout groups: O_enc, W_enc (one group),
O_proj, D_o (two groups; `embeddings_batch_norm: false` drops the first group's BatchNorm only), W_proj,
D_w (one group). Ours (`avgzsl.models.clipclap`) has the same blocks without the `fc` level; the key
table is `clipclap_key_map`, written out per layer, not guessed from shapes.

What the state dict does not say, and how it is set: the feature split of a 1536-d O_enc input (the
release's CLIP video 512 first, then WavCaps CLAP audio 1024: the public code hard-codes both), the
dropout rates (not used at evaluation; avgzsl's defaults are written), and the calibration β, which the
public code computes at evaluation time (`get_evaluation.py`, "Best beta combined" in its log) and never
stores: it is taken from the caller (default 0.0, with a warning) and recorded in `imported.json`.

The file is read with ``torch.load(weights_only=True)`` only: a checkpoint that needs anything else (a
pickled class instance, a function) is refused in one line and nothing else is tried. Every problem is
one AvgzslError naming the file; the run folder is written to a temporary sibling and renamed into place
at the end, so a failed import leaves no output folder.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import numbers
import os
import pickle
import re
import shutil
import time
import uuid
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
import yaml

from . import __version__
from .checkpoint import read_checkpoint, save_checkpoint
from .config import RunConfig
from .data.types import FeatureDims
from .errors import AvgzslError
from .io import write_errors, write_json, write_text
from .models import build_model, config_dict, model_config
from .runfolder import RunFolder, environment
from .runlock import run_lock
from .settings import short
from .spaces import get_space

log = logging.getLogger("avgzsl.import_checkpoint")

__all__ = ["FAMILIES", "import_checkpoint", "import_clipclap", "clipclap_key_map", "describe_import",
           "IMPORTED"]

FAMILIES = ("clipclap",)
IMPORTED = "imported.json"  # the run folder's record of where its model came from

# ---- ClipClap-GZSL ---------------------------------------------------------------------------------

CLIPCLAP_TEXT_SPACE = "clip-vit-b32+clap-wavcaps"  # the release's class text: CLIP 512 then WavCaps CLAP 1024
CLIPCLAP_FEATURE_SET = "clipclap"
CLIPCLAP_VIDEO_DIM, CLIPCLAP_AUDIO_DIM = 512, 1024  # hard-coded in ClipClap_model.__init__ per --modality
CLIPCLAP_MODULES = ("O_enc", "W_enc", "O_proj", "D_o", "W_proj", "D_w")

_PARAMS = {
    "linear": ("weight", "bias"),
    "bn": ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"),
}

# Per block: (index in the public `<block>.fc` Sequential, index in ours, layer kind). ReLU and Dropout
# hold no weights. Both codes number the same layers alike; the table says so layer by layer.
_ONE_GROUP = ((0, 0, "linear"), (1, 1, "bn"))  # Linear BN ReLU Dropout
_CLIPCLAP_LAYERS = {
    # embeddings_batch_norm: true (config/clipclap.yaml, the released runs)
    True: {
        "O_enc": _ONE_GROUP,
        "W_enc": _ONE_GROUP,
        "O_proj": ((0, 0, "linear"), (1, 1, "bn"), (4, 4, "linear"), (5, 5, "bn")),  # L BN R D L BN R D
        "D_o": ((0, 0, "linear"), (1, 1, "bn"), (4, 4, "linear"), (5, 5, "bn")),
        "W_proj": _ONE_GROUP,
        "D_w": _ONE_GROUP,
    },
    # embeddings_batch_norm: false: the hidden group of O_proj/D_o loses its BatchNorm; every output
    # BatchNorm stays (ours: batch_norm=false, batch_norm_scope=hidden)
    False: {
        "O_enc": _ONE_GROUP,
        "W_enc": _ONE_GROUP,
        "O_proj": ((0, 0, "linear"), (3, 3, "linear"), (4, 4, "bn")),  # L R D L BN R D
        "D_o": ((0, 0, "linear"), (3, 3, "linear"), (4, 4, "bn")),
        "W_proj": _ONE_GROUP,
        "D_w": _ONE_GROUP,
    },
}

# O_enc's input width -> --modality (ClipClap_model.__init__: both = concat[video, audio])
_CLIPCLAP_MODALITY = {CLIPCLAP_VIDEO_DIM + CLIPCLAP_AUDIO_DIM: "both", CLIPCLAP_AUDIO_DIM: "audio",
                      CLIPCLAP_VIDEO_DIM: "video"}
# W_enc's input width -> which columns of the 1536-d text it reads (forward: w[:, 512:] for the WavCaps
# part, w[:, :512] for CLIP, all of it otherwise) = our text_part
_CLIPCLAP_TEXT_PART = {1536: "all", 1024: "clap", 512: "clip"}


def clipclap_key_map(batch_norm: bool = True) -> dict[str, str]:
    """Public ClipClap_model state-dict key -> avgzsl clipclap key, for embeddings_batch_norm=`batch_norm`."""
    out = {}
    for block, layers in _CLIPCLAP_LAYERS[bool(batch_norm)].items():
        for public, ours, kind in layers:
            for p in _PARAMS[kind]:
                out[f"{block}.fc.{public}.{p}"] = f"{block}.{ours}.{p}"
    return out


def _first(keys, n: int = 3) -> str:
    keys = list(keys)
    more = f" (and {len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(short(k) for k in keys[:n]) + more


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise AvgzslError(f"{path}: no such checkpoint file")
    try:
        return path.read_bytes()
    except OSError as e:
        raise AvgzslError(f"{path}: cannot read ({e.strerror or type(e).__name__})") from None


def _safe_load(data: bytes, where: str):
    """torch.load(weights_only=True) and nothing else: a refusal is one line, no second try."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad or unsafe file
        text = str(e)
        m = re.search(r"GLOBAL ([\w.]+)", text)
        if isinstance(e, pickle.UnpicklingError) and m:
            raise AvgzslError(f"{where}: refused by torch.load(weights_only=True): it needs {m[1]}, which is not "
                              f"a tensor or plain value; nothing from the file was run") from None
        lines = [x.strip() for x in text.splitlines() if x.strip()]
        detail = next((x for x in lines if "Unsupported" in x), lines[0] if lines else "")
        raise AvgzslError(f"{where}: not a checkpoint torch.load(weights_only=True) can read "
                          f"({type(e).__name__}: {detail[:200]})") from None


def _find_state_dict(obj, where: str) -> tuple[dict, str | None]:
    """The model's weights: under "model" (save_best_model), "state_dict", or the top level itself."""
    def looks(d) -> bool:
        return isinstance(d, Mapping) and any(isinstance(k, str) and k.removeprefix("module.").split(".")[0]
                                              in CLIPCLAP_MODULES for k in d)
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict", "model_state_dict"):
            if key in obj and looks(obj[key]):
                return dict(obj[key]), key
        if looks(obj):
            return dict(obj), None
        keys = f"top-level keys {_first(obj, 6)}" if obj else "an empty dict"
    else:
        keys = f"a {type(obj).__name__}"
    raise AvgzslError(f"{where}: holds no ClipClap-GZSL ClipClap_model weights (expected the dict of "
                      f"src/utils.py:save_best_model with them under 'model', or a bare state_dict; found {keys})")


def _matrix(state: dict, key: str, where: str) -> tuple[int, int]:
    t = state[key]
    if t.ndim != 2:
        raise AvgzslError(f"{where}: {key} has shape {tuple(t.shape)}; a Linear weight is (out, in)")
    return int(t.shape[0]), int(t.shape[1])


def _clipclap_layout(state: dict, where: str) -> tuple[dict[str, str], dict, FeatureDims, dict]:
    """(key map, our model config, dims, what was inferred) for a public state dict; every key checked."""
    # O_proj.fc.1 is BatchNorm1d (embeddings_batch_norm: true), or a ReLU, which has no keys
    batch_norm = any(isinstance(k, str) and k.startswith("O_proj.fc.1.") for k in state)
    key_map = clipclap_key_map(batch_norm)
    missing = [k for k in key_map if k not in state]
    unknown = [k for k in state if k not in key_map]
    if missing:
        raise AvgzslError(f"{where}: not a ClipClap-GZSL ClipClap_model state dict: missing {_first(missing)}")
    if unknown:
        raise AvgzslError(f"{where}: not a ClipClap-GZSL ClipClap_model state dict: unexpected {_first(unknown)}")
    for k in key_map:
        if not isinstance(state[k], torch.Tensor):
            raise AvgzslError(f"{where}: {k} is a {type(state[k]).__name__}, not a tensor")
    hidden, d_in = _matrix(state, "O_enc.fc.0.weight", where)
    _, d_text = _matrix(state, "W_enc.fc.0.weight", where)
    decoder_hidden, _ = _matrix(state, "O_proj.fc.0.weight", where)
    dim_out, _ = _matrix(state, f"O_proj.fc.{4 if batch_norm else 3}.weight", where)
    if d_in not in _CLIPCLAP_MODALITY:
        raise AvgzslError(f"{where}: O_enc takes {d_in}-d input; the public ClipClap_model takes 1536 (video 512 + "
                          f"audio 1024, --modality both), 1024 (audio) or 512 (video), the release's features")
    if d_text not in _CLIPCLAP_TEXT_PART:
        raise AvgzslError(f"{where}: W_enc takes {d_text}-d text; the public ClipClap_model reads 1536 (CLIP + "
                          f"WavCaps), 1024 (WavCaps) or 512 (CLIP) columns of the release's 1536-d class text")
    if decoder_hidden != hidden:
        raise AvgzslError(f"{where}: decoder_hidden_size={decoder_hidden} differs from the encoders' width {hidden}; "
                          f"avgzsl's clipclap has one width for both (clipclap.hidden), so this model has no "
                          f"avgzsl equivalent")
    settings = {"hidden": hidden, "dim_out": dim_out, "batch_norm": batch_norm, "batch_norm_scope": "hidden",
                "modalities": _CLIPCLAP_MODALITY[d_in], "text_part": _CLIPCLAP_TEXT_PART[d_text]}
    cfg = model_config("clipclap", settings, where=f"{where}: inferred settings")
    text_dim = get_space(CLIPCLAP_TEXT_SPACE).dim
    dims = FeatureDims(audio=CLIPCLAP_AUDIO_DIM, video=CLIPCLAP_VIDEO_DIM, text=text_dim, temporal=False,
                       feature_set=CLIPCLAP_FEATURE_SET)
    with torch.device("meta"):  # shapes only
        expected = build_model("clipclap", cfg, dims).state_dict()
    if set(key_map.values()) != set(expected):  # the table and our model disagree: a bug here, not the file's
        raise AvgzslError(f"{where}: the ClipClap-GZSL key table does not cover avgzsl's clipclap model "
                          f"({_first(sorted(set(expected) ^ set(key_map.values())))}); please report this")
    for public, ours in key_map.items():
        got, want = state[public], expected[ours]
        if tuple(got.shape) != tuple(want.shape):
            raise AvgzslError(f"{where}: {public} has shape {tuple(got.shape)}, but a ClipClap_model with "
                              f"{settings['modalities']} input, {settings['text_part']} text, width {hidden} and "
                              f"embedding dim {dim_out} has {tuple(want.shape)} there")
        if got.dtype.is_floating_point != want.dtype.is_floating_point:
            raise AvgzslError(f"{where}: {public} has dtype {got.dtype}, expected {want.dtype}")
        if got.dtype.is_floating_point and not bool(torch.isfinite(got).all()):
            raise AvgzslError(f"{where}: {public} holds NaN/inf values (a diverged or damaged model)")
    inferred = {**settings, "embeddings_batch_norm": batch_norm, "o_enc_input": d_in, "w_enc_input": d_text,
                "decoder_hidden_size": decoder_hidden}
    return key_map, cfg, dims, inferred


def _check_out(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise AvgzslError(f"{out}: exists and is not a folder")
    if not any(out.iterdir()):
        return
    folder = RunFolder(out)
    is_run = folder.config_path.exists() or folder.stage2_final_path.exists() or (out / IMPORTED).exists()
    if not overwrite:
        raise AvgzslError(f"{out}: already exists and is not empty" + ("; pass --overwrite to replace it" if is_run
                                                                       else ""))
    if not is_run:
        raise AvgzslError(f"{out}: not a run folder (no {RunFolder.CONFIG} or {RunFolder.STAGE2_FINAL}); "
                          f"refusing to replace it")


def _sibling(path: Path, tag: str) -> Path:
    return path.parent / f".{path.name}.{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _install(tmp: Path, out: Path) -> None:
    """Rename the finished `tmp` onto `out` (an empty or missing folder, or a run folder to replace)."""
    if out.exists() and any(out.iterdir()):
        with run_lock(out, create=False):  # not while another command works on the folder
            old = _sibling(out, "old")
            os.replace(out, old)  # each rename is atomic: a reader sees the old folder or the new one
            os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)  # onto an empty folder too; fails if someone filled it meanwhile


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def import_clipclap(path: str | Path, out: str | Path, *, overwrite: bool = False, beta: float | None = None,
                    split: str = "cls_split") -> Path:
    """Write a ClipClap-GZSL checkpoint as an avgzsl run folder `out`; returns `out`.

    The folder: `checkpoints/stage2_final.pt` (model "clipclap", its settings inferred from the weights'
    shapes, the release's dims and text space, stage 2, `beta`), `config.yaml` (a run config with `split`),
    `env.json` (no data root: `avgzsl eval` needs --data) and `imported.json` (source, sha256, the key
    map, what was inferred, β and where it came from). `beta` None means 0.0, with a warning: the public
    checkpoint does not store it.
    """
    path, out = Path(path), Path(out)
    where = str(path)
    if beta is None:
        beta_value, beta_source = 0.0, "default 0.0: the ClipClap-GZSL checkpoint stores no calibration beta"
    elif isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not math.isfinite(beta):
        raise AvgzslError(f"--beta {short(beta)}: expected a finite number")
    else:
        beta_value, beta_source = float(beta), "given (--beta)"
    _check_out(out, overwrite)  # before the work: a refused --out costs nothing
    data = _read_bytes(path)
    sha, size = _sha256(data), len(data)
    obj = _safe_load(data, where)
    del data
    state, state_key = _find_state_dict(obj, where)
    prefix = ""
    if state and all(isinstance(k, str) and k.startswith("module.") for k in state):  # saved from DataParallel
        prefix = "module."
        state = {k[len(prefix):]: v for k, v in state.items()}
    key_map, cfg, dims, inferred = _clipclap_layout(state, where)
    model = build_model("clipclap", cfg, dims)
    model.load_state_dict({ours: state[public] for public, ours in key_map.items()}, strict=True)
    model.eval()
    run_cfg = RunConfig.from_dict({"name": out.name, "model": "clipclap", "split": split,
                                   "clipclap": config_dict(cfg)}, where=f"{where}: run config")
    public_epoch = obj.get("epoch") if isinstance(obj, Mapping) else None
    public_epoch = public_epoch if isinstance(public_epoch, int) and not isinstance(public_epoch, bool) else None
    metric = obj.get("metric") if isinstance(obj, Mapping) else None
    space = get_space(CLIPCLAP_TEXT_SPACE)
    text_space = {"name": space.name, "dim": space.dim, "feature_set": CLIPCLAP_FEATURE_SET}
    if beta is None:
        log.warning("%s: the ClipClap-GZSL checkpoint stores no calibration beta; importing with beta=0.0 "
                    "(pass --beta B, e.g. 'Best beta combined' from the public get_evaluation.py log)", where)
    record = {
        "family": "clipclap",
        "source": str(path.resolve()),
        "sha256": sha,
        "size_bytes": size,
        "public_code": "ClipClap-GZSL (src/clipclap_model.py ClipClap_model, src/utils.py save_best_model)",
        "checkpoint_keys": sorted(str(k) for k in obj) if isinstance(obj, Mapping) else None,
        "state_dict_key": state_key,
        "stripped_prefix": prefix or None,
        "public_epoch": public_epoch,
        "public_metric": metric if isinstance(metric, str) else None,
        "inferred": inferred,
        "dims": dims.to_dict(),
        "text_space": text_space,
        "beta": beta_value,
        "beta_source": beta_source,
        "not_imported": {
            "optimizer": "optimiser state (not needed for evaluation or prediction)",
            "dropout": "rates are not in the weights (no effect at evaluation); avgzsl's defaults are written",
        },
        "key_map": key_map,
        "avgzsl": __version__,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    with write_errors(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = _sibling(out, "import")
        tmp.mkdir()
    try:
        folder = RunFolder(tmp)
        ckpt_path = save_checkpoint(folder.stage2_final_path, model, run_cfg.to_dict(), text_space, stage=2,
                                    epoch=max((public_epoch or 1) - 1, 0), beta=beta_value,
                                    imported={"family": "clipclap", "source": path.name, "sha256": sha})
        read_checkpoint(ckpt_path)  # what eval/predict will read passes their checks
        write_text(folder.config_path, yaml.safe_dump(run_cfg.to_dict(), sort_keys=False))
        write_json(folder.env_path, {**environment("cpu"), "data": {}, "imported_from": str(path.resolve())})
        write_json(tmp / IMPORTED, record)
        with write_errors(out):
            _install(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


_IMPORTERS = {"clipclap": import_clipclap}


def import_checkpoint(family: str, path: str | Path, out: str | Path, **kwargs) -> Path:
    """`avgzsl import-checkpoint FAMILY PATH --out DIR`: the importer of `family` (FAMILIES)."""
    if family not in _IMPORTERS:
        raise AvgzslError(f"unknown checkpoint family {short(family)}; supported: {', '.join(FAMILIES)}")
    return _IMPORTERS[family](path, out, **kwargs)


def describe_import(out: str | Path) -> str:
    """One line on an imported run folder (what the CLI prints)."""
    out = Path(out)
    with contextlib.suppress(OSError, ValueError):
        r = json.loads((out / IMPORTED).read_text())
        inf = r["inferred"]
        return (f"wrote {out}: {r['family']} model from {Path(r['source']).name} (input {inf['modalities']}, text "
                f"{inf['text_part']}, width {inf['hidden']}, embedding {inf['dim_out']}), text space "
                f"{r['text_space']['name']}, beta {r['beta']:g} ({r['beta_source']})")
    return f"wrote {out}"
