"""Redis-specific behaviour: bounded calls, key prefix, script fallback, restarts, Cluster."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.support.servers import free_port, wait_port
from wxgated.state import StateError, open_backend
from wxgated.state.redis import RedisState


@pytest.fixture
async def hung_url() -> AsyncIterator[str]:
    """A TCP server that accepts connections and never answers: a hung Redis."""
    conns: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conns.append(writer)
        while await reader.read(4096):
            pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"redis://127.0.0.1:{port}/0"
    for w in conns:
        w.close()
    server.close()


def start_redis(port: int, workdir: Path, *extra: str) -> subprocess.Popen[bytes]:
    exe = shutil.which("redis-server")
    assert exe, "redis-server is not installed"
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        if proc.poll() is not None:  # e.g. the port was taken between free_port and bind
            raise RuntimeError(f"redis-server could not start on port {port}")
        try:
            wait_port(port, timeout=0.1)
            return proc
        except TimeoutError:
            if time.monotonic() > deadline:
                proc.kill()
                raise


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


def start_cluster_node(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A one-node Redis Cluster owning every slot: enough to run the Cluster client path."""
    cli = shutil.which("redis-cli")
    assert cli, "redis-cli is not installed"
    for attempt in range(3):  # free ports can be taken by parallel test runs; retry
        port = free_port()
        try:
            # The bus port defaults to port + 10000, which can lie past 65535.
            proc = start_redis(port, workdir, "--cluster-enabled", "yes",
                               "--cluster-port", str(free_port()),
                               "--cluster-config-file", str(workdir / f"nodes-{attempt}.conf"))
        except RuntimeError:
            continue
        added = subprocess.run([cli, "-p", str(port), "cluster", "addslotsrange", "0", "16383"],
                               capture_output=True)
        if added.returncode == 0 and added.stdout.strip() == b"OK":
            return proc, port
        proc.terminate()
        proc.wait(5)
    raise RuntimeError("could not start a one-node Redis Cluster")


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, port = start_cluster_node(tmp_path_factory.mktemp("cluster"))
    try:
        cli = shutil.which("redis-cli") or "redis-cli"
        deadline = time.monotonic() + 30  # Redis holds a new cluster node back ~2 s
        while b"cluster_state:ok" not in subprocess.run(
            [cli, "-p", str(port), "cluster", "info"], capture_output=True
        ).stdout:
            assert time.monotonic() < deadline, "cluster did not become ready"
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
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
