"""The StateBackend contract, run against both backends (memory and a real Redis)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from wxgated.state import MemoryState, StateBackend, open_backend


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[StateBackend]:
    if request.param == "memory":
        b = open_backend({"backend": "memory"})
    else:
        url = request.getfixturevalue("redis_url")
        # A unique prefix per test keeps tests independent on the shared redis-server.
        b = open_backend({"backend": "redis", "redis": {"url": url, "timeout": "500ms",
                                                       "prefix": f"t{uuid.uuid4().hex}:"}})
    assert b.name == request.param
    yield b
    await b.close()


async def test_set_get_delete_roundtrip(backend: StateBackend) -> None:
    assert await backend.get("k") is None
    assert await backend.set("k", b"\x00value\xff") is True
    assert await backend.get("k") == b"\x00value\xff"
    assert await backend.ttl("k") is None  # stored without expiry
    assert await backend.delete("k") is True
    assert await backend.get("k") is None
    assert await backend.delete("k") is False


async def test_nx_only_stores_when_absent(backend: StateBackend) -> None:
    assert await backend.set("k", b"first", nx=True) is True
    assert await backend.set("k", b"second", nx=True) is False
    assert await backend.get("k") == b"first"
    assert await backend.set("k", b"third") is True
    assert await backend.get("k") == b"third"


async def test_ttl_expires_after_a_real_wait(backend: StateBackend) -> None:
    await backend.set("short", b"v", ttl=0.15)
    await backend.set("long", b"v", ttl=30)
    left = await backend.ttl("short")
    assert left is not None and 0 < left <= 0.15
    await asyncio.sleep(0.3)
    assert await backend.get("short") is None
    assert await backend.ttl("short") is None
    assert await backend.get("long") == b"v"
    # An expired key is absent for nx purposes too.
    assert await backend.set("short", b"again", ttl=1, nx=True) is True


async def test_lock_is_exclusive_until_released(backend: StateBackend) -> None:
    token = await backend.acquire_lock("refresh", ttl=5)
    assert token
    assert await backend.acquire_lock("refresh", ttl=5) is None
    await backend.release_lock("refresh", "not-the-token")  # a stranger cannot release it
    assert await backend.acquire_lock("refresh", ttl=5) is None
    await backend.release_lock("refresh", token)
    assert await backend.acquire_lock("refresh", ttl=5)


async def test_lock_does_not_collide_with_data_keys(backend: StateBackend) -> None:
    await backend.set("x", b"data")
    assert await backend.acquire_lock("x", ttl=5)
    assert await backend.get("x") == b"data"


async def test_lock_expires_when_holder_never_releases(backend: StateBackend) -> None:
    stale = await backend.acquire_lock("job", ttl=0.15)
    assert stale
    await asyncio.sleep(0.3)
    fresh = await backend.acquire_lock("job", ttl=5)
    assert fresh and fresh != stale
    # The first holder waking up late must not free the new holder's lock.
    await backend.release_lock("job", stale)
    assert await backend.acquire_lock("job", ttl=5) is None


async def test_concurrent_lock_attempts_have_one_winner(backend: StateBackend) -> None:
    tokens = await asyncio.gather(*(backend.acquire_lock("race", ttl=5) for _ in range(20)))
    assert sum(t is not None for t in tokens) == 1


async def test_memory_sweep_drops_keys_nobody_reads_again() -> None:
    state = MemoryState(sweep_every=0.05)
    for i in range(100):
        await state.set(f"once-{i}", b"v", ttl=0.05)
    assert len(state) == 100
    await asyncio.sleep(0.15)
    await state.set("trigger", b"v")  # a write after the sweep interval sweeps
    assert len(state) == 1


def test_unknown_backend_is_an_error() -> None:
    with pytest.raises(ValueError, match="memcached"):
        open_backend({"backend": "memcached"})
