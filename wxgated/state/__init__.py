"""Shared state: `open_backend(config["state"])` builds the configured backend.

The interface is in `wxgated.state.base` (StateBackend, StateError); `memory` is the
embedded default, `redis` serves several workers or machines.
"""

from __future__ import annotations

from typing import Any

from wxgated.config.units import parse_duration
from wxgated.state.base import StateBackend, StateError
from wxgated.state.memory import MemoryState

__all__ = ["StateBackend", "StateError", "MemoryState", "open_backend"]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_REDIS_TIMEOUT = 0.2


def redis_options(state_cfg: dict[str, Any]) -> dict[str, Any]:
    """The RedisState keyword arguments for a `state:` section (its `redis:` part)."""
    r = state_cfg.get("redis") or {}
    opts: dict[str, Any] = {
        "url": r.get("url", DEFAULT_REDIS_URL),
        "cluster": bool(r.get("cluster", False)),
        "timeout": parse_duration(r.get("timeout", DEFAULT_REDIS_TIMEOUT)),
    }
    for optional in ("prefix", "max_connections"):
        if optional in r:
            opts[optional] = r[optional]
    return opts


def open_backend(state_cfg: dict[str, Any] | None) -> StateBackend:
    """The backend a `state:` config section asks for (default: memory).

    Opening does not connect: redis-py connects on first use, so a Redis that is down
    at start-up shows up as StateError on calls (and in readiness), not as a crash.
    """
    cfg = state_cfg or {}
    backend = cfg.get("backend", "memory")
    if backend == "memory":
        return MemoryState()
    if backend == "redis":
        from wxgated.state.redis import RedisState

        return RedisState(**redis_options(cfg))
    raise ValueError(f"unknown state backend {backend!r}")
