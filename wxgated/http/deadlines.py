"""Coarse timeouts for many connections: one periodic sweep, no timer per request.

Arming and cancelling a loop timer for every request (header timeout, idle timeout,
upstream read timeout) cost several loop-timer operations per proxied request. Here
a connection just writes its `deadline` (loop time, 0 = none); a sweep that runs every
`resolution` seconds, only while something is registered, calls `on_deadline()` on
the ones that passed. Timeouts fire up to one `resolution` late, which is fine for
timeouts measured in hundreds of milliseconds and up.
"""

from __future__ import annotations

import asyncio
from typing import Any


class Deadlines:
    __slots__ = ("resolution", "items", "_handle", "_loop")

    def __init__(self, resolution: float) -> None:
        self.resolution = resolution
        self.items: set[Any] = set()
        self._handle: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()

    def add(self, obj: Any) -> None:
        self.items.add(obj)
        if self._handle is None:
            self._handle = self._loop.call_later(self.resolution, self._sweep)

    def discard(self, obj: Any) -> None:
        self.items.discard(obj)

    def _sweep(self) -> None:
        self._handle = None
        now = self._loop.time()
        expired = [o for o in self.items if 0 < o.deadline <= now]
        for obj in expired:
            obj.deadline = 0.0
            try:
                obj.on_deadline()
            except Exception:  # noqa: BLE001 - one broken connection must not stop the sweep
                self.items.discard(obj)
        if self.items:
            self._handle = self._loop.call_later(self.resolution, self._sweep)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.items.clear()
