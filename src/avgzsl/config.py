"""Run configuration: one dataclass of defaults; YAML overrides it, `--set key=value` overrides YAML.

Unknown keys are errors that list the valid ones. Model-specific settings nest under the model's
registry name (e.g. `mft: {depth: 2}`) and are checked against that model's Config dataclass.
"""
from __future__ import annotations

import dataclasses
import math
import re
import reprlib
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


# ---- YAML: one loader for every config file and --set value -------------------------------------

ALIAS_ERROR = "YAML aliases (&/*) are not allowed in configs"


class _AliasFound(Exception):
    pass


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that stops at the first anchor or alias. A config never needs them, and nested aliases
    are a billion-laughs bomb: a few hundred bytes that expand to gigabytes (and an error message of
    megabytes) once constructed. Checked while composing, before any node is expanded."""

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _AliasFound
        return super().compose_node(parent, index)


def load_yaml(text: str, where: str):
    """Parse config YAML (safe types only, no aliases); errors are one short ConfigError naming `where`."""
    try:
        return yaml.load(text, Loader=_NoAliasLoader)
    except _AliasFound:
        raise ConfigError(f"{where}: {ALIAS_ERROR}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: not valid YAML ({_cap(str(e).splitlines()[0])})") from None
    except RecursionError:  # thousands of nested brackets: the composer recurses per level
        raise ConfigError(f"{where}: not valid YAML (nested too deeply)") from None


_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 120
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 6
_repr.maxlevel = 3


def short(value) -> str:
    """repr(value) of at most ~200 characters: an error message quotes a value, never a megabyte of it
    (reprlib stops early, so a huge value is not rendered in full first)."""
    text = _repr.repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


def _cap(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


# ---- numeric settings: every int/float field declares its range -----------------------------------

@dataclass(frozen=True)
class Range:
    """An interval of allowed values, written as in maths: "[0, 1)", "> 0", ">= 1"."""

    lo: float
    hi: float
    lo_open: bool
    hi_open: bool
    text: str

    def __contains__(self, v) -> bool:
        return ((v > self.lo if self.lo_open else v >= self.lo)
                and (v < self.hi if self.hi_open else v <= self.hi))

    @staticmethod
    def parse(spec: str) -> "Range":
        s = spec.replace(" ", "")
        if s.startswith(">="):
            return Range(_num(s[2:]), math.inf, False, True, spec)
        if s.startswith(">"):
            return Range(_num(s[1:]), math.inf, True, True, spec)
        m = re.fullmatch(r"([\[(])([^,]+),([^,]+)([\])])", s)
        if not m:
            raise ValueError(f"bad range {spec!r}: expected e.g. '[0, 1)', '> 0' or '>= 1'")
        return Range(_num(m[2]), _num(m[3]), m[1] == "(", m[4] == ")", f"in {spec}")


def _num(text: str) -> int | float:
    return int(text) if re.fullmatch(r"-?\d+", text) else float(text)  # ints stay exact (2**63 - 1)


def setting(default, allowed: str):
    """A numeric dataclass field with its allowed range: `dropout: float = setting(0.1, PROB)`. Every
    int/float setting of RunConfig and of each model's Config declares one (tests/test_settings_guards.py
    checks that), and `check_settings` enforces it before a run folder or a model exists."""
    return field(default=default, metadata={"range": Range.parse(allowed)})


# Shared ranges. Upper bounds on sizes lie far above any published setting; past them the first
# allocation fails with a torch traceback after the run folder exists, so they are refused up front.
WIDTH = "[1, 65536]"  # layer widths, embedding dims, heads, batch sizes
DEPTH = "[1, 256]"  # transformer / attention blocks
WIDTH0 = "[0, 65536]"  # a width where 0 has its own meaning (no hidden layer, or the input's dim: see the field)
PROB = "[0, 1)"  # dropout
FRACTION = "[0, 1]"  # mixing weights, momenta
WEIGHT = ">= 0"  # loss weights, margins, weight decay
POSITIVE = "> 0"  # learning rates, temperatures, periods
SEED = f"[0, {2**63 - 1}]"  # torch takes up to 2**64 - 1, but results.json, numpy int64 and Ray take int64


def check_settings(dc_type, values: dict, where: str = "config", prefix: str = "") -> None:
    """Each int/float in `values` (field name -> value) must be finite and inside its field's range."""
    for f in fields(dc_type):
        if f.name not in values:
            continue
        v = values[f.name]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue  # types are checked elsewhere (_check_type); bools are switches, not numbers
        rng = f.metadata.get("range")
        must = f" (must be {rng.text})" if rng else ""
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"{where}: {prefix}{f.name}={v} is not a finite number{must}")
        if rng is not None and v not in rng:
            raise ConfigError(f"{where}: {prefix}{f.name}={short(v)} is out of range{must}")


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
    epochs: int = setting(20, "[1, 100000]")  # stage-1 epochs
    n_batches: int = setting(300, "[1, 1000000]")  # batches per epoch
    bs: int = setting(64, WIDTH)  # videos per batch
    lr: float = setting(7e-5, POSITIVE)
    weight_decay: float = setting(1e-5, WEIGHT)
    fused_adam: bool = True  # one fused kernel for all parameters (same update rule; ~20-30% faster steps on CPU)
    scheduler_patience: int = setting(3, ">= 0")  # ReduceLROnPlateau(mode=max) on validation HM
    seed: int = setting(42, SEED)
    split: str = "cls_split"  # cls_split (ClipClap's) | main_split (Table 1 of the paper)
    feature_dir: str | None = None  # folder under features/; None = the only one present
    text_alignment: str = "by_name"  # by_name | reference_order
    stage2_lr: str = "replay"  # replay | reference
    beta_grid: str = "clipclap"  # clipclap | avca
    eval_bs: int = setting(4096, "[1, 1048576]")  # videos per evaluation chunk
    allow_leakage: bool = False  # run despite a failed leakage check (recorded in the run folder)
    allow_data_change: bool = False  # --resume on data of another fingerprint (recorded in env.json)
    model_cfg: dict = field(default_factory=dict)  # nested under the model's name in YAML

    def betas(self) -> np.ndarray:
        lo, hi, n = BETA_GRIDS[self.beta_grid]
        return np.linspace(lo, hi, n)

    def validate(self, where: str = "config") -> "RunConfig":
        """Every choice, every number's range, and the model's settings; before anything is written."""
        choices = {"text_alignment": ("by_name", "reference_order"), "stage2_lr": ("replay", "reference"),
                   "beta_grid": tuple(BETA_GRIDS), "split": ("cls_split", "main_split")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"{where}: {key}={short(getattr(self, key))}: expected one of {', '.join(allowed)}")
        check_settings(type(self), {f.name: getattr(self, f.name) for f in fields(self)}, where)
        if self.n_batches * self.bs > 2**28:  # the sampler draws an epoch's indices at once (16 B each)
            raise ConfigError(f"{where}: n_batches * bs = {self.n_batches * self.bs} videos per epoch is "
                              f"more than 2**28; use fewer or smaller batches")
        from .models import model_config  # late: models import this module
        model_config(self.model, self.model_cfg, where=where)  # raises on unknown model or model keys
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
            raise ConfigError(f"{where}: unknown key(s) {_cap(', '.join(unknown))}; valid keys: "
                              f"{', '.join(sorted(top))}, and '{model}' (model settings)")
        cfg = dataclass_from_dict(cls, d, where=where)
        cfg.model_cfg = dict(model_cfg)
        return cfg.validate(where)


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
        raise ConfigError(f"{where}: {key}={short(value)} has the wrong type (expected {tp})")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # an integer of hundreds of digits
            raise ConfigError(f"{where}: {key}={short(value)} is too large for a float") from None
    if tp is float and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-4" (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if tp is int and isinstance(value, bool):
        raise ConfigError(f"{where}: {key}={short(value)}: expected an integer")
    base = origin or tp
    if isinstance(base, type) and not isinstance(value, base):
        raise ConfigError(f"{where}: {key}={short(value)}: expected {getattr(base, '__name__', base)}")
    return value


