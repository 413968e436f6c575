"""The sweep file of `avgzsl sweep`: reading and checking it (`load_sweep`), and the config of each trial.

The file's keys and their meaning are described in src/avgzsl/sweep.py (which runs the sweep on Ray
Tune). Nothing here imports Ray.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .config import RunConfig, load_config, merge, parse_set, read_yaml, resolve_config
from .errors import ConfigError
from .settings import flatten

SPACE_KINDS = ("grid", "choice", "uniform", "loguniform", "randint")
# what makes two sweeps the same sweep (resources and device may change between restarts)
IDENTITY = ("base", "space", "data", "synthetic", "set", "metric", "num_samples", "seed", "search", "final")
METRICS = ("val_hm", "val_seen", "val_unseen", "val_zsl", "val_ausuc")


@dataclass
class SweepSpec:
    base: str  # preset name or config file
    space: dict  # dotted key -> {kind: args}
    data: str | None = None  # dataset root
    synthetic: dict | None = None  # {like, scale, seed}
    set: list = field(default_factory=list)  # fixed overrides, as --set
    metric: str = "val_hm"
    num_samples: int = 1
    seed: int = 0  # seed of the search
    search: str = "basic"  # basic (Tune's grid/random generator) | optuna
    max_concurrent: int = 0  # 0: as many trials at once as the cluster's resources allow
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    device: str = "cpu"
    out: str | None = None  # default runs/sweeps/<file stem>
    final: bool = True  # run the best config through the full protocol

    def to_dict(self) -> dict:
        return asdict(self)


def _num(v, key: str, kind: str) -> float:
    try:
        return float(v)  # YAML 1.1 reads 1e-5 (no dot) as a string
    except (TypeError, ValueError):
        raise ConfigError(f"space.{key}: {kind} needs numbers, got {v!r}") from None


def _check_dim(key: str, dim) -> tuple[str, list]:
    if not isinstance(dim, dict) or len(dim) != 1 or next(iter(dim)) not in SPACE_KINDS:
        raise ConfigError(f"space.{key}: expected one of {{{', '.join(k + ': ...' for k in SPACE_KINDS)}}}, "
                          f"got {dim!r}")
    kind, args = next(iter(dim.items()))
    if not isinstance(args, list) or not args:
        raise ConfigError(f"space.{key}: {kind} needs a non-empty list")
    if kind in ("uniform", "loguniform", "randint"):
        if len(args) != 2:
            raise ConfigError(f"space.{key}: {kind} needs [low, high]")
        lo, hi = (_num(a, key, kind) for a in args)
        if not lo < hi or (kind == "loguniform" and lo <= 0):
            raise ConfigError(f"space.{key}: {kind} needs 0 < low < high" if kind == "loguniform"
                              else f"space.{key}: {kind} needs low < high")
        if kind == "randint":
            if lo != int(lo) or hi != int(hi):
                raise ConfigError(f"space.{key}: randint needs integers")
            return kind, [int(lo), int(hi)]
        return kind, [lo, hi]
    return kind, list(args)


def load_sweep(path: str | Path, sets: list[str] | None = None) -> SweepSpec:
    """Read and check a sweep file; `sets` are extra fixed overrides (the CLI's --set)."""
    d = read_yaml(path)
    names = {f.name for f in fields(SweepSpec)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(names))}")
    for key in ("base", "space"):
        if key not in d:
            raise ConfigError(f"{path}: missing '{key}'")
    if not isinstance(d["space"], dict) or not d["space"]:
        raise ConfigError(f"{path}: 'space' must map config keys to search dimensions")
    fixed = d.get("set") or []
    if isinstance(fixed, dict):  # also accept a mapping {key: value}
        fixed = [f"{k}={json.dumps(v)}" for k, v in fixed.items()]
    if not isinstance(fixed, list):
        raise ConfigError(f"{path}: 'set' must be a list of key=value")
    d["set"] = [str(x) for x in fixed] + list(sets or [])
    here = Path(path).resolve().parent
    d["base"] = _resolve_path(str(d["base"]), here, preset=True)
    if d.get("data") is not None:
        d["data"] = _resolve_path(str(d["data"]), here)
    d["space"] = {str(k): {kind: args} for k, v in d["space"].items() for kind, args in [_check_dim(str(k), v)]}
    if (d.get("data") is None) == (d.get("synthetic") is None):
        raise ConfigError(f"{path}: give exactly one of 'data: ROOT' and 'synthetic: {{like: ucf, scale: 1}}'")
    if d.get("synthetic") is not None:
        syn = d["synthetic"]
        if not isinstance(syn, dict) or not set(syn) <= {"like", "scale", "seed"}:
            raise ConfigError(f"{path}: synthetic must be a mapping of like, scale, seed")
        d["synthetic"] = {"like": str(syn.get("like", "ucf")), "scale": float(syn.get("scale", 1.0)),
                          "seed": int(syn.get("seed", 0))}
    try:
        spec = SweepSpec(**d)
        spec.num_samples, spec.seed = int(spec.num_samples), int(spec.seed)
        spec.cpus_per_trial, spec.gpus_per_trial = float(spec.cpus_per_trial), float(spec.gpus_per_trial)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{path}: {e}") from None
    if spec.metric not in METRICS:
        raise ConfigError(f"{path}: metric {spec.metric!r}: expected one of {', '.join(METRICS)} "
                          "(stage-1 validation only; the test set never selects a config)")
    if spec.search not in ("basic", "optuna"):
        raise ConfigError(f"{path}: search {spec.search!r}: expected basic or optuna")
    if spec.num_samples < 1:
        raise ConfigError(f"{path}: num_samples must be >= 1")
    if spec.cpus_per_trial <= 0 or spec.gpus_per_trial < 0:
        raise ConfigError(f"{path}: cpus_per_trial must be > 0 and gpus_per_trial >= 0")
    # every dimension must be a valid config key: build the config at one point of the space
    trial_config(spec, first_point(spec))
    return spec


