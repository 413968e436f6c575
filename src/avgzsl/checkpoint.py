"""Checkpoints that rebuild their model with no flags and load without running code.

A checkpoint stores the model's registry name, its resolved config, the feature dims, the text
space (name, dim) and the run config, besides the weights. Only tensors and plain Python values are
stored, so `torch.load(weights_only=True)` reads it (no pickle code execution).

Reading one checks it completely before a model is allocated (`check_checkpoint`): the metadata
(format, a registered model, its settings and the run config through the same checks as a config
file, dims as positive integers under a sane bound, a finite beta), then every weight's key, shape and
values against the model those settings describe, built on the meta device (no memory). A file from
elsewhere with a dim of 1e12 or a weight of the wrong shape is one line naming the file and the key.
"""
from __future__ import annotations

import math
import pickle
import re
import warnings
from dataclasses import fields
from pathlib import Path

import torch

from .config import RunConfig, short
from .data.types import FeatureDims
from .errors import AvgzslError
from .io import atomic_write
from .models import build_model, config_dict, model_config
from .models.base import GZSLModel

FORMAT_VERSION = 1
MAX_DIM = 2**20  # far above any feature or text encoder's width; a larger dim is a broken or hostile file


def save_checkpoint(path: str | Path, model: GZSLModel, run_config: dict, text_space: dict | None = None,
                    **extra) -> Path:
    payload = {
        "format": FORMAT_VERSION,
        "model": model.name,
        "model_config": config_dict(model.cfg),
        "dims": model.dims.to_dict(),
        "text_space": text_space or {},
        "run_config": run_config,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    }
    return atomic_write(path, lambda p: torch.save(payload, p))


def _load_error(path: Path, e: Exception) -> AvgzslError:
    """torch's message is a paragraph whose first line is generic; name the refused global when there is one."""
    text = str(e)
    m = re.search(r"GLOBAL ([\w.]+)", text)
    if isinstance(e, pickle.UnpicklingError) and m:
        # weights_only refuses to import anything outside torch's allow-list: nothing ran
        return AvgzslError(f"unsafe checkpoint: {path} refers to {m[1]}; nothing was executed")
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    detail = next((x for x in lines if x.startswith(("Unsupported", "Trying to load"))), lines[0] if lines else "")
    return AvgzslError(f"{path}: not a readable avgzsl checkpoint ({type(e).__name__}: {detail[:200]})")


