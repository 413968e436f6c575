"""Where the runs of `avgzsl reproduce` execute: on this machine (one after another, or several at once in
worker processes), or as Ray tasks.

A runner is `runner(todo: list[Experiment], device: str) -> list[(Experiment, error_line)]`: it runs every
experiment with `avgzsl.reproduce.run_experiment` (the same protocol function as `avgzsl train`, writing the
same run folders and reports), retries a failed run once, and returns the runs that still failed;
`reproduce()` then writes the tables and raises one error naming them. Finished runs never reach a runner
(`reproduce()` skips them), and a resumable run folder resumes (`avgzsl.runfolder.RunFolder.status`), so a
retry continues where the failed attempt's last finished epoch left off.

`ray` is an optional dependency (`pip install "avgzsl[ray]"`); everything here imports it lazily.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Callable


from .errors import AvgzslError
from .reproduce import pack_groups, run_experiment, run_pack
from .threads import set_threads

log = logging.getLogger("avgzsl.executors")

INSTALL_HINT = 'pip install "avgzsl[ray]"  (or: pip install "ray[tune]")'

# environment variables a worker needs to see the driver's settings (the array cache, mainly)
FORWARDED_ENV = ("AVGZSL_CACHE",)


def require_ray(what: str = "--executor ray"):
    """Import ray or raise one line saying what to install."""
    try:
        import ray
    except ImportError:
        raise AvgzslError(f"{what} needs Ray, which is not installed; install it with: {INSTALL_HINT}") from None
    return ray


def require_tune(what: str = "avgzsl sweep"):
    """Import ray.tune (Ray plus its Tune extras) or raise one line saying what to install."""
    require_ray(what)
    try:
        from ray import tune
    except ImportError:
        raise AvgzslError(f"{what} needs Ray Tune, which is not installed; install it with: {INSTALL_HINT}") from None
    return tune


def forwarded_env() -> dict[str, str]:
    return {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}


def prepare_worker(num_cpus: float, env: dict[str, str] | None = None) -> int:
    """In a Ray worker: torch threads = the task's CPU share (at least 1), and the driver's avgzsl settings."""
    for k, v in (env or {}).items():
        os.environ[k] = v
    return set_threads(max(1, int(num_cpus)))


def one_line(err: BaseException) -> str:
    """A Ray error's root cause as `Type: message` on one line (Ray's own str() is a whole traceback)."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, BaseException) and cause is not err:
        err = cause
    text = str(err).strip()
    lines = [x for x in text.splitlines() if x.strip()]
    msg = lines[-1].strip() if lines else ""
    name = type(err).__name__
    return f"{name}: {msg}" if msg and not msg.startswith(name) else (msg or name)


def worker_device(device: str, gpus_per_run: float) -> str:
    """The device string a Ray task uses: Ray hands each GPU task its own CUDA_VISIBLE_DEVICES."""
    if device.startswith("cuda"):
        if gpus_per_run <= 0:
            raise AvgzslError("--device cuda with --executor ray needs --gpus-per-run (1: a GPU per run; "
                              "0.5: two runs share a GPU)")
        return "cuda"  # the first (only) GPU Ray made visible to the task
    if gpus_per_run > 0:
        log.warning("--gpus-per-run %g reserves GPUs but --device is %s: the runs train on the CPU",
                    gpus_per_run, device)
    return device


def init_ray(address: str | None = None, what: str = "--executor ray") -> bool:
    """Connect to a cluster (`address`) or start a local one using every core. True when we started it."""
    ray = require_ray(what)
    if ray.is_initialized():
        return False
    kw: dict = {"logging_level": logging.WARNING}
    if address:
        kw["address"] = address
    else:
        kw["include_dashboard"] = False
    try:
        ray.init(**kw)
    except ConnectionError as e:
        raise AvgzslError(f"cannot connect to the Ray cluster at {address}: {e}") from None
    return True


# ---- sequential --------------------------------------------------------------------------------

def _local_worker_init(threads: int, parent: int) -> None:
    """A local worker: its torch threads, and it dies with the process that started it (a `kill -9` of
    `avgzsl reproduce` must not leave runs going on, holding their run folders' locks)."""
    set_threads(threads)
    try:  # Linux: the kernel kills us the moment the parent dies
        import ctypes
        import signal
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # elsewhere: watch for it
        import threading

        def watch():
            while os.getppid() == parent:
                time.sleep(0.2)
            os._exit(1)
        threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent:  # the parent died before the death signal was armed
        os._exit(1)


