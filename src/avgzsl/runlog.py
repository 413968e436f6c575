"""The run folder: resolved config, JSON-lines epoch log, checkpoints, training state, results.

    RUN_DIR/
      config.yaml          resolved run config (every default written out)
      env.json             versions, device, threads, git commit, data provenance, leakage overrides
      log.jsonl            one JSON object per epoch (loss terms, lr, val S/U/HM/ZSL, beta)
      state.pt             full training state after the last finished epoch (for --resume)
      checkpoints/stage1_best.pt, checkpoints/stage2_final.pt
      eval/test.npz        nearest seen/unseen class per test video, labels, embeddings (for reports)
      results.json         test and val S/U/HM/ZSL/beta/AUSUC, best_epoch, stage2_epochs, curves
      timings.json         wall time per stage (kept out of results.json so results are reproducible)
      .lock                while a command works on the folder: its pid, host and start time (`run_lock`)

One process at a time: train, resume, eval, report and reproduce hold the folder's lock (an flock on
`.lock`, which the kernel releases when the holder dies); a second one stops at once naming the holder.
Once the lock is held, temporaries of killed writers (`.*.tmp`) are garbage and are removed.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import platform
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from .errors import AvgzslError, DataError, RunFolderBusyError
from .io import atomic_write, clean_stale_tmp, pid_alive, write_error, write_errors, write_json, write_text

log = logging.getLogger("avgzsl.runlog")

LOCK_NAME = ".lock"


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device) -> dict:
    from . import __version__
    return {
        "avgzsl": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "numpy": np.__version__, "platform": platform.platform(), "device": str(device),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "git_commit": git_commit(),
        "argv": sys.argv,
    }


# ---- the run folder's lock ------------------------------------------------------------------------

_held: dict[str, int] = {}  # real path of a folder this process holds -> the holding thread (re-entrant)
_held_guard = threading.Lock()


def _holder(lock: Path) -> dict:
    """What the lock file says about its holder ({} while the holder has not written it yet)."""
    for _ in range(20):
        try:
            info = json.loads(lock.read_text() or "null")
            if isinstance(info, dict) and "pid" in info:
                return info
        except (OSError, ValueError):
            pass
        time.sleep(0.025)
    return {}


def _busy(path: Path, lock: Path) -> RunFolderBusyError:
    info = _holder(lock)
    if not info:
        who = "another process"
    else:
        host = "" if info.get("host") == socket.gethostname() else f" on {info.get('host')}"
        who = f"pid {info['pid']}{host} (started {info.get('started', '?')})"
    return RunFolderBusyError(f"{path} is in use by {who}; wait for it or remove {lock} if that process is gone")


def _take(path: Path, lock: Path, required: bool) -> int | None:
    """Open and lock `lock`; the fd, or None when the folder cannot be written and `required` is False."""
    import fcntl
    for _ in range(50):
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as e:
            if not required and e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                return None  # a read-only run folder: nobody can change it under us
            err = write_error(e, path)
            if err is None:
                raise
            raise err from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _busy(path, lock) from None
        except OSError:
            # no flock on this file system: trust the pid in the file (a dead one on this host is stale)
            info = _holder(lock) if os.fstat(fd).st_size else {}
            if info and info.get("pid") != os.getpid() and (info.get("host") != socket.gethostname()
                                                             or pid_alive(int(info["pid"]))):
                os.close(fd)
                raise _busy(path, lock) from None
        try:  # a holder that released meanwhile unlinked the file we locked: lock the new one
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        text = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                           "started": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": sys.argv[:8]})
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode() + b"\n", 0)
        return fd
    raise RunFolderBusyError(f"{path}: could not take its lock {lock} (it keeps changing)")


def _release(fd: int, lock: Path) -> None:
    try:  # unlink while still locked: a waiter that opened this file then sees it is gone
        if os.path.samestat(os.fstat(fd), os.stat(lock)):
            os.unlink(lock)
    except OSError:
        pass
    finally:
        os.close(fd)  # releases the flock


def _make_folder(path: Path) -> Path | None:
    """mkdir -p `path`; returns the topmost folder this call created (None if `path` existed)."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    created = None
    with write_errors(path):
        for p in reversed(missing):
            try:
                p.mkdir()
            except FileExistsError:  # made by a concurrent process: not ours to remove
                continue
            created = created or p
    return created


def _discard(path: Path, created: Path, tree: bool) -> None:
    """Remove the folders this process created for `path`: with `tree`, `path` and all in it (we hold its
    lock, and it holds nothing resumable); its parents only while empty (another run may sit beside it)."""
    if tree:
        shutil.rmtree(path, ignore_errors=True)
    p = path
    while len(p.parts) >= len(created.parts):
        try:
            p.rmdir()
        except FileNotFoundError:
            pass
        except OSError:
            break
        p = p.parent


