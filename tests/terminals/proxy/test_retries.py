"""Retries and timeouts for requests whose first try went on an idle connection."""

from __future__ import annotations

import time

import aiohttp

from tests.support.e2e_backend import Backend, get_many, send
from tests.support.gateway import GatewayProcess, metric_value
from tests.support.proxy_harness import warm

# --- 3. retries whose first try went on an idle connection -----------------------------


async def test_listed_503_from_a_fast_try_is_retried_on_the_other_target(
        gw: GatewayProcess, backends: dict[str, Backend]) -> None:
    r1, r2 = backends["R1"], backends["R2"]
    await warm(gw, "/r503/warm", 2)  # an idle connection to each target
    r1.status = 503
    try:
        results = await get_many(gw.url + "/r503/g", 6)
    finally:
        r1.status = 200
    assert {(s, doc["name"]) for s, _, doc in results} == {(200, "R2")}
    assert r1.hits["/g"] >= 2 and r2.hits["/g"] == 6  # R1's 503s were retried, once each
    assert metric_value(gw.metrics(), "wxgated_upstream_requests_total", upstream="r503",
                        target=r1.url, status="503") == r1.hits["/g"]


async def test_connect_error_on_a_dead_target_is_retried(
        gw: GatewayProcess, backends: dict[str, Backend]) -> None:
    await warm(gw, "/rdead/warm", 2)
    results = await get_many(gw.url + "/rdead/ce", 6)
    assert {(s, doc["name"]) for s, _, doc in results} == {(200, "R3")}
    assert backends["R3"].hits["/ce"] == 6


async def test_retry_deadline_covers_the_fast_first_try(
        gw: GatewayProcess, backends: dict[str, Backend]) -> None:
    """per_try_timeout 400ms, deadline 600ms, attempts 3: a 400ms try, a second one cut
    to what the deadline left, no third; 504 by ~600ms. The deadline is shared by all
    tries, including a first one made on an idle connection."""
    s1, s2 = backends["S1"], backends["S2"]
    await warm(gw, "/deadline/warm", 2)
    s1.delay = s2.delay = 1.0
    try:
        t0 = time.monotonic()
        status, _, doc = (await get_many(gw.url + "/deadline/d", 1))[0]
        elapsed = time.monotonic() - t0
    finally:
        s1.delay = s2.delay = 0.0
    tries = s1.hits["/d"] + s2.hits["/d"]
    assert (status, doc["code"]) == (504, 504)
    assert (tries, elapsed < 0.9) == (2, True), f"{tries} tries, 504 after {elapsed:.2f}s"


# --- 6. upstream read timeout on an idle connection -------------------------------------


async def test_route_timeout_gives_a_504_envelope_and_the_late_answer_is_dropped(
        gw: GatewayProcess) -> None:
    await warm(gw, "/short/warm")
    async with aiohttp.ClientSession() as s:
        t0 = time.monotonic()
        status, headers, doc = await send(s, gw.url + "/short/slow?s=2")
        elapsed = time.monotonic() - t0
        assert status == 504 and doc["code"] == 504 and doc["data"] is None
        assert doc["trace_id"] == headers["X-Trace-ID"]
        assert elapsed < 1.0
        # the timed-out connection is gone: the next answer is this request's own
        for i in range(3):
            status, _, doc = await send(s, f"{gw.url}/short/next{i}")
            assert (status, doc["path"]) == (200, f"/next{i}")
