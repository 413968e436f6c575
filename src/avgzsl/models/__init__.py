"""Model registry: every model is looked up by name (`avgzsl models` lists them).

Each module in this package registers its model with `@register_model("name")`; modules are
imported automatically, so adding a model is adding one file.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import asdict, is_dataclass

from ..settings import check_settings, dataclass_from_dict
from ..data.types import FeatureDims
from ..errors import ConfigError, did_you_mean
from .base import Batch, GZSLModel

_REGISTRY: dict[str, type[GZSLModel]] = {}
_NOT_MODELS = {"base", "layers", "generative"}


def register_model(name: str):
    def wrap(cls):
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"model name {name!r} registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls
    return wrap


def _import_all() -> None:
    for mod in pkgutil.iter_modules(__path__):
        if mod.name not in _NOT_MODELS:
            importlib.import_module(f"{__name__}.{mod.name}")


def list_models() -> list[str]:
    _import_all()
    return sorted(_REGISTRY)


def get_model_class(name: str) -> type[GZSLModel]:
    _import_all()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}{did_you_mean(name, _REGISTRY)}; registered models: "
                          f"{', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def model_config(name: str, overrides: dict | None = None, where: str = "config"):
    """The model's Config dataclass with `overrides` applied (unknown keys, wrong types and numbers
    outside their declared ranges are errors naming `where` and the key as `name.key`)."""
    cls = get_model_class(name)
    return dataclass_from_dict(cls.Config, overrides or {}, where=where, prefix=f"{name}.")


def build_model(name: str, cfg=None, dims: FeatureDims | dict | None = None) -> GZSLModel:
    cls = get_model_class(name)
    if cfg is None or isinstance(cfg, dict):
        cfg = model_config(name, cfg)
    elif is_dataclass(cfg):  # built in Python: its numbers have not been checked yet
        check_settings(type(cfg), {f: getattr(cfg, f) for f in cfg.__dataclass_fields__}, prefix=f"{name}.")
    if isinstance(dims, dict):
        dims = FeatureDims(**dims)
    return cls(cfg, dims)


def config_dict(cfg) -> dict:
    return asdict(cfg) if is_dataclass(cfg) else dict(cfg)


__all__ = ["Batch", "GZSLModel", "register_model", "list_models", "get_model_class",
           "model_config", "build_model", "config_dict"]
