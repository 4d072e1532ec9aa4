"""The shared-state interface: what must be shared between gateway instances.

Sessions, access tokens, cached responses, locks. Two backends implement it:
`memory` (one process, the embedded default) and `redis` (Redis or Redis Cluster).
Keys are plain strings; the redis backend adds a `{...}` hash tag itself where a
multi-key operation needs one slot. Every call is bounded by the backend's timeout
and raises `StateError` rather than hanging.
"""

from __future__ import annotations

from typing import Protocol


class StateError(Exception):
    """The backend is unreachable, slow past its timeout, or answered an error."""


class StateBackend(Protocol):
    name: str  # "memory" | "redis"

    async def get(self, key: str) -> bytes | None: ...

    async def set(
        self, key: str, value: bytes, ttl: float | None = None, *, nx: bool = False
    ) -> bool:
        """Store `value`; with nx=True only when absent. True when stored."""
        ...

    async def delete(self, key: str) -> bool: ...

    async def ttl(self, key: str) -> float | None:
        """Seconds left, None when the key is absent or has no expiry."""
        ...

    async def acquire_lock(self, key: str, ttl: float) -> str | None:
        """A lease token when the lock was taken, None when someone else holds it."""
        ...

    async def release_lock(self, key: str, token: str) -> None: ...

    async def close(self) -> None: ...
