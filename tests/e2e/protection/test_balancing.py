"""Balancing seen from outside: weights split traffic, least_conn picks the idle target."""

from __future__ import annotations

import asyncio
from collections import Counter

import aiohttp

from tests.support.e2e_backend import Backend, get_many, send, wait_for
from tests.support.gateway import GatewayProcess

# --- balancing -------------------------------------------------------------------------


async def test_weights_3_to_1_split_traffic_3_to_1(gw: GatewayProcess,
                                                   apps: dict[str, Backend]) -> None:
    results = await get_many(gw.url + "/wrr/w", 40)
    assert all(s == 200 for s, _, _ in results)
    served = Counter(doc["name"] for _, _, doc in results)
    assert served == {"A": 30, "B": 10}  # smooth WRR is exact over whole cycles
    assert (apps["A"].hits["/w"], apps["B"].hits["/w"]) == (30, 10)


async def test_least_conn_sends_new_requests_to_the_idle_target(
        gw: GatewayProcess, apps: dict[str, Backend]) -> None:
    c, d = apps["C"], apps["D"]
    async with aiohttp.ClientSession() as s:
        stuck = asyncio.create_task(send(s, gw.url + "/lc/hold"))
        await wait_for(lambda: c.inflight + d.inflight == 1, what="the held request")
        busy, idle = (c, d) if c.inflight else (d, c)
        quick = [await send(s, gw.url + "/lc/q") for _ in range(8)]
        assert {doc["name"] for _, _, doc in quick} == {idle.name}
        assert busy.hits["/q"] == 0
        busy.holding = idle.holding = False
        status, _, doc = await stuck
        assert status == 200 and doc["name"] == busy.name
        # with both idle again, new requests spread over both
        spread = [await send(s, gw.url + "/lc/q2") for _ in range(4)]
        assert {doc["name"] for _, _, doc in spread} == {"C", "D"}
