"""Small helpers for turning config fragments into compile-time values."""

from __future__ import annotations

import hashlib
import os
from typing import Any

from wxgated.config.loader import iter_file_refs
from wxgated.config.units import parse_duration


def frozen(obj: Any) -> Any:
    """A hashable, comparable copy of a config fragment (for Registry specs)."""
    if isinstance(obj, dict):
        return tuple(sorted((k, frozen(v)) for k, v in obj.items()))
    if isinstance(obj, list):
        return tuple(frozen(v) for v in obj)
    return obj


def file_contents(fragment: Any) -> tuple[tuple[str, str], ...]:
    """(path, sha256) of every file `fragment` names (the `*_file`, `cert`, tls `key`
    rule of iter_file_refs). An unreadable file gets a marker instead of a digest, so
    it differs from any content and from a later readable state."""
    out = {}
    for _, value in iter_file_refs(fragment):
        path = os.path.abspath(os.path.expanduser(value))
        try:
            with open(path, "rb") as f:
                out[path] = hashlib.sha256(f.read()).hexdigest()
        except OSError as exc:
            out[path] = f"unreadable: {exc.strerror or exc}"
    return tuple(sorted(out.items()))


def identity(fragment: Any) -> Any:
    """A Registry spec for an object built from `fragment` *and the files it names*.

    frozen() alone sees only paths: a key rotated by writing a new PEM to the same path
    would leave the old object (verifying with the old key) alive across reloads. The
    contents are read before the object is built, so a file changing in between makes
    the next reload rebuild it again rather than keep a stale one."""
    return (frozen(fragment), file_contents(fragment))


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
