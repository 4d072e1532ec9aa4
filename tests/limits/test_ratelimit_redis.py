"""rate_limit with the Redis store: same decisions as local, shared, bounded when Redis hangs."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.support.ratelimit import build, make_req, ok, passed, refused, run
from tests.support.redisproc import start_redis
from tests.support.servers import free_port
from wxgated.http.message import Request, Response
from wxgated.limits import LocalStore, Rate
from wxgated.limits.distributed import RedisStore
from wxgated.observe.metrics import REGISTRY
from wxgated.registry import Registry
from wxgated.state.redis import RedisState


@pytest.fixture
async def state(redis_url: str) -> AsyncIterator[RedisState]:
    s = RedisState(redis_url, timeout=3, prefix=f"t{uuid.uuid4().hex[:12]}:")
    yield s
    await s.close()


def degraded(route: str, decision: str) -> float:
    return REGISTRY.get_sample_value(
        "wxgated_ratelimit_degraded_total", {"route": route, "decision": decision}) or 0.0


async def test_redis_and_local_stores_decide_alike(state: RedisState) -> None:
    rate = Rate(5, 1.0, 3)  # a token every 200 ms: far slower than two calls
    local, remote = LocalStore(rate), RedisStore(state, rate, "same")
    for step in range(8):
        a, b = local.decide("k"), await remote.decide("k")
        assert a[:3] == b[:3], step  # allowed, limit, remaining
        assert abs(a[3] - b[3]) < 0.1 and abs(a[4] - b[4]) < 0.1  # reset, retry
        if step == 4:
            await asyncio.sleep(0.25)  # one token back on both


async def test_two_gateways_share_one_limit(redis_url: str) -> None:
    """Two filter instances with their own Redis connections (as two processes): N in total."""
    # A generous timeout: this test is about sharing, and a loaded machine must not turn
    # slow connection set-up into degraded (allowed) decisions.
    a_state, b_state = RedisState(redis_url, timeout=3), RedisState(redis_url, timeout=3)
    route = f"shared-{uuid.uuid4().hex[:8]}"
    try:
        a = build({"rate": 10, "per": "1m"}, route=route, services={"state": a_state},
                  config={"state": {"backend": "redis"}})
        b = build({"rate": 10, "per": "1m"}, route=route, services={"state": b_state},
                  config={"state": {"backend": "redis"}})
        results = await asyncio.gather(*(run(a if i % 2 else b, make_req()) for i in range(40)))
        assert sum(passed(r) for r in results) == 10
        assert {r.status for r in results if refused(r)} == {429}
    finally:
        await a_state.close()
        await b_state.close()


async def test_bucket_key_has_a_hash_tag_and_expires(state: RedisState, redis_url: str) -> None:
    chain = build({"rate": 5, "per": "1m"}, route="tagged", services={"state": state},
                  config={"state": {"backend": "redis"}})
    await chain(make_req("1.2.3.4"))
    raw = aioredis.Redis.from_url(redis_url)
    try:
        key = f"{state.prefix}{{rl:tagged:1.2.3.4}}"
        assert await raw.exists(key)
        assert 0 < await raw.pttl(key) <= 12_000  # one token owed: full again in 12 s
        await raw.script_flush()  # as after a Redis restart: EVALSHA answers NOSCRIPT
        assert passed(await run(chain, make_req("1.2.3.4")))
    finally:
        await raw.aclose()


async def test_explicit_redis_store_opens_its_own_connection(redis_url: str) -> None:
    registry = Registry()
    chain = build({"rate": 1, "per": "1m", "store": "redis"}, registry=registry,
                  config={"state": {"backend": "memory",
                                    "redis": {"url": redis_url, "timeout": "3s"}}})
    registry.commit()
    assert passed(await run(chain, make_req("5.5.5.5")))
    assert refused(await run(chain, make_req("5.5.5.5")))
    await registry.aclose_all()


async def test_hung_redis_with_allow_lets_requests_through_within_the_timeout(
    hung_url: str,
) -> None:
    route = f"hung-{uuid.uuid4().hex[:8]}"
    state = RedisState(hung_url, timeout=0.2)
    try:
        chain = build({"rate": 1, "per": "1m"}, route=route, services={"state": state},
                      config={"state": {"backend": "redis"}})
        t0 = time.monotonic()
        results = await asyncio.gather(*(run(chain, make_req()) for _ in range(5)))
        assert time.monotonic() - t0 < 2.0  # one 0.2 s timeout (and slack), not a stall
        assert all(passed(r) and r.status == 200 for r in results)
        assert b"ratelimit-remaining" not in dict(results[0].headers)  # no made-up numbers
        # Within the probe window the next requests do not wait for Redis at all.
        assert passed(await run(chain, make_req()))
        assert degraded(route, "allow") == 6
    finally:
        await state.close()


async def test_hung_redis_with_deny_answers_503(hung_url: str) -> None:
    route = f"deny-{uuid.uuid4().hex[:8]}"
    state = RedisState(hung_url, timeout=0.2)
    try:
        chain = build({"rate": 100, "per": "1m", "on_backend_error": "deny"}, route=route,
                      services={"state": state}, config={"state": {"backend": "redis"}})
        err = await run(chain, make_req())
        assert refused(err) and err.status == 503
        assert dict(err.headers)[b"retry-after"] == b"1"
        assert degraded(route, "deny") == 1
    finally:
        await state.close()


async def test_stopped_redis_then_recovered(tmp_path: Any) -> None:

    port = free_port()
    proc = start_redis(port, tmp_path)
    state = RedisState(f"redis://127.0.0.1:{port}/0", timeout=1.0)
    calls = 0

    async def counting(req: Request) -> Response:
        nonlocal calls
        calls += 1
        return await ok(req)

    try:
        chain = build({"rate": 2, "per": "1m"}, services={"state": state},
                      config={"state": {"backend": "redis"}}, terminal=counting)
        await chain(make_req())
        proc.terminate()
        proc.wait(5)
        for _ in range(5):  # Redis gone: requests keep flowing (allow)
            assert passed(await run(chain, make_req()))
        proc = start_redis(port, tmp_path)
        await asyncio.sleep(1.1)  # past the probe window: Redis is asked again
        results = [await run(chain, make_req()) for _ in range(3)]
        # The restarted Redis is empty: a fresh bucket of 2, then 429 again.
        assert [getattr(r, "status", None) for r in results] == [200, 200, 429]
        assert calls == 8
    finally:
        await state.close()
        proc.terminate()
        proc.wait(5)


async def test_limit_works_on_redis_cluster(cluster_url: str) -> None:
    state = RedisState(cluster_url, cluster=True, timeout=3.0)
    try:
        chain = build({"rate": 3, "per": "1m", "key": "claim.openid"}, services={"state": state},
                      config={"state": {"backend": "redis"}})
        for user in ("a", "b"):
            results = [await run(chain, make_req(claims={"openid": user})) for _ in range(4)]
            assert [getattr(r, "status", None) for r in results] == [200, 200, 200, 429]
    finally:
        await state.close()
