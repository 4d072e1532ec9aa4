"""Retries: which failures and methods, replayed bodies, the budget, per-try timeout and
the deadline."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import aiohttp

from tests.support.e2e_backend import Backend, get_many, send
from tests.support.gateway import GatewayProcess, metric_value

# --- retries ---------------------------------------------------------------------------


async def test_get_retried_on_listed_502_goes_to_the_other_target(
        gw: GatewayProcess, apps: dict[str, Backend]) -> None:
    r1, r2 = apps["R1"], apps["R2"]
    r1.status = 502
    try:
        results = await get_many(gw.url + "/retry/g", 10)
    finally:
        r1.status = 200
    assert {(s, doc["name"]) for s, _, doc in results} == {(200, "R2")}
    assert r1.hits["/g"] == 5 and r2.hits["/g"] == 10  # each of R1's answers retried once
    metrics = gw.metrics()
    assert metric_value(metrics, "wxgated_upstream_requests_total", upstream="retry",
                        target=r1.url, status="502") == 5


async def test_get_retried_on_connect_error(gw: GatewayProcess,
                                            apps: dict[str, Backend]) -> None:
    results = await get_many(gw.url + "/retry-dead/ce", 6)
    assert {(s, doc["name"]) for s, _, doc in results} == {(200, "R2")}
    assert apps["R2"].hits["/ce"] == 6


async def test_post_is_not_retried_unless_methods_says_so(gw: GatewayProcess,
                                                          apps: dict[str, Backend]) -> None:
    r1, r2 = apps["R1"], apps["R2"]
    r1.status = 502
    try:
        plain = await get_many(gw.url + "/retry/post", 6, "POST", data=b'{"a": 1}')
        listed = await get_many(gw.url + "/retry-post/post2", 6, "POST")
    finally:
        r1.status = 200
    assert Counter(s for s, _, _ in plain) == {502: 3, 200: 3}
    assert r1.hits["/post"] == 3 and r2.hits["/post"] == 3  # one try each, never two
    # `methods: [GET, POST]`: a POST (with nothing to replay) is retried like a GET
    assert {(s, doc["name"]) for s, _, doc in listed} == {(200, "R2")}
    assert r1.hits["/post2"] == 3 and r2.hits["/post2"] == 6


async def test_a_small_post_that_arrived_whole_is_replayed_on_retry(
        gw: GatewayProcess, apps: dict[str, Backend]) -> None:
    # a Content-Length body already in when the request is sent goes with its head, is
    # kept, and so can be sent again to the other target (`methods` lists POST)
    r1, r2 = apps["R1"], apps["R2"]
    r1.status = 502
    try:
        results = await get_many(gw.url + "/retry-post/post3", 6, "POST", data=b'{"a": 12}')
    finally:
        r1.status = 200
    assert {(s, doc["name"], doc["received"]) for s, _, doc in results} == {(200, "R2", 9)}
    assert r1.hits["/post3"] == 3 and r2.hits["/post3"] == 6


async def test_body_not_yet_sent_is_retried_on_connect_error(
        gw: GatewayProcess, apps: dict[str, Backend]) -> None:
    # PUT is idempotent, so retried by default; the dead target never saw the body
    results = await get_many(gw.url + "/retry-dead/put", 6, "PUT", data=b'{"a": 1}')
    assert [s for s, _, _ in results] == [200] * 6
    assert {doc["name"] for _, _, doc in results} == {"R2"}
    assert apps["R2"].hits["/put"] == 6


async def test_retry_budget_caps_retries_when_every_target_fails(
        gw: GatewayProcess, apps: dict[str, Backend]) -> None:
    f1, f2 = apps["F1"], apps["F2"]
    f1.status = f2.status = 502
    try:
        async with aiohttp.ClientSession() as s:
            results = await asyncio.gather(*(send(s, gw.url + "/budget/b") for _ in range(100)))
    finally:
        f1.status = f2.status = 200
    assert all(s == 502 for s, _, _ in results)
    calls = f1.hits["/b"] + f2.hits["/b"]
    # attempts: 3 would make 300 calls; the budget allows 20% of 100 + a floor of 3/s × 10s
    assert 100 < calls <= 100 + 20 + 30


async def test_per_try_timeout_moves_on_to_the_other_target(
        gw: GatewayProcess, apps: dict[str, Backend]) -> None:
    s1, s2 = apps["S1"], apps["S2"]
    s1.delay = 1.0
    try:
        async with aiohttp.ClientSession() as s:
            for _ in range(4):
                t0 = time.monotonic()
                status, _, doc = await send(s, gw.url + "/pertry/t")
                assert (status, doc["name"]) == (200, "S2")
                assert time.monotonic() - t0 < 0.9  # never waited out the slow target
    finally:
        s1.delay = 0.0
    assert s1.hits["/t"] == 2 and s2.hits["/t"] == 4


async def test_deadline_ends_all_tries_with_504(gw: GatewayProcess,
                                               apps: dict[str, Backend]) -> None:
    apps["S1"].delay = apps["S3"].delay = 1.0
    try:
        t0 = time.monotonic()
        status, _, doc = (await get_many(gw.url + "/deadline/d", 1))[0]
        elapsed = time.monotonic() - t0
    finally:
        apps["S1"].delay = apps["S3"].delay = 0.0
    assert status == 504 and doc["code"] == 504
    assert elapsed < 0.95  # 600ms deadline, not 3 × 400ms per try
    # a 400ms try, then a second one cut to what the deadline left; no third
    assert apps["S1"].hits["/d"] + apps["S3"].hits["/d"] == 2