def _resolve_path(value: str, here: Path, preset: bool = False) -> str:
    """Absolute path (trials run in other working directories): relative to the working directory if it
    exists there, else to the sweep file's folder. A preset name stays a name."""
    p = Path(value).expanduser()
    if preset and p.suffix not in (".yaml", ".yml") and not p.exists():
        return value  # a preset name, e.g. mft_ucf
    if p.is_absolute():
        return str(p)
    return str(p.resolve() if p.exists() or not (here / p).exists() else (here / p).resolve())


def _first_value(dim: dict):
    kind, args = next(iter(dim.items()))
    return args[0]


def first_point(spec: SweepSpec) -> dict:
    """One point of the space: every dimension's first value (dotted keys)."""
    return {k: _first_value(v) for k, v in spec.space.items()}


def nested(flat: dict) -> dict:
    """{"mft.d_model": 64} -> {"mft": {"d_model": 64}}"""
    out: dict = {}
    for key, v in flat.items():
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = v
    return out


def trial_config(spec: SweepSpec, overrides: dict) -> RunConfig:
    """The run config of one trial: base <- fixed `set` <- the trial's sampled values (dotted keys)."""
    over = merge(parse_set(spec.set), nested(plain(overrides)))
    return load_config(resolve_config(spec.base), over)


def plain(d: dict) -> dict:
    """numpy scalars (Tune samples them) -> Python numbers, so configs and JSON stay plain."""
    out = {}
    for k, v in d.items():
        if hasattr(v, "item") and not isinstance(v, (list, dict, str)):
            v = v.item()
        out[k] = v
    return out


def trial_key(cfg: RunConfig) -> str:
    """A trial's record key: a hash of its whole resolved config, so a changed preset is not taken for
    the old one on a restart."""
    d = cfg.to_dict()
    d.pop("name", None)
    return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]


__all__ = ["SweepSpec", "load_sweep", "trial_config", "trial_key", "first_point", "nested", "flatten", "plain",
           "METRICS", "IDENTITY", "SPACE_KINDS"]
