"""Reproduce the paper's Tables 2-5: every needed protocol run once, skipping finished runs.

An experiment is (dataset, variant, seed). A variant is a model preset plus `--set` overrides; a variant
that appears in several tables (MFT itself appears in all four) runs once. Run folders live at
`OUT/<dataset>/<variant>/seed<k>`, each one skipped, resumed or started afresh as its status says
(`avgzsl.runfolder.RunFolder.status`). Tables go to `OUT/tables.md` and `OUT/tables.csv`.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .config import load_config, resolve_config
from .classtext import load_run_benchmark
from .data.cache import default_cache
from .data.synthetic import synthetic_root
from .errors import AvgzslError
from .models import get_model_class, list_models
from .pack import run_members, run_packed
from .protocol import run_protocol
from .reports.paper import table_rows
from .reports.report import report_finished_run
from .reports.tables import write_tables
from .runfolder import FINISHED, FRESH, RESUMABLE, RunFolder
from .runlock import run_lock
from .threads import set_threads

log = logging.getLogger("avgzsl.reproduce")

DATASET_FOLDERS = {"ucf": "UCF", "activitynet": "ActivityNet", "vggsound": "VGGSound"}
# the benchmark suite's training samples/s per (model, dataset), shipped with the package (package data):
# the rates of benchmarks/results/protocol.json (tests/test_reproduce.py checks that they agree)
TRAIN_RATES = Path(__file__).resolve().parent / "train_rates.json"


@dataclass(frozen=True)
class Variant:
    key: str  # folder name
    model: str  # registry name; the preset is f"{model}_{dataset}"
    overrides: tuple[str, ...] = ()


MFT_VARIANTS = {
    "mft": Variant("mft", "mft"),
    "mft-no-attention": Variant("mft-no-attention", "mft", ("mft.attention=none",)),
    "mft-no-cos": Variant("mft-no-cos", "mft", ("mft.lambda_cos=0",)),
    "mft-no-kl": Variant("mft-no-kl", "mft", ("mft.lambda_kl=0",)),
    "mft-audio": Variant("mft-audio", "mft", ("mft.modalities=audio",)),
    "mft-video": Variant("mft-video", "mft", ("mft.modalities=video",)),
}


def variant(key: str) -> Variant:
    return MFT_VARIANTS.get(key) or Variant(key, key)


@dataclass
class Experiment:
    dataset: str
    variant: Variant
    seed: int
    data_root: Path
    out: Path  # run folder
    overrides: tuple[str, ...] = field(default=())

    @property
    def preset(self) -> str:
        return f"{self.variant.model}_{self.dataset}"

    @property
    def run(self) -> RunFolder:
        return RunFolder(self.out)

    @property
    def done(self) -> bool:
        return self.run.status() == FINISHED

    def sets(self) -> list[str]:
        return [*self.variant.overrides, f"seed={self.seed}", *self.overrides]


def plan(data_roots: dict[str, Path], tables: list[int], seeds: list[int], out: Path,
         extra_sets: tuple[str, ...] = ()) -> list[Experiment]:
    registered = list_models()
    keys: list[str] = []
    for t in tables:
        for _, key in table_rows(t, registered):
            if key is not None and key not in keys:
                keys.append(key)
    # the flagship's variants first, then the ClipClap-GZSL baseline, then the other rows
    keys.sort(key=lambda k: (not k.startswith("mft"), k != "clipclap"))
    return [Experiment(ds, variant(k), s, root, out / ds / k / f"seed{s}", tuple(extra_sets))
            for ds, root in data_roots.items() for k in keys for s in seeds]


def run_experiment(exp: Experiment, device: str = "cpu", progress: bool = False, pack=None) -> dict:
    """One protocol run (resuming or restarting as its folder says), then its report. Pure: safe to call
    from a worker. `pack`: the run is a member of a packed group (`run_pack`)."""
    # the folder's lock from the "done?" check on: another reproduce (or train) on the same run folder
    # fails at once instead of both writing it, and the folder is never emptied under a live writer
    with run_lock(exp.out, discard_on_error=True):
        return _run_locked(exp, device, progress, pack)


def packable(exp: Experiment) -> bool:
    """Whether this run may train in a pack: its model vmaps (`GZSLModel.packable`) and it is not a
    reference-mode run."""
    cfg = load_config(resolve_config(exp.preset), exp.sets())
    return get_model_class(cfg.model).packable and not cfg.reference()


def pack_groups(todo: list[Experiment], k) -> list[list[Experiment]]:
    """The runs in packs of at most k (an int, or a dict model name -> k): runs of one dataset, data root
    and variant (the same preset and overrides; seeds differ), in plan order; every other run alone."""
    size = (lambda e: k) if isinstance(k, int) else (lambda e: k.get(e.variant.model, 1))
    groups: dict = {}
    out: list[list[Experiment]] = []
    for e in todo:
        if size(e) <= 1 or not packable(e):
            out.append([e])
            continue
        key = (e.dataset, str(e.data_root), e.variant, e.overrides)
        if key not in groups or len(groups[key]) >= size(e):
            groups[key] = []
            out.append(groups[key])
        groups[key].append(e)
    return out


def run_pack(group: list[Experiment], device: str = "cpu",
             progress: bool = False) -> list[tuple[Experiment, BaseException]]:
    """The runs of `group` as one pack (pack.py): each writes its own run folder and report, as run
    alone. Returns the (run, error) of the members that failed (the others finished)."""
    if len(group) == 1:
        try:
            run_experiment(group[0], device, progress)
            return []
        except Exception as e:  # noqa: BLE001 - the caller decides (retry, or stop on AvgzslError)
            return [(group[0], e)]
    jobs = [lambda member, e=e: run_experiment(e, device, False, pack=member) for e in group]
    _, errors, _ = run_members(jobs, device)
    return [(e, err) for e, err in zip(group, errors) if err is not None]


def _run_locked(exp: Experiment, device: str, progress: bool, pack=None) -> dict:
    run = exp.run
    status = run.status()
    if status == FINISHED:
        return run.read_results()
    if status == FRESH:
        run.clear()  # killed before its first epoch ended: nothing to keep
    cfg = load_config(resolve_config(exp.preset), exp.sets())
    cfg.name = f"{exp.variant.key}-{exp.dataset}-seed{exp.seed}"
    bench = load_run_benchmark(exp.data_root, cfg)
    results = run_protocol(cfg, bench, exp.out, device=device, progress=progress and pack is None,
                           resume=status == RESUMABLE, pack=pack)
    report_finished_run(exp.out)
    return results


def measured_seconds(exp: Experiment) -> float | None:
    """Mean run time of this variant's finished seeds in the same output folder (their timings.json)."""
    times = []
    for t in sorted(exp.out.parent.glob(f"seed*/{RunFolder.TIMINGS}")):
        try:
            times.append(sum(float(v) for v in json.loads(t.read_text()).values()))
        except (ValueError, TypeError, AttributeError, OSError):
            continue  # an unreadable record only costs the estimate its evidence
    return sum(times) / len(times) if times else None


