"""Crash-safe file writes: write a temporary file in the same folder, then rename it into place.

A kill at any moment leaves either the old file or the new one, never a partial one. A temporary is named
`.<name>.<pid>-<random>.tmp`; one left by a killed writer is removed by `clean_stale_tmp` (run folders do it
when their lock is taken). Write failures a user can fix (read-only file system, no permission, a full
disk) become one `WriteError` naming the path and the cause instead of an OSError traceback.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Callable

from .errors import WriteError

WRITE_CAUSES = {
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied (operation not permitted)",
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for this process's file-size limit (ulimit -f)",
}
LOW_SPACE = 64 * 2**20  # bytes: a write that failed with less free than this ran out of disk
_TMP_PID = re.compile(r"\.(\d+)-[0-9a-f]{8}\.tmp$")


def write_error(e: OSError, path: str | Path) -> WriteError | None:
    """The WriteError for an OSError a user can fix, naming `path`; None for any other OSError."""
    cause = WRITE_CAUSES.get(e.errno)
    return None if cause is None else WriteError(f"{path}: cannot write ({cause})")


@contextlib.contextmanager
def write_errors(path: str | Path):
    """Inside the block, a read-only/permission/full-disk OSError becomes one WriteError naming `path`."""
    try:
        yield
    except OSError as e:
        err = write_error(e, path)
        if err is None:
            raise
        raise err from e


def _torch_write_failed(e: RuntimeError) -> bool:
    # torch.save writes through its own C++ writer: a full disk surfaces as "unexpected pos N vs M" or
    # "file write failed", with no errno.
    msg = str(e)
    return "unexpected pos" in msg or "file write failed" in msg or "failed writing file" in msg


def _fsize_limited() -> bool:
    try:
        import resource
    except ImportError:  # not on this platform
        return False
    return resource.getrlimit(resource.RLIMIT_FSIZE)[0] != resource.RLIM_INFINITY


def _failed_write(path: Path, e: RuntimeError) -> WriteError:
    """Name the cause torch did not: look at the disk while the partial file still fills it."""
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    if free is not None and free < LOW_SPACE:
        return WriteError(f"{path}: cannot write ({WRITE_CAUSES[errno.ENOSPC]})")
    if _fsize_limited():
        return WriteError(f"{path}: cannot write ({WRITE_CAUSES[errno.EFBIG]})")
    first = (str(e).strip().splitlines() or [type(e).__name__])[-1][:200]
    return WriteError(f"{path}: cannot write ({first}; is the disk full or over its quota?)")


def _new_tmp(path: Path) -> Path:
    """Create an empty temporary beside `path`. os.open with 0666 lets the kernel apply the umask, as an
    ordinary write would (mkstemp's 0600 left every result unreadable to the group); the name carries the
    writer's pid, so a cleaner can tell a live writer's file from a dead one's."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, flags, 0o666))
            return tmp
        except FileExistsError:
            continue


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call write(tmp_path), fsync it, then os.replace it onto `path`."""
    path = Path(path)
    with write_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _new_tmp(path)
        try:
            write(tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except RuntimeError as e:
            if not _torch_write_failed(e):
                raise
            raise _failed_write(path, e) from e
        finally:
            with contextlib.suppress(OSError):  # gone after the rename; never mask the first error
                tmp.unlink()
    return path


def pid_alive(pid: int) -> bool:
    """Whether a process of this pid exists on this machine (this process counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, under another user
        return True
    return True


def clean_stale_tmp(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Remove the temporaries (`.*.tmp` files) that killed writers left in `folder` (and its subfolders).

    Call it holding the folder's lock, so that no writer that takes the lock is alive; a temporary whose
    name carries the pid of a live process is kept all the same (a writer that took no lock)."""
    removed = []
    for here, dirs, files in os.walk(folder):  # does not follow symlinks out of the folder
        for name in files:
            if not (name.startswith(".") and name.endswith(".tmp")):
                continue
            m = _TMP_PID.search(name)
            if m and pid_alive(int(m.group(1))):
                continue
            p = Path(here) / name
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
        if not recursive:
            break
    return removed


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))


def write_json(path: str | Path, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def append_jsonl(path: str | Path, row: dict) -> None:
    """Append one JSON line. Rewrites the file atomically so a kill never leaves half a line."""
    path = Path(path)
    old = path.read_text() if path.exists() else ""
    write_text(path, old + json.dumps(row) + "\n")
