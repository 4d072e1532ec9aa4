"""The shared-state interface: what must be shared between gateway instances.

Sessions, access tokens, cached responses, locks. Two backends implement it:
`memory` (one process, the embedded default) and `redis` (Redis or Redis Cluster).
Keys are plain strings; the redis backend adds a `{...}` hash tag itself where a
multi-key operation needs one slot. Every call is bounded by the backend's timeout
and raises `StateError` rather than hanging.
"""

from __future__ import annotations

from collections.abc import Awaitable, Generator
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")


class StateError(Exception):
    """The backend is unreachable, slow past its timeout, or answered an error."""


class Ready(Generic[T]):
    """An answer that is already here (a memory read): awaitable like any other, so
    every caller may simply await it, and readable at once by a caller on the request
    path that checks for it, which then needs no coroutine at all."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, T]:
        return self.value
        yield  # a generator: awaiting it finishes at once


class StateBackend(Protocol):
    name: str  # "memory" | "redis"

    def get(self, key: str) -> Awaitable[bytes | None]:
        """The value, `Ready` when the backend answers at once (memory)."""
        ...

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
