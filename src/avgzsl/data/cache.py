"""The benchmark cache: its folder, its key, and reading / writing it in the native format.

A read benchmark is cached as a native folder (`data/native.py`) named `<root name>-<key>`, where the
key hashes every source file's path, size and mtime plus the loading options and the format and
reader versions, so a changed file or option is read afresh. An unreadable cache is moved aside and
read again from the source; a failed write only logs a warning. `default_cache()` is the one place
that says where generated data and array caches live.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from pathlib import Path

from ..errors import DataError
from .layout import _Source
from .native import FORMAT_VERSION, is_native, load_native, write_native
from .types import Benchmark

log = logging.getLogger("avgzsl.data")

# Bump when the reader's output for the same files changes: it is part of the cache key.
# 2: class names NFC-normalised, hidden feature files of listed classes read.
READER_VERSION = 2

__all__ = ["default_cache", "READER_VERSION"]


def default_cache() -> Path:
    """Where generated data and array caches live: `$AVGZSL_CACHE` (`~` expanded), else `~/.cache/avgzsl`."""
    env = os.environ.get("AVGZSL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "avgzsl"


def _cache_key(src: _Source, text_alignment: str) -> str:
    payload = {
        "options": {"split": src.split, "feature_dir": src.feature_dir, "text_alignment": text_alignment,
                    "format_version": FORMAT_VERSION, "reader_version": READER_VERSION},
        "files": src.stats,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()


def _cache_path(src: _Source, key: str, cache_dir) -> Path:
    """`<cache_dir or default_cache()>/<root name>-<key>`."""
    safe_name = re.sub(r"[^A-Za-z0-9_.-]", "_", src.name) or "benchmark"
    cache_path = Path(cache_dir).expanduser() if cache_dir is not None else default_cache()
    return cache_path / f"{safe_name}-{key}"


def _clean_stale_tmp(cache_root: Path, max_age_s: float = 86400.0) -> None:
    """Remove temporary folders that killed writers left behind (they never load: no manifest)."""
    now = time.time()
    try:
        for p in cache_root.iterdir():
            if p.name.startswith(".") and (".tmp-" in p.name or ".old-" in p.name) and p.is_dir() \
                    and now - p.stat().st_mtime > max_age_s:
                shutil.rmtree(p, ignore_errors=True)
    except OSError:
        pass


def _load_cache(path: Path, root: Path) -> Benchmark | None:
    if not is_native(path):
        return None
    try:
        bench = load_native(path)
    except DataError as e:
        log.warning("ignoring unreadable cache %s (%s); reading the source files again", path, e)
        broken = path.parent / f".{path.name}.old-{os.getpid()}"
        try:
            os.replace(path, broken)
            shutil.rmtree(broken, ignore_errors=True)
        except OSError:
            pass
        return None
    bench.info.update(root=str(root.resolve()), cache_hit=True, cache_path=str(path), source="cache")
    return bench


def _write_cache(bench: Benchmark, path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _clean_stale_tmp(path.parent)
        if is_native(path):
            return  # another process finished the same cache first
        write_native(bench, path)
        log.info("cached %s in %s", bench.name, path)
    except (OSError, DataError) as e:
        if is_native(path):
            return  # lost a race to a concurrent writer: its folder is complete
        log.warning("could not write the benchmark cache %s (%s); continuing without it", path, e)