def dataclass_from_dict(dc_type, d: dict, where: str = "config", prefix: str = ""):
    """Build `dc_type` from a dict: unknown keys are errors naming the valid ones; types and numeric
    ranges are checked before the dataclass (and its own __post_init__ checks) sees the values.
    `prefix` ("mft.") is how the keys are written in a config file, for the messages."""
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: {prefix.rstrip('.') or 'config'}: expected a mapping, got {type(d).__name__}")
    hints = typing.get_type_hints(dc_type)
    names = {f.name for f in fields(dc_type)}
    unknown = sorted(str(k) for k in set(d) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {_cap(', '.join(prefix + k for k in unknown))}; valid keys: "
                          f"{', '.join(sorted(names))}")
    kwargs = {k: _check_type(v, hints[k], prefix + k, where) for k, v in d.items()}
    check_settings(dc_type, kwargs, where, prefix)
    try:
        return dc_type(**kwargs)
    except ConfigError as e:  # the dataclass's own cross-field checks: add the file, keep it short
        msg = str(e)
        raise ConfigError(f"{where}: {msg if len(msg) <= 400 else msg[:200] + ' ... ' + msg[-150:]}") from None


def parse_set(items: list[str]) -> dict:
    """`key=value` strings (values parsed as YAML; `model.key=value` nests) into a nested dict."""
    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set {short(item)}: expected key=value")
        key, raw = item.split("=", 1)
        value = load_yaml(raw, f"--set {_cap(key.strip(), 80)}") if raw != "" else ""
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
    d = load_yaml(path.read_text(), str(path)) or {}
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys")
    return d


def load_config(path: str | Path | None = None, sets: list[str] | dict | None = None) -> RunConfig:
    """Defaults <- YAML file <- --set overrides."""
    d = read_yaml(path) if path else {}
    over = sets if isinstance(sets, dict) else parse_set(sets or [])
    d = merge(d, over)
    _check_values(RunConfig, over, "overrides" if isinstance(sets, dict) else "--set", model=d.get("model"))
    # a --set model=X without model settings must not carry the YAML's settings of another model
    return RunConfig.from_dict(d, where=str(path) if path else "config")


def _check_values(dc_type, d: dict, where: str, prefix: str = "", model=None) -> None:
    """Types and ranges of the overridden values alone, so that a bad --set is blamed on --set and not
    on the config file it overrides. Cross-field checks wait for the merged config (a partial one
    would be judged against defaults the file may change)."""
    hints = typing.get_type_hints(dc_type)
    for k, v in d.items():
        if k in hints and k != "model_cfg":
            check_settings(dc_type, {k: _check_type(v, hints[k], prefix + k, where)}, where, prefix)
    if isinstance(model, str) and isinstance(d.get(model), dict):
        from .models import get_model_class  # late: models import this module
        _check_values(get_model_class(model).Config, d[model], where, f"{model}.")


def replace(cfg: RunConfig, **changes) -> RunConfig:
    return dataclasses.replace(cfg, **changes)
