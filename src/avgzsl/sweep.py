"""Hyper-parameter sweeps with Ray Tune: stage 1 picks the config, the full protocol runs the best one.

A sweep file (YAML):

    base: mft_ucf                 # a preset name or a config file
    data: /data/UCF               # a dataset root; or instead:
    # synthetic: {like: ucf, scale: 0.1}
    set: [epochs=10]              # fixed overrides (as --set)
    metric: val_hm                # stage-1 validation metric to maximise: val_hm | val_seen | val_unseen | val_zsl | val_ausuc
    space:
      mft.d_model: {grid: [64, 128]}
      lr: {loguniform: [1e-5, 1e-3]}
    num_samples: 4                # Tune's meaning: each sample runs every grid combination once
    seed: 0                       # seed of the search (the training seed is the config's `seed`)

Every trial trains STAGE 1 ONLY (`train_stage1`: the same code path and numbers as the first stage of
`run_protocol`) and reports its best validation metric; the test set is never looked at while searching.
The best trial's config then runs through the full protocol into `OUT/best/` (an ordinary run folder), and
`OUT/summary.json` and `OUT/trials.csv` list every trial and the best one.

Restart safety: Tune's experiment state lives in `OUT/tune/` and a killed sweep resumes from it
(`Tuner.restore`); in addition each finished trial is recorded in `OUT/trials/<key>/result.json` (key = a
hash of its resolved config), so a trial whose result is on disk is never trained again, even when Tune's last
state snapshot predates it. A trial that raises is retried once (`FailureConfig(max_failures=1)`), then
listed as failed in the summary.
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import re
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .config import RunConfig, load_config, merge, parse_set, read_yaml
from .errors import AvgzslError, ConfigError

log = logging.getLogger("avgzsl.sweep")

SPACE_KINDS = ("grid", "choice", "uniform", "loguniform", "randint")
# what makes two sweeps the same sweep (resources and device may change between restarts)
IDENTITY = ("base", "space", "data", "synthetic", "set", "metric", "num_samples", "seed", "search", "final")
METRICS = ("val_hm", "val_seen", "val_unseen", "val_zsl", "val_ausuc")


# ---- stage 1 alone -------------------------------------------------------------------------------

def train_stage1(cfg: RunConfig, bench, device: str = "cpu", progress: bool = False,
                 on_epoch=None) -> dict:
    """Stage 1 of the protocol alone: train on stage_1_train, validate after every epoch, keep the best.

    Returns {"val": summary at the best epoch (seen, unseen, hm, zsl, beta, ausuc), "best_epoch",
    "epochs": [val summary per epoch]}. Same seeding, sampler, optimiser, scheduler and best-epoch rule as
    `run_protocol`, so `train_stage1(cfg, bench)["val"] == run_protocol(cfg, bench)["val"]` on CPU
    (tests/test_ray.py checks it). Nothing is written and the test splits are never touched.
    """
    from .protocol import run_protocol
    return run_protocol(cfg, bench, None, device=device, progress=progress, stages=1,
                        on_epoch=None if on_epoch is None else
                        (lambda row: on_epoch({k: row[k] for k in ("epoch", "lr", "loss", "val")})))


# ---- the sweep file ------------------------------------------------------------------------------

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
    trial_config(spec, {k: _first_value(v) for k, v in spec.space.items()})
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


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def trial_config(spec: SweepSpec, overrides: dict) -> RunConfig:
    """The run config of one trial: base <- fixed `set` <- the trial's sampled values (dotted keys)."""
    from .config import resolve_config
    over = merge(parse_set(spec.set), nested(_plain(overrides)))
    return load_config(resolve_config(spec.base), over)


def _plain(d: dict) -> dict:
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


def param_space(spec: SweepSpec) -> dict:
    from ray import tune
    flat = {}
    for key, dim in spec.space.items():
        kind, args = next(iter(dim.items()))
        flat[key] = {"grid": lambda a: tune.grid_search(a), "choice": lambda a: tune.choice(a),
                     "uniform": lambda a: tune.uniform(*a), "loguniform": lambda a: tune.loguniform(*a),
                     "randint": lambda a: tune.randint(a[0], a[1] + 1)}[kind](args)  # randint: high inclusive
    return nested(flat)


# ---- data ----------------------------------------------------------------------------------------

