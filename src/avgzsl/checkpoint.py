"""Checkpoints that rebuild their model with no flags and load without running code.

A checkpoint stores the model's registry name, its resolved config, the feature dims, the text
space (name, dim) and the run config, besides the weights. Only tensors and plain Python values are
stored, so `torch.load(weights_only=True)` reads it (no pickle code execution).
"""
from __future__ import annotations

from pathlib import Path

import torch

from .errors import AvgzslError
from .io import atomic_write
from .models import build_model, config_dict
from .models.base import GZSLModel

FORMAT_VERSION = 1


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


def read_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise AvgzslError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file to the user
        raise AvgzslError(f"{path}: not a readable avgzsl checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "state_dict" not in ckpt:
        raise AvgzslError(f"{path}: not an avgzsl checkpoint (missing model name or weights)")
    return ckpt


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[GZSLModel, dict]:
    """Rebuild the model from the checkpoint alone; returns (model in eval mode, checkpoint dict)."""
    ckpt = read_checkpoint(path)
    model = build_model(ckpt["model"], ckpt["model_config"], ckpt["dims"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), ckpt
