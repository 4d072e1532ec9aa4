"""Redis-specific behaviour: bounded calls, key prefix, script fallback, restarts, Cluster."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.support.redisproc import start_redis
from tests.support.servers import free_port
from wxgated.state import StateError, open_backend
from wxgated.state.redis import RedisState


async def test_hung_redis_fails_every_call_within_the_timeout(hung_url: str) -> None:
    state = RedisState(hung_url, timeout=0.2)
    try:
        calls = [
            state.get("a"), state.set("a", b"v", ttl=5), state.delete("a"), state.ttl("a"),
            state.acquire_lock("l", 5), state.release_lock("l", "t"), state.ping(),
        ]
        t0 = time.monotonic()
        results = await asyncio.gather(*calls, return_exceptions=True)
        elapsed = time.monotonic() - t0
        assert all(isinstance(r, StateError) for r in results), results
        assert "0.2s" in str(results[0])
        assert elapsed < 2.0  # bounded by the 0.2 s timeout (plus slack), not by TCP or the OS
    finally:
        await state.close()


async def test_refused_connection_is_a_state_error() -> None:
    state = open_backend({"backend": "redis",
                          "redis": {"url": f"redis://127.0.0.1:{free_port()}/0",
                                    "timeout": "200ms"}})
    try:
        with pytest.raises(StateError):
            await state.get("x")
    finally:
        await state.close()


async def test_keys_carry_the_prefix_and_the_callers_hash_tag(redis_url: str) -> None:
    prefix = f"p{uuid.uuid4().hex}:"
    state = RedisState(redis_url, prefix=prefix)
    raw = aioredis.Redis.from_url(redis_url)
    try:
        await state.set("{sess:abc}:data", b"v", ttl=10)
        assert await raw.get(prefix + "{sess:abc}:data") == b"v"
        assert 9000 < await raw.pttl(prefix + "{sess:abc}:data") <= 10000
        with pytest.raises(ValueError):
            RedisState(redis_url, prefix="{bad}:")
    finally:
        await raw.aclose()
        await state.close()


async def test_lock_release_survives_script_flush(redis_url: str) -> None:
    state = RedisState(redis_url, prefix=f"p{uuid.uuid4().hex}:")
    raw = aioredis.Redis.from_url(redis_url)
    try:
        token = await state.acquire_lock("l", 5)
        assert token
        await raw.script_flush()  # as after a Redis restart: EVALSHA gets NOSCRIPT
        await state.release_lock("l", token)
        assert await state.acquire_lock("l", 5)
    finally:
        await raw.aclose()
        await state.close()


async def test_calls_recover_after_redis_restarts(tmp_path: Path) -> None:
    port = free_port()
    proc = start_redis(port, tmp_path)
    state = RedisState(f"redis://127.0.0.1:{port}/0", timeout=0.3)
    try:
        await state.set("k", b"before")
        proc.terminate()
        proc.wait(5)
        with pytest.raises(StateError):
            await state.get("k")
        proc = start_redis(port, tmp_path)
        # Pooled connections died with the old server; the next call must still work.
        await state.set("k", b"after")
        assert await state.get("k") == b"after"
    finally:
        await state.close()
        proc.terminate()
        proc.wait(5)


async def test_cluster_mode_runs_the_same_contract(cluster_url: str) -> None:
    state = open_backend({"backend": "redis",
                          "redis": {"url": cluster_url, "cluster": True, "timeout": "1s"}})
    try:
        assert await state.set("{s:1}:a", b"v", ttl=10)
        assert await state.get("{s:1}:a") == b"v"
        assert 9 < (await state.ttl("{s:1}:a") or 0) <= 10
        token = await state.acquire_lock("job", 5)
        assert token and await state.acquire_lock("job", 5) is None
        await state.release_lock("job", token)
        assert await state.acquire_lock("job", 5)
    finally:
        await state.close()


async def test_a_timed_out_call_does_not_hand_its_reply_to_the_next(redis_url: str) -> None:
    # One connection: if a cancelled command left its reply unread, the next caller
    # would read the wrong answer.
    state = RedisState(redis_url, timeout=0.2, prefix=f"p{uuid.uuid4().hex}:",
                       max_connections=1)
    try:
        await state.set("k", b"value")
        for _ in range(3):
            with pytest.raises(StateError):
                await state.run(state.client.blpop([state.key("empty")], 1))
            assert await state.get("k") == b"value"
    finally:
        await state.close()
