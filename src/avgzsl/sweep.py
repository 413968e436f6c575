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

The sweep file is read and checked in src/avgzsl/sweep_spec.py; this module runs it on Ray Tune.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import os
import re
import time
from pathlib import Path

import yaml

from .config import RunConfig
from .classtext import load_run_benchmark
from .data.cache import default_cache
from .data.synthetic import synthetic_root
from .errors import AvgzslError, ConfigError
from .executors import forwarded_env, init_ray, one_line, prepare_worker, require_tune, worker_device
from .io import append_jsonl, atomic_write, write_json, write_text
from .protocol import run_protocol
from .reports.report import report_finished_run
from .runfolder import FINISHED, FRESH, RESUMABLE, RunFolder
from .runlock import run_lock
from .sweep_spec import (IDENTITY, SweepSpec, first_point, flatten, load_sweep, nested, plain, trial_config,
                         trial_key)

log = logging.getLogger("avgzsl.sweep")


# ---- stage 1 alone -------------------------------------------------------------------------------

def train_stage1(cfg: RunConfig, bench, device: str = "cpu", progress: bool = False,
                 on_epoch=None) -> dict:
    """Stage 1 of the protocol alone: train on stage_1_train, validate after every epoch, keep the best.

    Returns {"val": summary at the best epoch (seen, unseen, hm, zsl, beta, ausuc), "best_epoch",
    "epochs": [val summary per epoch]}. Same seeding, sampler, optimiser, scheduler and best-epoch rule as
    `run_protocol`, so `train_stage1(cfg, bench)["val"] == run_protocol(cfg, bench)["val"]` on CPU
    (tests/test_ray.py checks it). Nothing is written and the test splits are never touched.
    """
    return run_protocol(cfg, bench, None, device=device, progress=progress, stages=1,
                        on_epoch=None if on_epoch is None else
                        (lambda row: on_epoch({k: row[k] for k in ("epoch", "lr", "loss", "val")})))


def param_space(spec: SweepSpec) -> dict:
    from ray import tune  # optional dependency (avgzsl[ray]): imported when a sweep runs
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
    syn = spec.synthetic
    return synthetic_root(syn["like"], syn["scale"], syn["seed"],
                          cache=(cache or default_cache()).expanduser().resolve())


def _load(root: Path, cfg: RunConfig):
    return load_run_benchmark(root, cfg)


# ---- one trial (runs in a Tune worker) --------------------------------------------------------

def run_trial(spec: SweepSpec, overrides: dict, root: Path, out: Path, device: str = "cpu") -> dict:
    """Train stage 1 for one point of the space; record it in OUT/trials/<key>/ (skipped when recorded)."""
    overrides = plain(overrides)
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
    from ray import tune  # optional dependency: this runs in a Tune worker

    prepare_worker(ctx["cpus"], ctx["env"])
    spec = SweepSpec(**ctx["spec"])
    res = run_trial(spec, flatten(config), Path(ctx["root"]), Path(ctx["out"]), ctx["device"])
    tune.report({spec.metric: res["value"], "key": res["key"], "best_epoch": res["best_epoch"],
                 **{f"val_{k}": v for k, v in res["val"].items()}})


def _full_run(cfg_dict: dict, root: str, out: str, device: str, cpus: float, env: dict) -> dict:
    """The best config through the full protocol (in a Ray task): resumes or skips as its folder says,
    then writes the run's report."""
    prepare_worker(cpus, env)
    out_p = Path(out)
    with run_lock(out_p, discard_on_error=True):  # never empty the folder under another live writer
        run = RunFolder(out_p)
        status = run.status()
        if status == FINISHED:
            return run.read_results()
        if status == FRESH:
            run.clear()
        cfg = RunConfig.from_dict(cfg_dict)
        results = run_protocol(cfg, _load(Path(root), cfg), out_p, device=device, resume=status == RESUMABLE)
        report_finished_run(out_p)
        return results


# ---- the sweep -----------------------------------------------------------------------------------

def _searcher(spec: SweepSpec):
    if spec.search == "optuna":
        if any("grid" in d for d in spec.space.values()):
            raise ConfigError("search: optuna does not take grid dimensions; use choice: [...] instead")
        try:
            from ray.tune.search.optuna import OptunaSearch  # optional dependencies: only for search: optuna
            import optuna  # noqa: F401
        except ImportError:
            raise AvgzslError("search: optuna needs Optuna; install it with: pip install optuna") from None
        return OptunaSearch(seed=spec.seed)
    from ray.tune.search import BasicVariantGenerator  # optional dependency (avgzsl[ray])
    return BasicVariantGenerator(random_state=spec.seed)


def run_sweep(spec: SweepSpec, out: str | Path, ray_address: str | None = None, progress: bool = True) -> dict:
    """Run (or resume) a sweep; returns the summary also written to OUT/summary.json."""
    tune = require_tune()
    import ray  # optional dependency: require_tune has said what to install if it is missing
    out = Path(out).expanduser().resolve()
    # one sweep per folder at a time: a second one into the same --out stops at once, naming the first
    with run_lock(out, clean_tree=False):
        return _run_sweep(spec, out, ray_address, progress, tune, ray)


def _run_sweep(spec: SweepSpec, out: Path, ray_address: str | None, progress: bool, tune, ray) -> dict:
    spec_path = out / "sweep.json"
    ident = json.loads(json.dumps({k: v for k, v in spec.to_dict().items() if k in IDENTITY}))
    if spec_path.exists():
        old = json.loads(spec_path.read_text())
        if old != ident:
            diff = ", ".join(sorted(k for k in IDENTITY if old.get(k) != ident.get(k)))
            raise AvgzslError(f"{out} holds another sweep (it differs in: {diff}); use another --out "
                              "or remove that folder")
    else:
        write_json(spec_path, ident)
    device = worker_device(spec.device, spec.gpus_per_trial)
    root = data_root(spec)
    _load(root, trial_config(spec, first_point(spec)))  # checks + caches data
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
            overrides = plain(flatten(r.config or {}))
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


__all__ = ["SweepSpec", "load_sweep", "run_sweep", "train_stage1", "run_trial", "trial_config", "format_summary"]
