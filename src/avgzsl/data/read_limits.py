"""How many bytes a data file may expand to when it is read, and the settings that bound it.

Shared by the restricted unpickler and `.npy` reader (`data/safe_pickle.py`) and the HDF5 feature
reader (`data/features.py`): each checks what a file declares or expands to against `read_limit`
of the file's size before anything that big is allocated.
"""
from __future__ import annotations

import os
import re

from ..errors import ConfigError

__all__ = ["read_limit", "format_bytes", "MAX_READ_BYTES_ENV", "MAX_READ_RATIO_ENV"]

# A file may expand to RATIO times its size when read (at least FLOOR, at most the absolute cap). A
# genuine feature pickle or HDF5 file expands about 1-8x (array bytes are stored as they are; a short
# int or None costs 1-2 file bytes and 8 once loaded); a file built from shared references expands
# without bound.
MAX_READ_BYTES_ENV = "AVGZSL_MAX_READ_BYTES"
MAX_READ_RATIO_ENV = "AVGZSL_MAX_READ_RATIO"
DEFAULT_MAX_READ_BYTES = 16 << 30
DEFAULT_READ_RATIO = 64
READ_FLOOR = 64 << 20
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB' (for messages)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024:
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def _env_limit(name: str, default: float, unit: str) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    m = re.fullmatch(r"(\d+(?:\.\d*)?)\s*([KMGT]?)(?:i?B)?", text, re.I) if unit == "bytes" else \
        re.fullmatch(r"(\d+(?:\.\d*)?)()", text)
    if m is None or float(m.group(1)) <= 0:
        example = "17179869184 or 16G" if unit == "bytes" else "64"
        raise ConfigError(f"{name}={text!r}: expected a positive number of {unit} (e.g. {example})")
    return float(m.group(1)) * _UNITS[m.group(2).upper()]


def read_limit(file_size: int) -> int:
    """The most bytes a file of `file_size` bytes may expand to when it is read: `$AVGZSL_MAX_READ_RATIO`
    (default 64) times its size, at least 64 MiB, at most `$AVGZSL_MAX_READ_BYTES` (default 16 GiB; K/M/G/T
    suffixes allowed). Bad values raise ConfigError."""
    cap = _env_limit(MAX_READ_BYTES_ENV, DEFAULT_MAX_READ_BYTES, "bytes")
    ratio = _env_limit(MAX_READ_RATIO_ENV, DEFAULT_READ_RATIO, "times the file size")
    return int(min(cap, max(READ_FLOOR, ratio * file_size)))
