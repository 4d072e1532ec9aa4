"""The proxy terminal and upstream connections: stale kept-alive connections are retried on fresh
ones, and requests pipelined behind a fast one are answered in order."""

from __future__ import annotations

import asyncio
import hashlib
import json

import aiohttp
import pytest

from tests.support.e2e_backend import send
from tests.support.gateway import GatewayProcess
from tests.support.proxy_harness import BIG_SHA, OneShotUpstream, get, warm
from tests.support.rawhttp import raw_exchange

# --- 1. stale keep-alive connections -----------------------------------------------------


@pytest.mark.parametrize("close", ["fin", "rst"])
async def test_stale_keepalive_connection_is_retried_on_a_fresh_one(
        gw: GatewayProcess, stale: dict[str, OneShotUpstream], close: str) -> None:
    up = stale[close]
    async with aiohttp.ClientSession() as s:
        results = [await send(s, f"{gw.url}/stale-{close}/n{i}") for i in range(6)]
    assert [r[0] for r in results] == [200] * 6, results
    assert [r[2]["path"] for r in results] == [f"/n{i}" for i in range(6)]
    # every request after the first found the pooled connection dead (the upstream
    # closed it on the request, without answering) and went again on a new one
    assert up.dropped == 5 and up.answered == 6
    assert len({r[2]["conn"] for r in results}) == 6


async def test_upstream_closing_idle_connections_never_gives_a_502(
        gw: GatewayProcess) -> None:
    # keepalive_timeout 100ms upstream; requests every ~100ms race its closes
    statuses = []
    async with aiohttp.ClientSession() as s:
        for i in range(8):
            status, _, doc = await send(s, f"{gw.url}/shortka/k{i}")
            statuses.append((status, doc.get("path") if isinstance(doc, dict) else doc))
            await asyncio.sleep(0.1)
    assert statuses == [(200, f"/k{i}") for i in range(8)]


# --- 2. pipelining behind a fast request -------------------------------------------------


@pytest.mark.parametrize("first", ["/fp/echo?id=1&s=0.2", "/fp/big", "/fp/big?chunked=1",
                                   "/nowhere"])
async def test_pipelined_requests_behind_a_fast_one_are_answered_in_order(
        gw: GatewayProcess, first: str) -> None:
    await warm(gw, "/fp/warm")
    data = get(first) + get("/fp/echo?id=2") + get("/fp/echo?id=3", "Connection: close")
    answers, rest = await raw_exchange(gw.port, data, 3)
    status, _, body = answers[0]
    if first.startswith("/fp/big"):
        assert status == 200 and hashlib.sha256(body).hexdigest() == BIG_SHA
    elif first == "/nowhere":
        assert status == 404 and json.loads(body)["code"] == 404
    else:
        assert status == 200 and json.loads(body)["path"] == "/echo?id=1&s=0.2"
    assert [(s, json.loads(b)["path"]) for s, _, b in answers[1:]] == [
        (200, "/echo?id=2"), (200, "/echo?id=3")]
    assert answers[2][1].get("connection") == "close" and rest == b""