def _run_group(fn, group, device: str, progress: bool) -> list[tuple[object, BaseException]]:
    """One pack (or one run) with a retry: a member that fails is run once more, alone. Returns the
    (run, error) that failed twice; an AvgzslError (bad data or config) comes back at once, unretried."""
    if fn is not None or len(group) == 1:
        failed = []
        for exp in group:
            try:
                (fn or run_experiment)(exp, device, progress)
            except Exception as err:  # noqa: BLE001 - judged below
                failed.append((exp, err))
    else:
        failed = run_pack(group, device, progress)
    still = []
    for exp, err in failed:
        if isinstance(err, AvgzslError):
            return [(exp, err)]
        log.warning("%s failed (%s: %s); retrying once", exp.out, type(err).__name__, err)
        try:
            (fn or run_experiment)(exp, device, progress)
        except Exception as again:  # noqa: BLE001 - one broken run must not lose the others
            if isinstance(again, AvgzslError):
                return [(exp, again)]
            still.append((exp, again))
    return still


def _local_task(fn, group, device: str) -> dict:
    """Body of one pack (or one run) in a local worker process; avgzsl errors returned as values."""
    t = time.perf_counter()
    failed = _run_group(fn, group, device, False)
    fatal = [f"{type(e).__name__}: {e}" for _, e in failed if isinstance(e, AvgzslError)]
    if fatal:
        return {"ok": False, "fatal": True, "error": fatal[0], "failed": [str(x.out) for x, _ in failed]}
    return {"ok": not failed, "fatal": False, "seconds": time.perf_counter() - t,
            "failed": [str(x.out) for x, _ in failed],
            "error": "; ".join(f"{type(e).__name__}: {e}" for _, e in failed)}


def _label(group) -> str:
    e = group[0]
    seeds = ",".join(str(x.seed) for x in group)
    return f"{e.dataset} {e.variant.key} seed{'s' * (len(group) > 1)} {seeds}" + (" (packed)" if len(group) > 1 else "")


class LocalRunner:
    """The runs on this machine, retrying a failure once: with jobs = 1 one after another in this process
    (at the process's torch threads), with jobs > 1 that many at once in worker processes (spawned, so no
    forked torch state), `threads` torch threads each (threads.py says why one each is the CPU default).
    pack = K > 1: runs that differ only in their seed train K at a time as one pack (pack.py,
    reproduce.pack_groups); a pack is one job."""

    def __init__(self, progress: bool = True, fn: Callable | None = None, jobs: int = 1, threads: int | None = None,
                 pack: int | dict = 1):
        self.progress = progress
        self.fn = fn
        self.jobs, self.threads, self.pack = jobs, threads, pack

    def set_pack(self, sizes: dict[str, int]) -> None:
        """Pack sizes per model (reproduce.pack_plan), replacing the one size given at construction."""
        self.pack = sizes

    def __call__(self, todo, device: str) -> list[tuple[object, str]]:
        groups = pack_groups(todo, self.pack) if self.fn is None else [[e] for e in todo]
        if self.jobs > 1 and len(groups) > 1:
            return self._parallel(groups, device, self.threads or 1)
        if self.threads is not None:
            set_threads(self.threads)
        failures = []
        for i, group in enumerate(groups, 1):
            print(f"[{i}/{len(groups)}] {_label(group)}", flush=True)
            for e, err in _run_group(self.fn, group, device, self.progress):
                if isinstance(err, AvgzslError):
                    raise err  # bad data or config: every run would fail the same way
                log.error("%s failed again: %s", e.out, err)
                failures.append((e, f"{type(err).__name__}: {err}"))
        return failures

    def _parallel(self, groups, device: str, threads: int) -> list[tuple[object, str]]:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed
        from concurrent.futures.process import BrokenProcessPool

        jobs = min(self.jobs, len(groups))
        runs = sum(len(g) for g in groups)
        packs = f" in {len(groups)} packs" if len(groups) < runs else ""
        print(f"{runs} runs{packs}, {jobs} at a time ({threads} torch thread{'s' * (threads > 1)} each)", flush=True)
        failures, fatal = [], None
        pool = ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), initializer=_local_worker_init,
                                   initargs=(threads, os.getpid()))
        try:
            futures = {pool.submit(_local_task, self.fn, g, device): g for g in groups}
            for n, fut in enumerate(as_completed(futures), 1):
                group = futures[fut]
                try:
                    out = fut.result()
                except BrokenProcessPool as err:  # a worker died (killed, out of memory)
                    out = {"ok": False, "fatal": False, "error": f"worker process died: {err}",
                           "failed": [str(e.out) for e in group]}
                label = f"[{n}/{len(groups)}] {_label(group)}"
                if out["ok"]:
                    print(f"{label}  done in {out['seconds']:.0f}s", flush=True)
                    continue
                print(f"{label}  FAILED: {out['error']}", flush=True)
                if out["fatal"] and fatal is None:  # bad data or config: every run would fail the same way
                    fatal = out["error"]
                    for f in futures:
                        f.cancel()
                for e in group:
                    if str(e.out) in out["failed"]:
                        log.error("%s failed: %s", e.out, out["error"])
                        failures.append((e, out["error"]))
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if fatal is not None:
            raise AvgzslError(fatal)
        return failures


