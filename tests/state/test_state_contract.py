"""The StateBackend contract, run against both backends (memory and a real Redis)."""

from __future__ import annotations

import asyncio

import pytest

from wxgated.state import MemoryState, StateBackend, open_backend


async def test_set_get_delete_roundtrip(state_backend: StateBackend) -> None:
    assert await state_backend.get("k") is None
    assert await state_backend.set("k", b"\x00value\xff") is True
    assert await state_backend.get("k") == b"\x00value\xff"
    assert await state_backend.ttl("k") is None  # stored without expiry
    assert await state_backend.delete("k") is True
    assert await state_backend.get("k") is None
    assert await state_backend.delete("k") is False


async def test_nx_only_stores_when_absent(state_backend: StateBackend) -> None:
    assert await state_backend.set("k", b"first", nx=True) is True
    assert await state_backend.set("k", b"second", nx=True) is False
    assert await state_backend.get("k") == b"first"
    assert await state_backend.set("k", b"third") is True
    assert await state_backend.get("k") == b"third"


async def test_ttl_expires_after_a_real_wait(state_backend: StateBackend) -> None:
    await state_backend.set("short", b"v", ttl=0.15)
    await state_backend.set("long", b"v", ttl=30)
    left = await state_backend.ttl("short")
    assert left is not None and 0 < left <= 0.15
    await asyncio.sleep(0.3)
    assert await state_backend.get("short") is None
    assert await state_backend.ttl("short") is None
    assert await state_backend.get("long") == b"v"
    # An expired key is absent for nx purposes too.
    assert await state_backend.set("short", b"again", ttl=1, nx=True) is True


async def test_lock_is_exclusive_until_released(state_backend: StateBackend) -> None:
    token = await state_backend.acquire_lock("refresh", ttl=5)
    assert token
    assert await state_backend.acquire_lock("refresh", ttl=5) is None
    await state_backend.release_lock("refresh", "not-the-token")  # a stranger cannot release it
    assert await state_backend.acquire_lock("refresh", ttl=5) is None
    await state_backend.release_lock("refresh", token)
    assert await state_backend.acquire_lock("refresh", ttl=5)


async def test_lock_does_not_collide_with_data_keys(state_backend: StateBackend) -> None:
    await state_backend.set("x", b"data")
    assert await state_backend.acquire_lock("x", ttl=5)
    assert await state_backend.get("x") == b"data"


async def test_lock_expires_when_holder_never_releases(state_backend: StateBackend) -> None:
    stale = await state_backend.acquire_lock("job", ttl=0.15)
    assert stale
    await asyncio.sleep(0.3)
    fresh = await state_backend.acquire_lock("job", ttl=5)
    assert fresh and fresh != stale
    # The first holder waking up late must not free the new holder's lock.
    await state_backend.release_lock("job", stale)
    assert await state_backend.acquire_lock("job", ttl=5) is None


async def test_concurrent_lock_attempts_have_one_winner(state_backend: StateBackend) -> None:
    tokens = await asyncio.gather(*(state_backend.acquire_lock("race", ttl=5) for _ in range(20)))
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
