"""In-flight counters for concurrency limits (per process).

A key's entry exists only while it has requests in flight, so a stream of distinct
clients leaves nothing behind. Counting is plain integer arithmetic on one event loop:
no lock is needed because nothing awaits between the check and the increment.
"""

from __future__ import annotations


class InFlight:
    __slots__ = ("limit", "_counts")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counts: dict[str, int] = {}

    def try_acquire(self, key: str) -> bool:
        n = self._counts.get(key, 0)
        if n >= self.limit:
            return False
        self._counts[key] = n + 1
        return True

    def release(self, key: str) -> None:
        n = self._counts.get(key, 0) - 1
        if n > 0:
            self._counts[key] = n
        else:
            self._counts.pop(key, None)

    def in_flight(self, key: str) -> int:
        return self._counts.get(key, 0)

    def __len__(self) -> int:
        return len(self._counts)