PROBE_BATCHES = 6  # batches of the probe's one stage-1 epoch, after a warm-up epoch of one batch
PROBE_SCALE = 0.1  # the synthetic like-dataset the probe trains on when no real root is given


def probe_rate(exp: Experiment, device: str = "cpu", cache: Path | None = None) -> float:
    """Training samples/s of this variant's preset, measured on this machine: the protocol's stage-1 training
    (``stages=0``: no validation) for one epoch of PROBE_BATCHES batches (batch size, widths and model as
    the preset's) on the run's data root, or on the synthetic like-dataset at PROBE_SCALE (written once into
    the cache). A warm-up epoch of one batch, not timed, sets up the model, optimiser and kernels first."""
    sets, cfg, bench = _probe_setup(exp, cache)
    warm = load_config(resolve_config(exp.preset), sets + ["epochs=1", "n_batches=1", "logger=none"])
    run_protocol(warm, bench, None, device=device, stages=0)  # training only: no validation to pay for
    rows: list[dict] = []
    run_protocol(cfg, bench, None, device=device, stages=0, on_epoch=rows.append)
    return PROBE_BATCHES * cfg.bs / max(float(rows[-1]["train_s"]), 1e-6)


PACK_SIZES = (1, 2, 3, 4)  # the pack sizes `--pack auto` tries
PACK_GAIN = 1.05  # a pack must train this much faster than solo runs to be chosen