def read_checkpoint(path: str | Path) -> dict:
    """Load (weights only, on CPU) and check a checkpoint; any problem is one AvgzslError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise AvgzslError(f"{path}: checkpoint not found")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols; the error says enough
            warnings.simplefilter("ignore", UserWarning)
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file to the user
        raise _load_error(path, e) from None
    check_checkpoint(ckpt, path)
    return ckpt


def _named(where: str, check):
    """Run a config check; its error names the checkpoint file (the registry's errors do not)."""
    try:
        return check()
    except AvgzslError as e:
        raise type(e)(str(e) if str(e).startswith(where) else f"{where}: {e}") from None


def _dim(value, key: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_DIM:
        raise AvgzslError(f"{where}: {key}={short(value)}: expected a whole number in [1, {MAX_DIM}]")
    return value


def check_checkpoint(ckpt, path: str | Path) -> None:
    """Metadata, then weights against the model the metadata describes (built on the meta device)."""
    where = str(path)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "state_dict" not in ckpt:
        raise AvgzslError(f"{where}: not an avgzsl checkpoint (missing model name or weights)")
    if ckpt.get("format") != FORMAT_VERSION:
        raise AvgzslError(f"{where}: format={short(ckpt.get('format'))}: this avgzsl reads checkpoint format "
                          f"{FORMAT_VERSION}")
    for key in ("model_config", "dims", "run_config"):
        if key not in ckpt:
            raise AvgzslError(f"{where}: missing '{key}' (not written by avgzsl, or damaged)")
    name = ckpt["model"]
    if not isinstance(name, str):
        raise AvgzslError(f"{where}: model={short(name)}: expected a registered model name")
    # the registry's and the config's own checks: unknown model, unknown keys, types, ranges
    cfg = _named(where, lambda: model_config(name, ckpt["model_config"], where=f"{where}: model_config"))
    dims = ckpt["dims"]
    if not isinstance(dims, dict):
        raise AvgzslError(f"{where}: dims={short(dims)}: expected a mapping of feature dims")
    known = {f.name for f in fields(FeatureDims)}
    unknown = sorted(str(k) for k in set(dims) - known)
    if unknown:
        raise AvgzslError(f"{where}: dims: unknown key(s) {short(unknown)}; expected {', '.join(sorted(known))}")
    for key in ("audio", "video", "text"):  # before anything is built from them
        _dim(dims.get(key), f"dims.{key}", where)
    if not isinstance(dims.get("temporal", False), bool) or not isinstance(dims.get("feature_set", ""), str):
        raise AvgzslError(f"{where}: dims.temporal must be true/false and dims.feature_set a name")
    beta = ckpt.get("beta")
    if beta is not None and (isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta)):
        raise AvgzslError(f"{where}: beta={short(beta)}: expected a finite number")
    ts = ckpt.get("text_space") or {}
    if not isinstance(ts, dict) or not isinstance(ts.get("name", ""), (str, type(None))) \
            or not isinstance(ts.get("feature_set", ""), (str, type(None))):
        raise AvgzslError(f"{where}: text_space={short(ts)}: expected {{name, dim, feature_set}}")
    if "dim" in ts:
        _dim(ts["dim"], "text_space.dim", where)
    rc = ckpt["run_config"]
    if not isinstance(rc, dict):
        raise AvgzslError(f"{where}: run_config={short(rc)}: expected a mapping of run settings")
    _named(where, lambda: RunConfig.from_dict(rc, where=f"{where}: run_config"))
    _check_weights(ckpt["state_dict"], name, cfg, FeatureDims(**dims), where)


def _check_weights(state: dict, name: str, cfg, dims: FeatureDims, where: str) -> None:
    if not isinstance(state, dict):
        raise AvgzslError(f"{where}: state_dict={short(state)}: expected a mapping of weights")
    try:
        with torch.device("meta"):  # shapes without memory: a huge dim costs nothing here
            expected = build_model(name, cfg, dims).state_dict()
    except AvgzslError as e:
        raise AvgzslError(f"{where}: {e}") from None
    except Exception as e:  # noqa: BLE001 - settings that pass their checks but still do not build
        raise AvgzslError(f"{where}: the {name} model its settings describe cannot be built "
                          f"({type(e).__name__}: {short(str(e))})") from None
    missing = [k for k in expected if k not in state]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise AvgzslError(f"{where}: state_dict: missing key {short(missing[0])}{more} of the {name} model "
                          f"its settings describe")
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise AvgzslError(f"{where}: state_dict: unexpected key {short(unexpected[0])}{more} for the {name} model "
                          f"its settings describe")
    for k, want in expected.items():
        got = state[k]
        if not isinstance(got, torch.Tensor):
            raise AvgzslError(f"{where}: state_dict[{k!r}] is {type(got).__name__}, not a tensor")
        if tuple(got.shape) != tuple(want.shape):
            raise AvgzslError(f"{where}: state_dict[{k!r}] has shape {tuple(got.shape)}, but the {name} model its "
                              f"settings and dims describe needs {tuple(want.shape)}")
        if got.dtype.is_floating_point != want.dtype.is_floating_point:
            raise AvgzslError(f"{where}: state_dict[{k!r}] has dtype {got.dtype}, expected {want.dtype}")
        if got.dtype.is_floating_point and not bool(torch.isfinite(got).all()):
            raise AvgzslError(f"{where}: state_dict[{k!r}] holds NaN/inf values (a diverged or damaged model)")


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[GZSLModel, dict]:
    """Rebuild the model from the checkpoint alone; returns (model in eval mode, checkpoint dict)."""
    ckpt = read_checkpoint(path)  # checked: the weights fit the model these settings build
    model = build_model(ckpt["model"], ckpt["model_config"], ckpt["dims"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), ckpt
