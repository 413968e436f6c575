"""Run configuration: one dataclass of defaults; YAML overrides it, `--set key=value` overrides YAML.

Unknown keys are errors that list the valid ones. Model-specific settings nest under the model's
registry name (e.g. `mft: {depth: 2}`) and are checked against that model's Config dataclass.
"""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, fields
from typing import Any
from pathlib import Path

import numpy as np

from .errors import ConfigError, did_you_mean
from .models import get_model_class, list_models, model_config
from .tracking import tracker_names
from .settings import (POSITIVE, SEED, WEIGHT, WIDTH, cap, check_settings, check_values, dataclass_from_dict,
                       load_yaml, setting, short)

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
    stems = sorted(q.stem for q in PRESET_DIR.glob("*.yaml"))
    raise ConfigError(f"{name_or_path}: neither a config file nor a preset{did_you_mean(name_or_path, stems)} "
                      f"(presets: {', '.join(stems)})")


BETA_GRIDS = {
    # ClipClap-GZSL: 76 steps over [0, 5]; AVCA/TCAF: 16 steps over [0, 3].
    "clipclap": (0.0, 5.0, 76),
    "avca": (0.0, 3.0, 16),
}


# What `reference_mode: true` reproduces of the public reference code (ClipClap-GZSL, and the AVCA-GZSL
# family where it applies), each a deviation of our default protocol; docs/protocol.md measures each one.
# `reference_off: [name, ...]` turns single behaviours back to ours (to measure what one of them does).
REFERENCE_BEHAVIOURS = {
    "text_pairing": "class ids by case-sensitive name sort, text rows paired by position (text_alignment)",
    "stage2_scheduler": "ReduceLROnPlateau stepped in stage 2 on the trained-on validation set (stage2_lr)",
    "per_tensor_adam": "PyTorch's per-tensor Adam loop, not the fused kernel (fused_adam)",
    "rng_stream": "one global torch RNG: the reference sampler's multinomial draws, its DataLoader's "
                  "base-seed and prefetch draws, the validation-loss pass's draws; CE rows in its class order",
    "call_order": "the reference's order of module calls inside the loss (BatchNorm/dropout order)",
    "double_bn": "the reference's second train-mode forward after every step (BatchNorm updated twice)",
    "best_epoch_rule": "while the best validation HM is 0 (falsy), every epoch replaces the best",
    "metric_arithmetic": "S/U/HM in float32 with HM = 2SU/(S+U+eps); test beta = (3 beta + 1e-10) / 3",
    "stage2_classes": "stage-2 classes = stage_1_train ∪ stage_1_val_unseen (stage_2_train.txt unread)",
    "modality_text": "audio-only / video-only models read only the CLAP / CLIP part of the text",
    "bn_scope": "batch_norm: false removes only the hidden-layer BatchNorm of the projection blocks",
    "mode_betas": "CJME: test beta = mean of its audio-, video- and both-mode validation betas",
    "hard_attention": "CJME: test-time modality attention thresholded at 0.5",
}
# the run settings a reference behaviour stands for: (key, our default, the reference's value)
_REFERENCE_SETTINGS = {"text_pairing": ("text_alignment", "by_name", "reference_order"),
                       "stage2_scheduler": ("stage2_lr", "replay", "reference"),
                       "per_tensor_adam": ("fused_adam", True, False)}


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
    # class text other than the benchmark's (classtext.py): a class-embeddings file, or a descriptions CSV
    # (class, description, ...) embedded at load by text_encoder (default: the benchmark space's encoder)
    class_text: str | None = None
    descriptions: str | None = None
    text_space: str | None = None  # the space of the benchmark's own text (spaces.py), e.g. minilm-l6-v2; None:
    #                                the feature set's (word2vec-300, clip-vit-b32+clap-wavcaps)
    text_encoder: str | None = None  # clip | clap | clipclap | minilm (encoders/text.py)
    text_weights: str | None = None  # the encoder's local weights folder (encoders/towers.py)
    allow_leakage: bool = False  # run despite a failed leakage check (recorded in the run folder)
    allow_data_change: bool = False  # --resume on data of another fingerprint (recorded in env.json)
    logger: str = "auto"  # experiment trackers (tracking.py): auto | none | tensorboard,wandb,mlflow
    reference_mode: bool = False  # reproduce the reference code's behaviours, bugs included (REFERENCE_BEHAVIOURS)
    reference_off: list = dataclasses.field(default_factory=list)  # behaviours kept ours in reference mode
    # The model's own Config dataclass (nested under the model's name in YAML). A mapping given here is
    # built into that dataclass once, in __post_init__; from then on the settings travel typed.
    model_cfg: Any = None

    def __post_init__(self):
        if self.model_cfg is None or isinstance(self.model_cfg, dict):
            self.model_cfg = model_config(self.model, self.model_cfg or {})
        self._resolve_reference(explicit=None)

    def reference(self) -> frozenset:
        """The reference behaviours this run reproduces (empty unless reference_mode)."""
        if not self.reference_mode:
            return frozenset()
        return frozenset(REFERENCE_BEHAVIOURS) - frozenset(self.reference_off)

    def _resolve_reference(self, explicit: set | None, where: str = "config", explicit_model: dict | None = None
                           ) -> None:
        """Set the run and model settings that reference behaviours stand for. A setting given
        explicitly (`explicit`, `explicit_model`: what a file or --set named; None: the run settings that
        differ from our defaults) must agree with reference mode: contradicting it is an error naming
        reference_off, never silently overridden."""
        on = self.reference()
        for name, (key, ours, theirs) in _REFERENCE_SETTINGS.items():
            if name not in on:
                continue
            have = getattr(self, key)
            given = (key in explicit) if explicit is not None else have != ours
            if given and have != theirs:
                raise ConfigError(f"{where}: {key}={short(have)} contradicts reference_mode=true; add {name} "
                                  f"to reference_off to keep it")
            setattr(self, key, theirs)
        adapt = getattr(self.model_cfg, "for_reference", None)
        if not on or adapt is None:
            return
        adapted = adapt(on)
        for key, value in (explicit_model or {}).items():
            if getattr(adapted, key) != getattr(self.model_cfg, key):
                raise ConfigError(f"{where}: {self.model}.{key}={short(value)} contradicts reference_mode=true "
                                  f"(the reference uses {short(getattr(adapted, key))}); set reference_off to "
                                  f"keep it (see REFERENCE_BEHAVIOURS)")
        self.model_cfg = adapted

    def betas(self) -> np.ndarray:
        lo, hi, n = BETA_GRIDS[self.beta_grid]
        if "metric_arithmetic" in self.reference():  # the reference's float32 torch.linspace values
            import torch
            return torch.linspace(lo, hi, n).double().numpy()
        return np.linspace(lo, hi, n)

    def validate(self, where: str = "config") -> "RunConfig":
        """Every choice, every number's range, and the model's settings; before anything is written."""
        choices = {"text_alignment": ("by_name", "reference_order"), "stage2_lr": ("replay", "reference"),
                   "beta_grid": tuple(BETA_GRIDS), "split": ("cls_split", "main_split")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"{where}: {key}={short(getattr(self, key))}: expected one of {', '.join(allowed)}")
        check_settings(type(self), {f.name: getattr(self, f.name) for f in fields(self)}, where)
        try:
            tracker_names(self.logger)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
        unknown = [b for b in self.reference_off if b not in REFERENCE_BEHAVIOURS]
        if unknown:
            raise ConfigError(f"{where}: reference_off: unknown behaviour(s) {cap(', '.join(map(short, unknown)))}; "
                              f"known: {', '.join(REFERENCE_BEHAVIOURS)}")
        if self.reference_off and not self.reference_mode:
            raise ConfigError(f"{where}: reference_off is set but reference_mode is false")
        if self.n_batches * self.bs > 2**28:  # the sampler draws an epoch's indices at once (16 B each)
            raise ConfigError(f"{where}: n_batches * bs = {self.n_batches * self.bs} videos per epoch is "
                              f"more than 2**28; use fewer or smaller batches")
        want = get_model_class(self.model).Config
        if type(self.model_cfg) is not want:
            raise ConfigError(f"{where}: model_cfg is a {type(self.model_cfg).__name__}, but model "
                              f"{self.model!r} takes a {want.__name__}")
        check_settings(want, asdict(self.model_cfg), where, f"{self.model}.")  # e.g. set after construction
        return self

    def to_dict(self) -> dict:
        """The YAML form: model settings (all of them, resolved) nested under the model's name."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "model_cfg"}
        d[self.model] = asdict(self.model_cfg)
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
            raise ConfigError(f"{where}: unknown key(s) {cap(', '.join(unknown))}{did_you_mean(unknown[0], top)}; "
                              f"valid keys: {', '.join(sorted(top))}, and '{model}' (model settings)")
        if not isinstance(model, str):
            raise ConfigError(f"{where}: model={short(model)}: expected a registered model name")
        d["model_cfg"] = model_config(model, model_cfg, where=where)
        reference_mode = d.pop("reference_mode", False)
        cfg = dataclass_from_dict(cls, d, where=where)  # reference behaviours resolved below, knowing what was given
        check_values(cls, {"reference_mode": reference_mode}, where)
        cfg.reference_mode = reference_mode
        cfg._resolve_reference(set(d), where, explicit_model=model_cfg)
        return cfg.validate(where)


def parse_set(items: list[str]) -> dict:
    """`key=value` strings (values parsed as YAML; `model.key=value` nests) into a nested dict."""
    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set {short(item)}: expected key=value")
        key, raw = item.split("=", 1)
        value = load_yaml(raw, f"--set {cap(key.strip(), 80)}") if raw != "" else ""
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
    """Defaults <- YAML file (a path or a preset name, `avgzsl presets`) <- --set overrides."""
    path = resolve_config(str(path)) if path is not None else None
    d = read_yaml(path) if path else {}
    over = sets if isinstance(sets, dict) else parse_set(sets or [])
    d = merge(d, over)
    _check_values(over, "overrides" if isinstance(sets, dict) else "--set", model=d.get("model", RunConfig.model))
    # a --set model=X without model settings must not carry the YAML's settings of another model
    return RunConfig.from_dict(d, where=str(path) if path else "config")


def _check_values(over: dict, where: str, model=None) -> None:
    """Types and ranges of the overridden values alone, so that a bad --set is blamed on --set and not
    on the config file it overrides. Cross-field checks wait for the merged config (a partial one
    would be judged against defaults the file may change)."""
    top = {f.name for f in fields(RunConfig) if f.name != "model_cfg"}
    unknown = sorted(str(k) for k in over if k not in top and k != model)
    other = [k for k in unknown if isinstance(over[k], dict) and k in list_models()]
    if other:
        raise ConfigError(f"{where}: {other[0]}.*: settings of model {other[0]!r}, but the model is {model!r} "
                          f"(set model={other[0]} too, or write {model}.KEY)")
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {cap(', '.join(unknown))}{did_you_mean(unknown[0], top)}; "
                          f"valid keys: {', '.join(sorted(top))}" + (f", and '{model}.KEY' (model settings)"
                                                                     if isinstance(model, str) else ""))
    check_values(RunConfig, {k: v for k, v in over.items() if k != "model_cfg"}, where)
    if isinstance(model, str) and isinstance(over.get(model), dict):
        mc = get_model_class(model).Config
        names = {f.name for f in fields(mc)}
        bad = sorted(str(k) for k in over[model] if k not in names)
        if bad:
            raise ConfigError(f"{where}: unknown key(s) {cap(', '.join(model + '.' + k for k in bad))}"
                              f"{did_you_mean(f'{model}.{bad[0]}', [f'{model}.{n}' for n in names])}; "
                              f"valid keys: {', '.join(sorted(names))}")
        check_values(mc, over[model], where, f"{model}.")


def replace(cfg: RunConfig, **changes) -> RunConfig:
    return dataclasses.replace(cfg, **changes)
