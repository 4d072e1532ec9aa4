"""Coarse timeouts for many connections: buckets swept on one timer, no timer per request.

Arming and cancelling a loop timer for every request (header timeout, idle timeout,
upstream read timeout) cost several loop-timer operations per proxied request. Here a
connection's deadline puts it in a bucket of `resolution` seconds; one timer per
`resolution` pops the buckets whose time has come and calls `on_deadline()` on their
members. Re-arming moves a connection between buckets only when its bucket changes, and
a sweep touches only expired buckets, so 50k idle connections cost nothing between
their deadlines. Timeouts fire up to one `resolution` late.
"""

from __future__ import annotations

import asyncio
from typing import Any


class Deadlines:
    __slots__ = ("resolution", "buckets", "_handle", "_loop")

    def __init__(self, resolution: float) -> None:
        self.resolution = resolution
        self.buckets: dict[int, set[Any]] = {}  # bucket index -> members
        self._handle: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()

    def arm(self, obj: Any, deadline: float) -> None:
        """Set `obj.deadline` (loop time; 0 disarms). `obj.bucket` is ours to keep."""
        obj.deadline = deadline
        idx = int(deadline / self.resolution) + 1 if deadline else 0
        old = obj.bucket
        if idx == old:
            return
        if old:
            members = self.buckets.get(old)
            if members is not None:
                members.discard(obj)
        obj.bucket = idx
        if idx:
            members = self.buckets.get(idx)
            if members is None:
                members = self.buckets[idx] = set()
            members.add(obj)
            if self._handle is None:
                self._handle = self._loop.call_later(self.resolution, self._sweep)

    def _sweep(self) -> None:
        self._handle = None
        now = int(self._loop.time() / self.resolution)
        for idx in sorted(i for i in self.buckets if i <= now):
            for obj in self.buckets.pop(idx):
                obj.bucket = 0
                obj.deadline = 0.0
                try:
                    obj.on_deadline()
                except Exception:  # noqa: BLE001 - one broken connection must not stop the sweep
                    pass
        if self.buckets:
            self._handle = self._loop.call_later(self.resolution, self._sweep)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.buckets.clear()
