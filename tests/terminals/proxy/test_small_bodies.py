"""Small bodies: held until whole, then written upstream with their head."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from tests.support.e2e_backend import send
from tests.support.gateway import GatewayProcess
from tests.support.proxy_harness import get, post, warm
from tests.support.rawhttp import raw_exchange, read_response

# --- 8. small bodies: held until whole, then written with their head ------------------


async def test_a_body_arriving_after_its_head_is_still_forwarded_whole(
        gw: GatewayProcess) -> None:
    await warm(gw, "/fp/warm")
    body = b'{"note": "' + b"x" * 200 + b'"}'
    request = post("/fp/late", body)
    cut = request.index(b"\r\n\r\n") + 4 + 10  # the head and 10 bytes, then a pause
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        writer.write(request[:cut])
        await asyncio.sleep(0.2)
        writer.write(request[cut:])
        async with asyncio.timeout(5):
            status, _, raw = await read_response(reader)
    finally:
        writer.close()
    doc = json.loads(raw)
    assert (status, doc["method"], doc["path"], doc["len"]) == (200, "POST", "/late", len(body))


async def test_pipelined_posts_and_a_get_are_answered_in_order(gw: GatewayProcess) -> None:
    await warm(gw, "/fp/warm")
    requests = post("/fp/p1", b'{"a": 1}') + post("/fp/p2", b'{"b": 22}') + get("/fp/g3")
    answers, _ = await raw_exchange(gw.port, requests, 3)
    docs = [(status, json.loads(body)) for status, _, body in answers]
    assert [(st, d["method"], d["path"], d["len"]) for st, d in docs] == [
        (200, "POST", "/p1", 8), (200, "POST", "/p2", 9), (200, "GET", "/g3", 0)]


async def test_route_max_body_holds_on_the_fast_path_too(gw: GatewayProcess) -> None:
    await warm(gw, "/capped/warm")
    async with aiohttp.ClientSession() as s:
        status, headers, doc = await send(s, gw.url + "/capped/big", "POST", data=b"x" * 101)
        assert status == 413 and doc["code"] == 413 and doc["trace_id"] == headers["X-Trace-ID"]
        status, _, doc = await send(s, gw.url + "/capped/ok", "POST", data=b"x" * 100)
        assert status == 200 and doc["len"] == 100
