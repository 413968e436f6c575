"""Typed settings: building a config dataclass from YAML values, with types and numeric ranges checked.

The lowest layer of configuration, below both the run config (`config.py`) and the models' Config
dataclasses (`models/*.py`): each numeric field declares its range with `setting(default, RANGE)`, and
`dataclass_from_dict` builds a dataclass from a mapping, refusing unknown keys, wrong types and values out
of range before the dataclass exists. `load_yaml` is the one YAML loader for configs (no anchors/aliases).
"""
from __future__ import annotations

import math
import re
import reprlib
import types
import typing
from dataclasses import dataclass, field, fields

import yaml

from .errors import ConfigError, did_you_mean


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
        raise ConfigError(f"{where}: not valid YAML ({cap(str(e).splitlines()[0])})") from None
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


def cap(text: str, limit: int = 200) -> str:
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


def _check_type(value, tp, key: str, where: str):
    """Coerce ints to floats where a float is expected; reject everything else that does not fit."""
    if tp is typing.Any:  # a field typed by its own checks (RunConfig.model_cfg)
        return value
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
        raise ConfigError(f"{where}: unknown key(s) {cap(', '.join(prefix + k for k in unknown))}"
                          f"{did_you_mean(unknown[0], names)}; valid keys: {', '.join(sorted(names))}")
    kwargs = {k: _check_type(v, hints[k], prefix + k, where) for k, v in d.items()}
    check_settings(dc_type, kwargs, where, prefix)
    try:
        return dc_type(**kwargs)
    except ConfigError as e:  # the dataclass's own cross-field checks: add the file, keep it short
        msg = str(e)
        raise ConfigError(f"{where}: {msg if len(msg) <= 400 else msg[:200] + ' ... ' + msg[-150:]}") from None


def check_values(dc_type, d: dict, where: str, prefix: str = "") -> None:
    """Types and ranges of the keys present in `d` alone (a partial mapping, e.g. the --set overrides),
    without the dataclass's cross-field checks."""
    hints = typing.get_type_hints(dc_type)
    for k, v in d.items():
        if k in hints:
            check_settings(dc_type, {k: _check_type(v, hints[k], prefix + k, where)}, where, prefix)


def flatten(d: dict, prefix: str = "") -> dict:
    """A nested mapping as dotted keys: {"mft": {"depth": 2}} -> {"mft.depth": 2}."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