@contextlib.contextmanager
def run_lock(path: str | Path, *, create: bool = True, clean_tree: bool = True, discard_on_error: bool = False,
             required: bool = True):
    """Hold the exclusive lock of the folder `path` for the block (re-entrant within one thread).

    A second process fails at once with RunFolderBusyError naming the holder's pid, host and start time.
    The lock is an flock on `path/.lock`: released on exit, on exceptions and when the holder dies, so a
    crashed holder never blocks the next run. Once it is held, temporaries that killed writers left in
    the folder (and, with clean_tree, its subfolders) are removed.
    create: make the folder (parents too) if missing; otherwise a missing folder is passed through
    unlocked (the command reports it). discard_on_error: if this call made the folder and the block
    fails before anything resumable (state.pt, results.json) is in it, remove it again: a failed start
    leaves nothing behind. required=False: a folder where the lock cannot be created (read-only) is
    passed through unlocked, for commands that only read it.
    """
    path = Path(path)
    key = os.path.realpath(path)
    me = threading.get_ident()
    with _held_guard:
        holder = _held.get(key)
    if holder is not None and holder != me:
        raise RunFolderBusyError(f"{path} is in use by another thread of this process (pid {os.getpid()})")
    if holder is not None:  # held further up this thread's stack: that holder releases it
        yield path
        return
    if path.exists() and not path.is_dir():
        raise AvgzslError(f"{path}: exists and is not a folder")
    if not path.exists() and not create:
        yield path
        return
    created = _make_folder(path) if create else None
    lock = path / LOCK_NAME
    try:
        fd = _take(path, lock, required)
    except BaseException:
        if created is not None:
            _discard(path, created, tree=False)  # the lock is another's: remove only what is empty
        raise
    if fd is None:
        yield path
        return
    with _held_guard:
        _held[key] = me
    try:
        removed = clean_stale_tmp(path, recursive=clean_tree)
        if removed:
            log.info("%s: removed %d temporary file(s) of killed writers", path, len(removed))
        yield path
    except BaseException:
        if discard_on_error and created is not None and not resumable(path):
            _discard(path, created, tree=True)
        raise
    finally:
        with _held_guard:
            _held.pop(key, None)
        _release(fd, lock)


def resumable(path: str | Path) -> bool:
    path = Path(path)
    return (path / "state.pt").exists() or (path / "results.json").exists()


def clear_run_folder(path: str | Path) -> None:
    """Empty a run folder whose run never finished an epoch (nothing to keep), keeping its lock."""
    for p in Path(path).iterdir():
        if p.name == LOCK_NAME:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


# ---- data provenance ------------------------------------------------------------------------------

def data_fingerprint(bench) -> str:
    """What identifies the data a run trains on: the reader's cache key (a hash of the split lists and of
    every source file's size and mtime; a native or cached copy keeps its source's key) when it made one,
    else a hash of the arrays themselves (in-memory benchmarks)."""
    key = bench.info.get("cache_key")
    if isinstance(key, str) and key:
        return key
    h = hashlib.blake2b(digest_size=32)
    h.update(json.dumps([bench.name, bench.feature_set, list(bench.class_names)]).encode())
    h.update(np.ascontiguousarray(bench.text))
    for stage in sorted(bench.splits):
        s = bench.splits[stage]
        h.update(stage.encode() + b"\0" + "\0".join(s.video_names).encode())
        for a in (s.labels, s.classes, s.audio, s.video, getattr(s, "audio_mask", None), getattr(s, "video_mask", None)):
            if a is not None:
                h.update(np.ascontiguousarray(a))
    return "content-" + h.hexdigest()


