"""The run folder's lock: one process at a time works on a folder (`run_lock`).

Train, resume, eval, report, reproduce and sweep hold the lock of the folder they work on (an flock on
`FOLDER/.lock`, which the kernel releases when the holder dies); a second one stops at once naming the
holder. Once the lock is held, temporaries of killed writers (`.*.tmp`) are garbage and are removed.
The folder need not be a run folder (`reproduce` and `sweep` also lock their output roots).
"""
from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

from .errors import AvgzslError, RunFolderBusyError
from .io import clean_stale_tmp, pid_alive, write_error, write_errors
from .runfolder import FRESH, RunFolder

log = logging.getLogger("avgzsl.runlock")

LOCK_NAME = RunFolder.LOCK

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
    import fcntl  # POSIX only: imported where the lock is taken
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
    lock = RunFolder(path).lock_path
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
        if discard_on_error and created is not None and RunFolder(path).status() == FRESH:
            _discard(path, created, tree=True)
        raise
    finally:
        with _held_guard:
            _held.pop(key, None)
        _release(fd, lock)
