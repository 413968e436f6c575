"""The loss registry: `LOSSES[name]` maps a loss-term name used in configs and logs to its function."""
from __future__ import annotations

from typing import Callable

LOSSES: dict[str, Callable] = {}


def register_loss(name: str):
    def wrap(fn):
        if name in LOSSES and LOSSES[name] is not fn:
            raise ValueError(f"loss name {name!r} registered twice")
        LOSSES[name] = fn
        return fn
    return wrap
