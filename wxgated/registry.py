"""Long-lived objects that must survive a config reload when their config did not change.

Connection pools, breaker and health state, local rate-limit buckets: they are keyed by a
stable identity (e.g. ("pool", upstream, target_url)) plus a `spec` (the config that
shaped them). A reload compiles a new Snapshot against the same Registry; objects whose
key and spec match are reused, the rest are created. After the swap, `commit()` closes
what the new Snapshot no longer uses; after a failed compile, `abort()` drops what it made.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def close_quietly(obj: Any) -> None:
    """Call obj.close() if it has one; an async close is scheduled on the running loop."""
    close = getattr(obj, "close", None)
    if close is None:
        return
    try:
        res = close()
        if inspect.isawaitable(res):
            asyncio.ensure_future(res)
    except Exception:  # noqa: BLE001 - closing is best effort
        pass


async def aclose_quietly(obj: Any) -> None:
    """Prefer obj.aclose(), else obj.close(), awaiting whatever is awaitable."""
    close = getattr(obj, "aclose", None) or getattr(obj, "close", None)
    if close is None:
        return
    try:
        res = close()
        if inspect.isawaitable(res):
            await res
    except Exception:  # noqa: BLE001 - closing is best effort
        pass


class Registry:
    def __init__(self) -> None:
        self._live: dict[Any, tuple[Any, Any]] = {}  # key -> (spec, obj)
        self._next: dict[Any, tuple[Any, Any]] = {}

    def keep(self, key: Any, spec: Any, factory: Callable[[], T]) -> T:
        """The object for `key`: the live one when `spec` is unchanged, else a new one."""
        hit = self._next.get(key)
        if hit is not None and hit[0] == spec:
            return hit[1]
        hit = self._live.get(key)
        if hit is not None and hit[0] == spec:
            self._next[key] = hit
            return hit[1]
        obj = factory()
        self._next[key] = (spec, obj)
        return obj

    def commit(self) -> None:
        kept = {id(obj) for _, obj in self._next.values()}
        for _, obj in self._live.values():
            if id(obj) not in kept:
                close_quietly(obj)
        self._live, self._next = self._next, {}

    def abort(self) -> None:
        live = {id(obj) for _, obj in self._live.values()}
        for _, obj in self._next.values():
            if id(obj) not in live:
                close_quietly(obj)
        self._next = {}

    async def aclose_all(self) -> None:
        """Close everything live and wait for async closes (at shutdown)."""
        for _, obj in self._live.values():
            await aclose_quietly(obj)
        self._live = {}

