"""Coarse timeouts for many connections: buckets swept on one timer, no timer per request.

Arming and cancelling a loop timer for every request (header timeout, idle timeout,
upstream read timeout) cost several loop-timer operations per proxied request. Here a
connection's deadline puts it in a bucket of `resolution` seconds; one loop timer, set
for the earliest bucket, pops the buckets whose time has come and calls `on_deadline()`
on their members. Re-arming moves a connection between buckets only when its bucket
changes, and a sweep touches only expired buckets (a heap of bucket indices says which),
so idle connections cost nothing between their deadlines: a worker holding 20k
connections with a 2 h idle timeout sleeps until the first of them is due. Timeouts
fire up to one `resolution` late.

A connection's deadline may only move later while it sits in a bucket, or be disarmed:
re-arming earlier than its bucket (the sweep would find it too late) moves it too.
"""

from __future__ import annotations

import asyncio
from heapq import heappop, heappush


class Timed:
    """What Deadlines keeps: a connection with a deadline, the bucket it sits in, and
    what to do when the deadline passes (a base class so the compiled build reaches
    both fields directly)."""

    __slots__ = ("deadline", "bucket")

    def __init__(self) -> None:
        self.deadline = 0.0  # loop time; 0: none
        self.bucket = 0  # the Deadlines bucket it sits in; Deadlines' to keep

    def on_deadline(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError


class Deadlines:
    __slots__ = ("resolution", "buckets", "_due", "_handle", "_when", "_loop")

    def __init__(self, resolution: float) -> None:
        self.resolution = resolution
        self.buckets: dict[int, set[Timed]] = {}  # bucket index -> members
        self._due: list[int] = []  # the buckets' indices, a heap
        self._handle: asyncio.TimerHandle | None = None
        self._when = 0  # the bucket index the timer is set for
        self._loop = asyncio.get_running_loop()

    def arm(self, obj: Timed, deadline: float) -> None:
        """Set `obj.deadline` (loop time; 0 disarms). `obj.bucket` is ours to keep.

        Lazily: disarming only clears the deadline, and a move to another bucket
        leaves the old entry behind; the sweep skips entries whose object has moved on
        or been disarmed. A proxied request disarms and re-arms both of its connections,
        so this saves two set operations each time. A bucket, once made, stays until
        its sweep (even when emptied), so each index enters the heap once."""
        obj.deadline = deadline
        if not deadline:
            return
        idx = int(deadline / self.resolution) + 1
        if idx == obj.bucket:
            return
        obj.bucket = idx
        members = self.buckets.get(idx)
        if members is None:
            members = self.buckets[idx] = set()
            heappush(self._due, idx)
            if self._handle is None or idx < self._when:
                self._set_timer(idx)
        members.add(obj)

    def forget(self, obj: Timed) -> None:
        """Disarm and let go of `obj` now (a closed connection), not at its bucket's sweep."""
        obj.deadline = 0.0
        members = self.buckets.get(obj.bucket)
        if members is not None:
            members.discard(obj)
        obj.bucket = 0

    def next_sweep(self) -> float | None:
        """Loop time of the next sweep, None when nothing is armed."""
        return None if self._handle is None else self._when * self.resolution

    def _set_timer(self, idx: int) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._when = idx
        self._handle = self._loop.call_at(idx * self.resolution, self._sweep)

    def _sweep(self) -> None:
        self._handle = None
        # the timer fires at idx * resolution: the epsilon keeps float rounding from
        # reading that as the bucket before
        now = int(self._loop.time() / self.resolution + 1e-6)
        due = self._due
        ready = []  # taken first: what on_deadline arms goes to a later sweep
        while due and due[0] <= now:
            ready.append(heappop(due))
        for idx in ready:
            for obj in self.buckets.pop(idx):
                if obj.bucket != idx:  # moved to a later bucket since
                    continue
                obj.bucket = 0
                if not obj.deadline:  # disarmed since
                    continue
                obj.deadline = 0.0
                try:
                    obj.on_deadline()
                except Exception:  # noqa: BLE001 - one broken connection must not stop the sweep
                    pass
        if due:
            self._set_timer(due[0])

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.buckets.clear()
        self._due.clear()