def _probe_setup(exp: Experiment, cache: Path | None):
    sets = [s for s in exp.sets() if not s.startswith("seed=")]
    root = exp.data_root if exp.data_root.is_dir() else synthetic_root(exp.dataset, PROBE_SCALE, 0,
                                                                       cache=cache or default_cache())
    cfg = load_config(resolve_config(exp.preset), sets + ["epochs=1", f"n_batches={PROBE_BATCHES}", "logger=none"])
    return sets, cfg, load_run_benchmark(root, cfg)


def probe_pack_rates(exp: Experiment, device: str = "cpu", cache: Path | None = None,
                     sizes: tuple[int, ...] = PACK_SIZES) -> dict[int, float]:
    """{k: training samples/s of a whole pack of k seeds of this variant}, measured as `probe_rate` does
    (one stage-1 epoch of PROBE_BATCHES batches per member, after a one-batch warm-up pack)."""
    sets, cfg, bench = _probe_setup(exp, cache)
    rates = {}
    for k in sizes:
        # k = 1 is the solo path itself (this thread): a pack's member threads pay for being threads
        # (torch ops off the main thread measured 25-40% slower at 2 threads here), solo runs do not
        run = (lambda c: run_protocol(c[0], bench, None, device=device, stages=0)) if k == 1 else \
            (lambda c: run_packed(c, bench, device=device, stages=0))
        run([load_config(resolve_config(exp.preset), sets + ["epochs=1", "n_batches=1", "logger=none", f"seed={i}"])
             for i in range(k)])  # warm-up
        cfgs = [load_config(resolve_config(exp.preset), sets + ["epochs=1", f"n_batches={PROBE_BATCHES}",
                                                               "logger=none", f"seed={i}"]) for i in range(k)]
        t = time.perf_counter()
        run(cfgs)
        rates[k] = k * PROBE_BATCHES * cfg.bs / max(time.perf_counter() - t, 1e-6)
    return rates


def choose_pack(rates: dict[int, float]) -> int:
    """The pack size with the highest training rate, if it beats solo runs by PACK_GAIN; else 1."""
    best = max(rates, key=lambda k: (rates[k], -k))
    return best if rates[best] >= PACK_GAIN * rates.get(1, 0.0) else 1


def pack_plan(todo: list[Experiment], pack, device: str = "cpu", cache: Path | None = None,
              record: Path | None = None) -> dict[str, dict]:
    """{model: {"k": pack size, "rates": {k: samples/s} or None}} for the packable models among `todo`.
    pack "auto": one probe per model (on its first run's dataset), kept in `record` (JSON) so a
    restarted reproduce does not probe again; an int: that size for every packable model."""
    models: dict[str, Experiment] = {}
    for e in todo:
        if e.variant.model not in models and sum(x.variant == e.variant and x.dataset == e.dataset for x in todo) > 1 \
                and packable(e):
            models[e.variant.model] = e
    if pack != "auto":
        return {m: {"k": int(pack), "rates": None} for m in models}
    known = {}
    if record is not None and record.exists():
        try:
            known = json.loads(record.read_text())
        except (ValueError, OSError):
            known = {}
    out = {}
    for m, e in models.items():
        key = f"{m}|{device}|{torch.get_num_threads()}"
        if key not in known:
            rates = probe_pack_rates(e, device, cache)
            known[key] = {"k": choose_pack(rates), "rates": {str(k): round(v, 1) for k, v in rates.items()}}
            log.info("pack probe %s: %s samples/s -> packs of %d", m, known[key]["rates"], known[key]["k"])
        out[m] = {"k": int(known[key]["k"]), "rates": {int(k): float(v) for k, v in known[key]["rates"].items()}}
    if record is not None and out:
        record.parent.mkdir(parents=True, exist_ok=True)
        tmp = record.with_suffix(".tmp")
        tmp.write_text(json.dumps(known, indent=1, sort_keys=True) + "\n")
        tmp.replace(record)
    return out