def data_where(info: dict) -> str:
    """The folder a benchmark was read from (a native folder's own path, else the dataset root)."""
    if info.get("source") == "native" and info.get("native_path"):
        return str(info["native_path"])
    return str(info.get("root", "?"))


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def state_path(self) -> Path:
        return self.path / "state.pt"

    def start(self, cfg, bench, device, resume: bool = False, leakage: list[str] | None = None) -> None:
        if not resume and (self.path / "results.json").exists():
            raise AvgzslError(f"{self.path}: already holds a finished run; choose another --out")
        if not resume and self.state_path.exists():
            raise AvgzslError(f"{self.path}: holds an unfinished run; continue it with --resume {self.path}")
        with write_errors(self.path):
            self.path.mkdir(parents=True, exist_ok=True)
            (self.path / "checkpoints").mkdir(exist_ok=True)
        cfg_path = self.path / "config.yaml"
        if resume and cfg_path.exists():
            from .config import RunConfig, read_yaml
            stored = RunConfig.from_dict(read_yaml(cfg_path), where=str(cfg_path)).to_dict()
            given = cfg.to_dict()
            for d in (stored, given):  # a permission for this resume, not part of the run's config
                d.pop("allow_data_change", None)
            if stored != given:
                raise AvgzslError(f"{cfg_path}: the run was started with another config; "
                                  "resume it with its own config")
        else:  # on resume the stored config stays as it was written
            write_text(cfg_path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        old_env = self._read_env() if resume else {}
        data = {k: v for k, v in bench.info.items() if isinstance(v, (str, int, float, bool, list, type(None)))}
        fingerprint = data_fingerprint(bench)
        changes = list(old_env.get("data_changes") or [])
        old_data = old_env.get("data") if isinstance(old_env.get("data"), dict) else {}
        old_fp = old_env.get("data_fingerprint") or old_data.get("cache_key")  # older run folders: the cache key
        if resume and old_fp and old_fp != fingerprint:
            was, now = data_where(old_data), data_where(data)
            if not cfg.allow_data_change:
                raise DataError(f"{self.path / 'env.json'}: the run was trained on {was} (data fingerprint "
                                f"{old_fp[:16]}), not on {now} (fingerprint {fingerprint[:16]}); resume with "
                                f"--data {was}, or add --set allow_data_change=true to go on with the new data "
                                "(recorded in env.json)")
            stage, epoch = self._progress()
            changes.append({"from": old_fp, "to": fingerprint, "from_root": was, "to_root": now,
                            "at_stage": stage, "at_epoch": epoch, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
            log.warning("%s: resuming on other data (%s instead of %s) from stage %d epoch %d, as "
                        "allow_data_change=true asks; recorded in env.json", self.path, now, was, stage, epoch + 1)
        env = environment(device)
        env["data"] = data
        env["data_fingerprint"] = fingerprint
        if changes:
            env["data_changes"] = changes
        env["leakage_overridden"] = leakage or []
        write_json(self.path / "env.json", env)
        if resume:
            self._truncate_log()

    def _read_env(self) -> dict:
        try:
            env = json.loads((self.path / "env.json").read_text())
        except (OSError, ValueError):
            return {}
        return env if isinstance(env, dict) else {}

    def _progress(self) -> tuple[int, int]:
        """(stage, epochs of that stage already trained) as the saved state says."""
        state = self.load_state()
        if state is None:
            return 1, 0
        if state["stage"] == 1:
            return 1, int(state["stage1"]["done"])
        return int(state["stage"]), int(state.get("done2", 0))

    def log_epoch(self, row: dict) -> None:
        path = self.path / "log.jsonl"
        old = path.read_text() if path.exists() else ""
        write_text(path, old + json.dumps(row) + "\n")

    def _truncate_log(self) -> None:
        """Drop log rows of epochs after the saved state (a kill between log and state)."""
        path = self.path / "log.jsonl"
        state = self.load_state()
        if not path.exists():
            return
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if state is None:
            keep = []
        else:
            done = {1: state["stage1"]["done"], 2: state.get("done2", 0) if state["stage"] == 2 else 0}
            keep = [r for r in rows if r["epoch"] < done[r["stage"]]]
        write_text(path, "".join(json.dumps(r) + "\n" for r in keep))

    def save_state(self, state: dict) -> None:
        atomic_write(self.state_path, lambda p: torch.save(state, p))

    def load_state(self) -> dict | None:
        if not self.state_path.exists():
            return None
        try:
            return torch.load(self.state_path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001
            raise AvgzslError(f"{self.state_path}: unreadable training state ({type(e).__name__})") from None

    def save_eval(self, name: str, **arrays) -> None:
        arrays = {k: v for k, v in arrays.items() if v is not None}
        flat = {}
        for k, v in arrays.items():
            if hasattr(v, "seen_col"):  # a metrics.Nearest
                for f in ("seen_col", "seen_dist", "unseen_col", "unseen_dist"):
                    flat[f"nearest_{f}"] = getattr(v, f)
            else:
                flat[k] = np.asarray(v)
        if "class_names" in flat:
            flat["class_names"] = flat["class_names"].astype(str)  # no object arrays: loads without pickle
        def write(p: Path) -> None:
            with open(p, "wb") as f:  # closed here, so a failed flush raises instead of being lost at exit
                np.savez(f, **flat)
        atomic_write(self.path / "eval" / f"{name}.npz", write)

    def finish(self, results: dict, timings: dict) -> None:
        write_json(self.path / "timings.json", {k: round(v, 3) for k, v in timings.items()})
        write_json(self.path / "results.json", results)
        if self.state_path.exists():
            self.state_path.unlink()  # the run is complete; results.json marks it
