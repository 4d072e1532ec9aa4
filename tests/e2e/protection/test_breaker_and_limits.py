"""The circuit breaker's states, the Redis rate limit and the concurrency limit."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.support.e2e_backend import Backend, get_many, send, wait_for
from tests.support.gateway import GatewayProcess, metric_value
from tests.support.protection import circuit

# --- circuit breaker -------------------------------------------------------------------


async def test_breaker_opens_half_opens_and_closes(gw: GatewayProcess,
                                                   apps: dict[str, Backend]) -> None:
    cb = apps["CB"]
    assert circuit(gw, apps) == ("closed", 0)
    cb.status = 500
    results = await get_many(gw.url + "/cb/x", 4)
    assert [s for s, _, _ in results] == [500] * 4 and cb.total == 4
    assert circuit(gw, apps) == ("open", 2)
    # open: a fast 503 envelope with Retry-After, and no upstream call at all
    refused = await get_many(gw.url + "/cb/x", 5)
    for status, headers, doc in refused:
        assert status == 503 and headers["Retry-After"] == "1"
        assert doc["code"] == 503 and doc["trace_id"]
    assert cb.total == 4
    # after open_for a probe goes through; a failed probe opens it again
    await asyncio.sleep(0.35)
    status, _, _ = (await get_many(gw.url + "/cb/x", 1))[0]
    assert status == 500 and cb.total == 5
    assert circuit(gw, apps)[0] == "open"
    # this time open for twice as long (600ms)
    await asyncio.sleep(0.35)
    assert (await get_many(gw.url + "/cb/x", 1))[0][0] == 503 and cb.total == 5
    await asyncio.sleep(0.35)
    cb.status, cb.delay = 200, 0.5
    async with aiohttp.ClientSession() as s:
        probe = asyncio.create_task(send(s, gw.url + "/cb/probe"))
        await wait_for(lambda: cb.inflight == 1, what="the probe")
        # half_open_requests: 1, so a second request is not let through meanwhile
        status, _, _ = await send(s, gw.url + "/cb/x")
        assert status == 503
        assert circuit(gw, apps) == ("half_open", 1)
        assert (await probe)[0] == 200
    cb.delay = 0.0
    assert circuit(gw, apps) == ("closed", 0)
    results = await get_many(gw.url + "/cb/x", 3)
    assert [s for s, _, _ in results] == [200] * 3 and cb.total == 9
    # a 4xx is the client's fault: it never opens the breaker
    cb.status = 404
    try:
        results = await get_many(gw.url + "/cb/x", 6)
    finally:
        cb.status = 200
    assert [s for s, _, _ in results] == [404] * 6 and cb.total == 15
    assert circuit(gw, apps) == ("closed", 0)


# --- limits ----------------------------------------------------------------------------


async def test_redis_rate_limit_429_headers_and_keys(gw: GatewayProcess) -> None:
    async with aiohttp.ClientSession() as s:
        a = [await send(s, gw.url + "/limited", headers={"X-App-Key": "app-a"})
             for _ in range(4)]
        b = await send(s, gw.url + "/limited", headers={"X-App-Key": "app-b"})
        missing = await send(s, gw.url + "/limited")
    assert [r[0] for r in a] == [200, 200, 200, 429]
    assert [r[1]["RateLimit-Remaining"] for r in a[:3]] == ["2", "1", "0"]
    status, headers, doc = a[3]
    assert headers["Retry-After"] == "20"  # 3 per minute: one token every 20 s
    assert headers["RateLimit-Limit"] == "3" and headers["RateLimit-Remaining"] == "0"
    assert 40 <= int(headers["RateLimit-Reset"]) <= 60
    assert doc["code"] == 429 and doc["trace_id"] == headers["X-Trace-ID"]
    assert b[0] == 200 and b[1]["RateLimit-Remaining"] == "2"  # its own bucket
    assert missing[0] == 400  # on_missing_key: reject, never one shared empty-key bucket
    assert metric_value(gw.metrics(), "wxgated_ratelimit_rejected_total",
                        route="e2e-limited") >= 1


async def test_concurrency_limit_sheds_with_503(gw: GatewayProcess,
                                                apps: dict[str, Backend]) -> None:
    cl = apps["CL"]
    async with aiohttp.ClientSession() as s:
        held = [asyncio.create_task(send(s, gw.url + "/cl/hold")) for _ in range(2)]
        await wait_for(lambda: cl.inflight == 2, what="two held requests")
        shed = [await send(s, gw.url + "/cl/extra") for _ in range(3)]
        for status, headers, doc in shed:
            assert status == 503 and doc["code"] == 503 and headers["Retry-After"] == "1"
        assert cl.hits["/extra"] == 0
        cl.holding = False
        assert [(await t)[0] for t in held] == [200, 200]
        assert (await send(s, gw.url + "/cl/extra"))[0] == 200  # the slots are free again