def estimate_seconds(exp: Experiment, bench_json: Path | None = TRAIN_RATES, probe: dict | None = None,
                     device: str = "cpu", cache: Path | None = None) -> tuple[float, str]:
    """(seconds, source) for one run: the same variant's finished seeds when there are any; else, with
    `probe` (a dict that keeps one rate per dataset and variant across calls), a short training probe on
    this machine (`probe_rate`); without it the benchmark suite's samples/s for the model and dataset
    (`bench_json`: TRAIN_RATES, or a file of benchmarks/protocol.py), else a conservative default rate."""
    measured = measured_seconds(exp)
    if measured is not None:
        return measured, "measured"
    cfg = load_config(resolve_config(exp.preset), exp.sets())
    epochs = cfg.epochs + (cfg.epochs * 0.75)  # stage 2 runs best_epoch + 1 <= epochs
    if probe is not None:
        key = (exp.dataset, exp.variant.key)
        if key not in probe:
            probe[key] = probe_rate(exp, device, cache)
        return epochs * cfg.n_batches * cfg.bs / probe[key], "probe"
    rate, source = 2000.0, "default"  # samples/s on a 2-core CPU when no benchmark figure is known
    if bench_json and bench_json.exists():
        try:
            rows = json.loads(bench_json.read_text()).get("runs", [])
            match = [r for r in rows if r.get("model") == exp.variant.model and r.get("dataset") == exp.dataset]
            if match:
                rate, source = float(match[0]["train_samples_per_s"]), "benchmark"
        except (ValueError, KeyError, TypeError):
            pass
    return epochs * cfg.n_batches * cfg.bs / rate, source


def default_synthetic_roots(datasets: list[str], scale: float, cache: Path) -> dict[str, Path]:
    return {ds: synthetic_root(ds, scale, 0, cache=cache) for ds in datasets}


def real_roots(data_root: Path, datasets: list[str]) -> dict[str, Path]:
    roots = {}
    for ds in datasets:
        candidates = [data_root / DATASET_FOLDERS[ds], data_root / ds]
        hit = next((c for c in candidates if c.is_dir()), None)
        if hit is None:
            raise AvgzslError(f"{data_root}: no {DATASET_FOLDERS[ds]}/ folder for dataset {ds}")
        roots[ds] = hit
    return roots


