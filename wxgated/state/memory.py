"""The embedded state backend: one process, nothing to install.

Entries expire lazily (a read of an expired key deletes it) and by an amortised sweep:
at most once per `sweep_every` seconds a write walks the table and drops what has
expired, so keys that are written once and never read again cannot pile up. No
background task is used, which keeps the backend usable from any event loop (tests
run one loop per test) and leaves nothing to cancel on shutdown.

Locks live in their own table so a lock can never be read or overwritten as data;
a lock is a (token, deadline) pair and is free again once its TTL has passed, even
if the holder died without releasing it.
"""

from __future__ import annotations

import secrets
import time

from wxgated.state.base import Ready

_NO_EXPIRY = float("inf")
_NONE: Ready[bytes | None] = Ready(None)


class MemoryState:
    name = "memory"

    def __init__(self, sweep_every: float = 30.0) -> None:
        self._data: dict[str, tuple[bytes, float]] = {}  # key -> (value, deadline)
        self._locks: dict[str, tuple[str, float]] = {}  # key -> (token, deadline)
        self._sweep_every = sweep_every
        self._next_sweep = time.monotonic() + sweep_every

    def get(self, key: str) -> Ready[bytes | None]:
        """Answered at once: a per-request read (a session check) needs no coroutine."""
        hit = self._data.get(key)
        if hit is None:
            return _NONE
        if hit[1] <= time.monotonic():
            del self._data[key]
            return _NONE
        return Ready(hit[0])

    async def set(
        self, key: str, value: bytes, ttl: float | None = None, *, nx: bool = False
    ) -> bool:
        now = time.monotonic()
        if now >= self._next_sweep:
            self._sweep(now)
        if nx:
            hit = self._data.get(key)
            if hit is not None and hit[1] > now:
                return False
        if ttl is not None and ttl <= 0:
            # Redis rejects a non-positive expiry; here it simply means "already gone".
            self._data.pop(key, None)
            return True
        self._data[key] = (bytes(value), _NO_EXPIRY if ttl is None else now + ttl)
        return True

    async def delete(self, key: str) -> bool:
        hit = self._data.pop(key, None)
        return hit is not None and hit[1] > time.monotonic()

    async def ttl(self, key: str) -> float | None:
        hit = self._data.get(key)
        if hit is None:
            return None
        left = hit[1] - time.monotonic()
        if left <= 0:
            del self._data[key]
            return None
        return None if hit[1] == _NO_EXPIRY else left

    async def acquire_lock(self, key: str, ttl: float) -> str | None:
        now = time.monotonic()
        held = self._locks.get(key)
        if held is not None and held[1] > now:
            return None
        token = secrets.token_hex(16)
        self._locks[key] = (token, now + ttl)
        return token

    async def release_lock(self, key: str, token: str) -> None:
        # Only the holder's token releases: a holder whose lease expired (and was taken
        # over) must not free the new holder's lock.
        held = self._locks.get(key)
        if held is not None and held[0] == token:
            del self._locks[key]

    async def close(self) -> None:
        self._data.clear()
        self._locks.clear()

    def __len__(self) -> int:
        return len(self._data)

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + self._sweep_every
        for table in (self._data, self._locks):
            dead = [k for k, (_, deadline) in table.items() if deadline <= now]
            for k in dead:
                del table[k]
