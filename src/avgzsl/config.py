"""Run configuration: one dataclass of defaults; YAML overrides it, `--set key=value` overrides YAML.

Unknown keys are errors that list the valid ones. Model-specific settings nest under the model's
registry name (e.g. `mft: {depth: 2}`) and are checked against that model's Config dataclass.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import yaml

from .errors import ConfigError

PRESET_DIR = Path(__file__).resolve().parent / "configs"


def resolve_config(name_or_path: str | None) -> Path | None:
    """A YAML path, or a preset name such as `mft_ucf` (see `avgzsl presets`)."""
    if name_or_path is None:
        return None
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    preset = PRESET_DIR / f"{name_or_path}.yaml"
    if preset.exists():
        return preset
    names = ", ".join(sorted(q.stem for q in PRESET_DIR.glob("*.yaml")))
    raise ConfigError(f"{name_or_path}: neither a config file nor a preset (presets: {names})")


def default_cache() -> Path:
    """Where generated data and array caches live: $AVGZSL_CACHE, else ~/.cache/avgzsl."""
    import os
    return Path(os.environ.get("AVGZSL_CACHE", Path.home() / ".cache" / "avgzsl"))


BETA_GRIDS = {
    # ClipClap-GZSL: 76 steps over [0, 5]; AVCA/TCAF: 16 steps over [0, 3].
    "clipclap": (0.0, 5.0, 76),
    "avca": (0.0, 3.0, 16),
}


@dataclass
class RunConfig:
    """Everything a protocol run needs besides the data. Defaults follow ClipClap-GZSL's UCF preset."""

    name: str = ""  # run name; empty = "<model>-<dataset>"
    model: str = "clipclap"  # a registered model name (`avgzsl models`)
    epochs: int = 20  # stage-1 epochs
    n_batches: int = 300  # batches per epoch
    bs: int = 64  # videos per batch
    lr: float = 7e-5
    weight_decay: float = 1e-5
    fused_adam: bool = True  # one fused kernel for all parameters (same update rule; ~20-30% faster steps on CPU)
    scheduler_patience: int = 3  # ReduceLROnPlateau(mode=max) on validation HM
    seed: int = 42
    split: str = "cls_split"  # cls_split (ClipClap's) | main_split (Table 1 of the paper)
    feature_dir: str | None = None  # folder under features/; None = the only one present
    text_alignment: str = "by_name"  # by_name | reference_order
    stage2_lr: str = "replay"  # replay | reference
    beta_grid: str = "clipclap"  # clipclap | avca
    eval_bs: int = 4096  # videos per evaluation chunk
    allow_leakage: bool = False  # run despite a failed leakage check (recorded in the run folder)
    model_cfg: dict = field(default_factory=dict)  # nested under the model's name in YAML

    def betas(self) -> np.ndarray:
        lo, hi, n = BETA_GRIDS[self.beta_grid]
        return np.linspace(lo, hi, n)

    def validate(self) -> "RunConfig":
        choices = {"text_alignment": ("by_name", "reference_order"), "stage2_lr": ("replay", "reference"),
                   "beta_grid": tuple(BETA_GRIDS), "split": ("cls_split", "main_split")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"{key}={getattr(self, key)!r}: expected one of {', '.join(allowed)}")
        for key in ("epochs", "n_batches", "bs", "eval_bs"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        from .models import model_config  # late: models import this module
        model_config(self.model, self.model_cfg)  # raises on unknown model or model keys
        return self

    def to_dict(self) -> dict:
        """The YAML form: model settings (all of them, resolved) nested under the model's name."""
        from .models import config_dict, model_config
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "model_cfg"}
        d[self.model] = config_dict(model_config(self.model, self.model_cfg))
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str = "config") -> "RunConfig":
        d = dict(d)
        top = {f.name for f in fields(cls) if f.name != "model_cfg"}
        model = d.get("model", cls.model)
        model_cfg = d.pop(model, None) or {}
        if not isinstance(model_cfg, dict):
            raise ConfigError(f"{where}: '{model}' must be a mapping of model settings")
        unknown = sorted(set(d) - top)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: "
                              f"{', '.join(sorted(top))}, and '{model}' (model settings)")
        cfg = dataclass_from_dict(cls, d, where=where)
        cfg.model_cfg = dict(model_cfg)
        return cfg.validate()


def _check_type(value, tp, key: str, where: str):
    """Coerce ints to floats where a float is expected; reject everything else that does not fit."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        for opt in options:
            if opt is type(None):
                continue
            try:
                return _check_type(value, opt, key, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: {key}={value!r} has the wrong type (expected {tp})")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-4" (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if tp is int and isinstance(value, bool):
        raise ConfigError(f"{where}: {key}={value!r}: expected an integer")
    base = origin or tp
    if isinstance(base, type) and not isinstance(value, base):
        raise ConfigError(f"{where}: {key}={value!r}: expected {getattr(base, '__name__', base)}")
    return value


def dataclass_from_dict(dc_type, d: dict, where: str = "config"):
    """Build `dc_type` from a dict: unknown keys are errors naming the valid ones; types are checked."""
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(d).__name__}")
    hints = typing.get_type_hints(dc_type)
    names = {f.name for f in fields(dc_type)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(names))}")
    kwargs = {k: _check_type(v, hints[k], k, where) for k, v in d.items()}
    return dc_type(**kwargs)


def parse_set(items: list[str]) -> dict:
    """`key=value` strings (values parsed as YAML; `model.key=value` nests) into a nested dict."""
    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item!r}: cannot parse value ({e})") from None
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        d = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys")
    return d


def load_config(path: str | Path | None = None, sets: list[str] | dict | None = None) -> RunConfig:
    """Defaults <- YAML file <- --set overrides."""
    d = read_yaml(path) if path else {}
    over = sets if isinstance(sets, dict) else parse_set(sets or [])
    d = merge(d, over)
    # a --set model=X without model settings must not carry the YAML's settings of another model
    return RunConfig.from_dict(d, where=str(path) if path else "config")


def replace(cfg: RunConfig, **changes) -> RunConfig:
    return dataclasses.replace(cfg, **changes)