def reproduce(datasets: list[str], tables: list[int], seeds: list[int], out: Path, data_root: Path | None = None,
              device: str = "cpu", dry_run: bool = False, synthetic_scale: float = 1.0, cache: Path | None = None,
              executor: str = "local", extra_sets: tuple[str, ...] = (), progress: bool = True,
              runner=None, probe: bool = True, jobs: int = 1, threads_per_run: int | None = None,
              pack: int | str = 1) -> dict:
    """Plan, run (with `runner`) and tabulate the paper's tables. jobs / threads_per_run: how the local
    executor will run them (threads.local_jobs), for the dry run's estimate: each probe then trains at
    threads_per_run threads and the wall time is the runs' total over jobs. pack: runs per pack for the
    packable models (`pack_plan`; "auto": chosen by a probe per model; the dry run's estimate applies it,
    and without probing "auto" plans no packs)."""
    out = Path(out)
    synthetic = data_root is None
    for ds in datasets:
        if ds not in DATASET_FOLDERS:
            raise AvgzslError(f"unknown dataset {ds!r}; choose from {', '.join(DATASET_FOLDERS)}")
    if synthetic:
        roots = default_synthetic_roots(datasets, synthetic_scale, cache or default_cache()) if not dry_run else \
            {ds: Path("<synthetic>") for ds in datasets}
    else:
        roots = real_roots(Path(data_root), datasets)
    exps = plan(roots, tables, seeds, out, extra_sets)
    if dry_run:
        total = 0.0
        lines = []
        rates: dict | None = {} if probe else None  # one probe per (dataset, variant), shared by its seeds
        before = torch.get_num_threads()
        if threads_per_run:
            set_threads(threads_per_run)  # probe as the runs will train
        try:
            todo = [e for e in exps if not e.done]
            packs = pack_plan(todo, pack if (probe or pack != "auto") else 1, device, cache)
            for m, p in packs.items():
                if p["k"] == 1 and not p["rates"]:
                    continue  # nothing probed, nothing packed
                shown = ", ".join(f"k={k} {v:.0f}" for k, v in (p["rates"] or {}).items())
                lines.append(f"pack  {m}: packs of {p['k']}"
                             + (f" (probe, training samples/s: {shown})" if shown else ""))
            for e in exps:
                sec, source = (0.0, "") if e.done else estimate_seconds(e, probe=rates, device=device, cache=cache)
                p = packs.get(e.variant.model)
                if not e.done and p and p["k"] > 1:
                    if p["rates"]:  # a run's share of its pack's wall time
                        sec *= p["rates"][1] / p["rates"][p["k"]]
                    source += f", packs of {p['k']}"
                total += sec
                lines.append(f"{'done' if e.done else 'todo'}  {e.dataset:12s} {e.variant.key:20s} seed {e.seed}  "
                             + (f"~{sec / 60:.1f} min ({source})  " if not e.done else "")
                             + f"--config {e.preset} " + " ".join(f"--set {s}" for s in e.sets()))
        finally:
            set_threads(before)
        todo_n = sum(not e.done for e in exps)
        at_once = max(1, min(jobs, todo_n))
        print("\n".join(lines))
        print(f"{len(exps)} runs, {todo_n} to do, about {total / 60:.0f} min of runs"
              + (f", {at_once} at a time: about {total / at_once / 60:.0f} min wall" if at_once > 1 else "")
              + " on this machine")
        return {"runs": len(exps), "estimated_s": total / at_once, "run_s": total, "jobs": at_once}
    # the output root's lock: a second reproduce into the same OUT stops at once (each run folder is
    # locked as well, by run_experiment); its own temporaries only, the run folders clean themselves
    with run_lock(out, clean_tree=False):
        todo = [e for e in exps if not e.done]
        log.info("%d runs planned, %d already done", len(exps), len(exps) - len(todo))
        t0 = time.perf_counter()
        failures = []
        if runner is not None and hasattr(runner, "set_pack") and pack != 1:
            before = torch.get_num_threads()
            if threads_per_run:
                set_threads(threads_per_run)  # probe as the runs will train
            try:
                plan_ = pack_plan(todo, pack, device, cache, record=out / "pack_probe.json")
            finally:
                set_threads(before)
            runner.set_pack({m: p["k"] for m, p in plan_.items()})
        if runner is not None:
            failures = runner(todo, device)
        else:
            for i, e in enumerate(todo, 1):
                print(f"[{i}/{len(todo)}] {e.dataset} {e.variant.key} seed {e.seed}", flush=True)
                try:
                    run_experiment(e, device, progress)
                except AvgzslError:
                    raise
                except Exception as err:  # noqa: BLE001 - one broken run must not lose the others
                    log.error("%s failed: %s", e.out, err)
                    failures.append((e, repr(err)))
        paths = write_tables(exps, tables, out, synthetic=synthetic)
    print(f"{len(todo)} runs in {time.perf_counter() - t0:.0f}s; tables: {paths[0]} and {paths[1]}")
    if failures:
        raise AvgzslError(f"{len(failures)} run(s) failed, first: {failures[0][0].out}: {failures[0][1]}")
    return {"tables": [str(p) for p in paths], "runs": len(exps)}
