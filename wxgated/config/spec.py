"""Small helpers for turning config fragments into compile-time values."""

from __future__ import annotations

import os
from typing import Any

from wxgated.config.units import parse_duration


def frozen(obj: Any) -> Any:
    """A hashable, comparable copy of a config fragment (for Registry specs)."""
    if isinstance(obj, dict):
        return tuple(sorted((k, frozen(v)) for k, v in obj.items()))
    if isinstance(obj, list):
        return tuple(frozen(v) for v in obj)
    return obj


def duration(value: Any, default: float) -> float:
    """Seconds from a config duration ("250ms", "10s"), or `default` when unset."""
    return default if value is None else parse_duration(value)


def worker_count(cfg: dict[str, Any]) -> int:
    """`server.workers` as a number ("auto": the cores this process may run on)."""
    workers = cfg.get("server", {}).get("workers", 1)
    if workers == "auto":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
    return int(workers)