# ---- Ray -----------------------------------------------------------------------------------------

def _ray_task(fn, exp, device: str, num_cpus: float, env: dict):
    """Body of one Ray task. Avgzsl errors (bad data/config) come back as values so Ray does not retry them."""
    prepare_worker(num_cpus, env)
    fn = fn or run_experiment
    t = time.perf_counter()
    try:
        fn(exp, device, False)
    except AvgzslError as e:
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}
    return {"ok": True, "seconds": time.perf_counter() - t, "pid": os.getpid()}


class RayRunner:
    """Each run is a Ray task with `num_cpus` CPUs (its torch threads) and `num_gpus` GPUs.

    Ray retries a task once when it raises or its worker dies (`max_retries=1, retry_exceptions=True`);
    a run that fails twice is returned as a failure. Connects to `address` (a running cluster: `auto`,
    `HOST:6379` or `ray://HOST:10001`), or starts Ray on this machine with every core; a Ray session that
    is already initialised (e.g. by the caller) is used as it is.
    """

    def __init__(self, address: str | None = None, num_cpus: float = 1.0, num_gpus: float = 0.0,
                 fn: Callable | None = None, max_retries: int = 1):
        if num_cpus <= 0:
            raise AvgzslError(f"CPUs per run must be > 0, got {num_cpus}")
        if num_gpus < 0:
            raise AvgzslError(f"--gpus-per-run must be >= 0, got {num_gpus}")
        self.address, self.num_cpus, self.num_gpus = address, float(num_cpus), float(num_gpus)
        self.fn, self.max_retries = fn, max_retries

    def __call__(self, todo, device: str) -> list[tuple[object, str]]:
        ray = require_ray()
        dev = worker_device(device, self.num_gpus)
        if not todo:
            return []
        started = init_ray(self.address)
        try:
            task = ray.remote(num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=self.max_retries,
                              retry_exceptions=True)(_ray_task)
            env = forwarded_env()
            refs = {task.remote(self.fn, e, dev, self.num_cpus, env): e for e in todo}
            cpus = ray.cluster_resources().get("CPU", 0)
            print(f"{len(todo)} runs as Ray tasks ({self.num_cpus:g} CPU"
                  f"{f', {self.num_gpus:g} GPU' if self.num_gpus else ''} each; cluster: {cpus:g} CPUs)", flush=True)
            failures, pending, n = [], list(refs), 0
            try:
                while pending:
                    ready, pending = ray.wait(pending, num_returns=1)
                    e = refs[ready[0]]
                    n += 1
                    try:
                        out = ray.get(ready[0])
                    except Exception as err:  # noqa: BLE001 - RayTaskError, WorkerCrashedError, ...
                        out = {"ok": False, "error": one_line(err) + " (after 1 retry)"}
                    label = f"[{n}/{len(todo)}] {e.dataset} {e.variant.key} seed {e.seed}"
                    if out["ok"]:
                        print(f"{label}  done in {out['seconds']:.0f}s", flush=True)
                    else:
                        print(f"{label}  FAILED: {out['error']}", flush=True)
                        log.error("%s failed: %s", e.out, out["error"])
                        failures.append((e, out["error"]))
            except KeyboardInterrupt:
                for r in pending:
                    ray.cancel(r, force=True)
                raise
            return failures
        finally:
            if started:
                ray.shutdown()


def make_runner(executor: str = "local", ray_address: str | None = None, gpus_per_run: float = 0.0,
                cpus_per_run: float = 1.0, progress: bool = True, jobs: int = 1, threads: int | None = None,
                pack: int = 1):
    """The runner for `reproduce(..., runner=...)`: `local` (`jobs` runs or packs at once, `threads`
    each: threads.local_jobs picks them; `pack` runs per pack) or `ray`."""
    if executor == "local":
        if ray_address:
            raise AvgzslError("--ray-address needs --executor ray")
        if gpus_per_run:
            raise AvgzslError("--gpus-per-run needs --executor ray")
        return LocalRunner(progress=progress, jobs=jobs, threads=threads, pack=pack)
    if executor == "ray":
        if pack > 1:
            raise AvgzslError("--pack needs --executor local (a Ray task is one run)")
        require_ray()
        return RayRunner(ray_address, num_cpus=cpus_per_run, num_gpus=gpus_per_run)
    raise AvgzslError(f"unknown executor {executor!r}; choose local or ray")


__all__ = ["make_runner", "LocalRunner", "RayRunner", "require_ray", "require_tune", "init_ray",
           "prepare_worker", "one_line", "INSTALL_HINT"]