def data_root(spec: SweepSpec, cache: Path | None = None) -> Path:
    """The dataset root (absolute: trials run in other working directories); writes synthetic data once."""
    if spec.data is not None:
        root = Path(spec.data).expanduser().resolve()
        if not root.exists():
            raise AvgzslError(f"{root}: dataset root does not exist")
        return root
    from .config import default_cache
    from .data.synthetic import make_synthetic
    syn = spec.synthetic
    root = (cache or default_cache()).expanduser().resolve() / "synthetic" / \
        f"{syn['like']}-scale{syn['scale']:g}-seed{syn['seed']}"
    if not (root / "class-split").exists():
        log.info("writing the synthetic %s-like benchmark to %s", syn["like"], root)
        make_synthetic(syn["like"], root, scale=syn["scale"], seed=syn["seed"])
    return root


def _load(root: Path, cfg: RunConfig):
    from .data import load_benchmark
    return load_benchmark(root, split=cfg.split, feature_dir=cfg.feature_dir, text_alignment=cfg.text_alignment)


# ---- one trial (runs in a Tune worker) --------------------------------------------------------

def run_trial(spec: SweepSpec, overrides: dict, root: Path, out: Path, device: str = "cpu") -> dict:
    """Train stage 1 for one point of the space; record it in OUT/trials/<key>/ (skipped when recorded)."""
    from .io import append_jsonl, write_json, write_text
    import yaml
    overrides = _plain(overrides)
    cfg = trial_config(spec, overrides)
    key = trial_key(cfg)
    folder = Path(out) / "trials" / key
    rec = folder / "result.json"
    if rec.exists():
        return json.loads(rec.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    append_jsonl(folder / "attempts.jsonl", {"pid": os.getpid(), "time": time.time()})
    write_text(folder / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    log_path = folder / "log.jsonl"
    if log_path.exists():
        log_path.unlink()  # a previous attempt was killed: start its log afresh
    bench = _load(root, cfg)
    t = time.perf_counter()
    res = train_stage1(cfg, bench, device, on_epoch=lambda row: append_jsonl(log_path, row))
    result = {"key": key, "overrides": overrides, "val": res["val"],
              "best_epoch": res["best_epoch"], "metric": spec.metric,
              "value": res["val"][spec.metric[len("val_"):]], "seconds": round(time.perf_counter() - t, 3)}
    write_json(rec, result)
    return result


def _tune_trial(config: dict, ctx: dict) -> None:
    """The Tune trainable: one trial, one report."""
    from ray import tune

    from .executors import prepare_worker
    prepare_worker(ctx["cpus"], ctx["env"])
    spec = SweepSpec(**ctx["spec"])
    res = run_trial(spec, flatten(config), Path(ctx["root"]), Path(ctx["out"]), ctx["device"])
    tune.report({spec.metric: res["value"], "key": res["key"], "best_epoch": res["best_epoch"],
                 **{f"val_{k}": v for k, v in res["val"].items()}})


def _full_run(cfg_dict: dict, root: str, out: str, device: str, cpus: float, env: dict) -> dict:
    """The best config through the full protocol (in a Ray task): resumes or skips as its folder says."""
    from .executors import prepare_worker
    from .protocol import run_protocol
    from .runlog import clear_run_folder, run_lock
    prepare_worker(cpus, env)
    out_p = Path(out)
    with run_lock(out_p, discard_on_error=True):  # never empty the folder under another live writer
        if (out_p / "results.json").exists():
            return json.loads((out_p / "results.json").read_text())
        resume = (out_p / "state.pt").exists()
        if not resume:
            clear_run_folder(out_p)
        cfg = RunConfig.from_dict(cfg_dict)
        return run_protocol(cfg, _load(Path(root), cfg), out_p, device=device, resume=resume)


# ---- the sweep -----------------------------------------------------------------------------------

def _searcher(spec: SweepSpec):
    if spec.search == "optuna":
        if any("grid" in d for d in spec.space.values()):
            raise ConfigError("search: optuna does not take grid dimensions; use choice: [...] instead")
        try:
            from ray.tune.search.optuna import OptunaSearch
            import optuna  # noqa: F401
        except ImportError:
            raise AvgzslError("search: optuna needs Optuna; install it with: pip install optuna") from None
        return OptunaSearch(seed=spec.seed)
    from ray.tune.search import BasicVariantGenerator
    return BasicVariantGenerator(random_state=spec.seed)


def run_sweep(spec: SweepSpec, out: str | Path, ray_address: str | None = None, progress: bool = True) -> dict:
    """Run (or resume) a sweep; returns the summary also written to OUT/summary.json."""
    from .executors import require_tune
    tune = require_tune()
    import ray
    from .runlog import run_lock
    out = Path(out).expanduser().resolve()
    # one sweep per folder at a time: a second one into the same --out stops at once, naming the first
    with run_lock(out, clean_tree=False):
        return _run_sweep(spec, out, ray_address, progress, tune, ray)


def _run_sweep(spec: SweepSpec, out: Path, ray_address: str | None, progress: bool, tune, ray) -> dict:
    from .executors import forwarded_env, init_ray, one_line, worker_device
    spec_path = out / "sweep.json"
    ident = json.loads(json.dumps({k: v for k, v in spec.to_dict().items() if k in IDENTITY}))
    if spec_path.exists():
        old = json.loads(spec_path.read_text())
        if old != ident:
            diff = ", ".join(sorted(k for k in IDENTITY if old.get(k) != ident.get(k)))
            raise AvgzslError(f"{out} holds another sweep (it differs in: {diff}); use another --out "
                              "or remove that folder")
    else:
        from .io import write_json
        write_json(spec_path, ident)
    device = worker_device(spec.device, spec.gpus_per_trial)
    root = data_root(spec)
    _load(root, trial_config(spec, {k: _first_value(v) for k, v in spec.space.items()}))  # checks + caches data
    ctx = {"spec": spec.to_dict(), "root": str(root), "out": str(out), "device": device,
           "cpus": spec.cpus_per_trial, "env": forwarded_env()}
    resources = {"cpu": spec.cpus_per_trial}
    if spec.gpus_per_trial:
        resources["gpu"] = spec.gpus_per_trial
    trainable = tune.with_resources(tune.with_parameters(_tune_trial, ctx=ctx), resources)
    started = init_ray(ray_address, what="avgzsl sweep")
    try:
        exp_dir = out / "tune"
        tuner = None
        if tune.Tuner.can_restore(str(exp_dir)):
            print(f"resuming the sweep in {out}", flush=True)
            try:
                tuner = tune.Tuner.restore(str(exp_dir), trainable, resume_unfinished=True, restart_errored=True,
                                           param_space=param_space(spec))
            except Exception as err:  # noqa: BLE001 - e.g. killed before Tune's first state snapshot
                log.warning("cannot restore Tune's state in %s (%s); searching again (recorded trials are "
                            "not retrained)", exp_dir, one_line(err))
        if tuner is None:
            tuner = tune.Tuner(
                trainable, param_space=param_space(spec),
                tune_config=tune.TuneConfig(metric=spec.metric, mode="max", num_samples=spec.num_samples,
                                            search_alg=_searcher(spec),
                                            max_concurrent_trials=spec.max_concurrent or None),
                run_config=tune.RunConfig(name="tune", storage_path=str(out),
                                          failure_config=tune.FailureConfig(max_failures=1),
                                          verbose=1 if progress else 0))
        grid = tuner.fit()
        trials = []
        for r in grid:
            overrides = _plain(flatten(r.config or {}))
            key = trial_key(trial_config(spec, overrides))
            rec = out / "trials" / key / "result.json"
            row = {"trial": _trial_id(r), "key": key, "overrides": overrides}
            if r.error is None and rec.exists():
                res = json.loads(rec.read_text())
                row.update(status="ok", value=res["value"], val=res["val"], best_epoch=res["best_epoch"])
            else:
                row.update(status="failed", value=None, error=one_line(r.error) if r.error else "no result recorded")
            trials.append(row)
        trials.sort(key=lambda t: t["trial"])
        ok = [t for t in trials if t["status"] == "ok"]
        summary = {"metric": spec.metric, "mode": "max", "spec": spec.to_dict(), "data": str(root),
                   "trials": trials, "failed": len(trials) - len(ok), "best": None}
        if ok:
            best = max(ok, key=lambda t: (t["value"], -trials.index(t)))  # ties: the first trial
            summary["best"] = {k: best[k] for k in ("trial", "key", "overrides", "value", "val", "best_epoch")}
        _write_summary(out, summary)
        if summary["best"] is not None and spec.final:
            cfg = trial_config(spec, summary["best"]["overrides"])
            cfg.name = f"sweep-{out.name}-best"
            remote = ray.remote(num_cpus=spec.cpus_per_trial, num_gpus=spec.gpus_per_trial, max_retries=1,
                                retry_exceptions=True)(_full_run)
            print(f"best trial {summary['best']['trial']} ({spec.metric} {summary['best']['value']:.4f}): "
                  f"full protocol in {out / 'best'}", flush=True)
            try:
                res = ray.get(remote.remote(cfg.to_dict(), str(root), str(out / "best"), device,
                                            spec.cpus_per_trial, forwarded_env()))
                summary["best"].update(run_dir=str(out / "best"), test=res["test"], full_val=res["val"],
                                       stage2_epochs=res["stage2_epochs"])
            except Exception as err:  # noqa: BLE001
                summary["best"].update(run_dir=str(out / "best"), error=one_line(err) + " (after 1 retry)")
            _write_summary(out, summary)
    finally:
        if started:
            ray.shutdown()
    return summary


def _trial_id(result) -> str:
    """Tune's trial id (e.g. 1eb46_00003), from the reported metrics or the trial folder's name."""
    tid = (result.metrics or {}).get("trial_id")
    if tid:
        return str(tid)
    name = Path(result.path).name if result.path else ""
    m = re.search(r"([0-9a-f]{5}_\d{5})", name)
    return m.group(1) if m else name


def _write_summary(out: Path, summary: dict) -> None:
    from .io import atomic_write, write_json
    write_json(out / "summary.json", summary)
    keys = sorted({k for t in summary["trials"] for k in t["overrides"]})
    vals = ("hm", "seen", "unseen", "zsl", "beta", "ausuc")

    def write(p: Path):
        with open(p, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["trial", "key", "status", *keys, *(f"val_{v}" for v in vals), "best_epoch", "best", "error"])
            best = (summary.get("best") or {}).get("key")
            for t in summary["trials"]:
                val = t.get("val") or {}
                w.writerow([t["trial"], t["key"], t["status"], *(t["overrides"].get(k, "") for k in keys),
                            *(val.get(v, "") for v in vals),
                            t.get("best_epoch", ""), int(t["key"] == best), t.get("error", "")])
    atomic_write(out / "trials.csv", write)


def format_summary(summary: dict) -> str:
    keys = sorted({k for t in summary["trials"] for k in t["overrides"]})
    head = ["trial", *keys, summary["metric"]]
    rows = []
    best = (summary.get("best") or {}).get("key")
    for t in summary["trials"]:
        v = "FAILED: " + t.get("error", "") if t["status"] != "ok" else f"{100 * t['value']:.2f}"
        rows.append([t["trial"] + (" *" if t["key"] == best else ""),
                     *(_fmt(t["overrides"].get(k, "")) for k in keys), v])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(r, widths)) for r in [head, *rows]]
    b = summary.get("best")
    if b:
        lines.append(f"best (*): {', '.join(f'{k}={_fmt(v)}' for k, v in b['overrides'].items())}  "
                     f"{summary['metric']} {100 * b['value']:.2f}")
        if "test" in b:
            t = b["test"]
            lines.append(f"full protocol ({b['run_dir']}): test S {100 * t['seen']:.2f}  U {100 * t['unseen']:.2f}  "
                         f"HM {100 * t['hm']:.2f}  ZSL {100 * t['zsl']:.2f}")
        elif "error" in b:
            lines.append(f"full protocol FAILED: {b['error']}")
    if summary["failed"]:
        lines.append(f"{summary['failed']} trial(s) failed (after 1 retry each)")
    return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, float) and v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e4) and math.isfinite(v):
        return f"{v:.3g}"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def sweep_command(args) -> int:
    """`avgzsl sweep`: the CLI's face of run_sweep."""
    from .executors import require_tune
    require_tune()  # one line saying what to install, before anything else
    spec = load_sweep(args.config, args.set)
    for key in ("device", "cpus_per_trial", "gpus_per_trial"):
        if getattr(args, key, None) is not None:
            setattr(spec, key, getattr(args, key))
    out = args.out or spec.out or str(Path("runs") / "sweeps" / Path(args.config).stem)
    summary = run_sweep(spec, out, ray_address=args.ray_address, progress=not args.quiet)
    print(format_summary(summary))
    print(f"summary: {Path(out) / 'summary.json'} and {Path(out) / 'trials.csv'}")
    if summary["best"] is None:
        raise AvgzslError(f"every trial failed; first: {summary['trials'][0].get('error', '?')}")
    if "error" in summary["best"]:
        raise AvgzslError(f"the full protocol run of the best config failed: {summary['best']['error']}")
    return 0


__all__ = ["SweepSpec", "load_sweep", "run_sweep", "train_stage1", "run_trial", "trial_config", "format_summary"]
