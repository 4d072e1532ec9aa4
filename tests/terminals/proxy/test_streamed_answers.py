"""Answers streamed to the client as they arrive: large bodies, HEAD answers."""

from __future__ import annotations

import asyncio
import hashlib

import aiohttp
import pytest

from tests.support.e2e_backend import send
from tests.support.gateway import GatewayProcess
from tests.support.proxy_harness import BIG, BIG_SHA, warm

# --- 4. a streamed answer ---------------------------------------------------------------


@pytest.mark.parametrize("query", ["", "?chunked=1"])
async def test_large_answer_arrives_whole(gw: GatewayProcess, query: str) -> None:
    await warm(gw, "/fp/warm")
    async with aiohttp.ClientSession() as s:
        for method in ("GET", "HEAD"):
            async with s.request(method, f"{gw.url}/fp/big{query}") as r:
                body = await r.read()
                assert r.status == 200
                if method == "GET":
                    assert len(body) == len(BIG) and hashlib.sha256(body).hexdigest() == BIG_SHA
                else:
                    assert body == b""
                    if not query:  # the length the GET has, not the (empty) body's
                        assert r.headers["Content-Length"] == str(len(BIG))
        # the connection the big answer came on is reusable, and carries no leftovers
        status, _, doc = await send(s, f"{gw.url}/fp/after-big")
        assert status == 200 and doc["path"] == "/after-big"


async def test_head_answer_without_a_known_length_gets_none(gw: GatewayProcess) -> None:
    await warm(gw, "/fp/warm")
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"HEAD /fp/big?chunked=1 HTTP/1.1\r\nHost: fast.test\r\n"
                 b"Connection: close\r\n\r\n")
    head = (await reader.read()).lower()
    writer.close()
    assert head.startswith(b"http/1.1 200") and head.endswith(b"\r\n\r\n")
    assert b"content-length: 0" not in head  # the GET's length is unknown, not zero


async def test_head_answer_that_leaks_a_body_does_not_poison_the_pool(
        gw: GatewayProcess) -> None:
    """An upstream that sends body bytes after a HEAD answer has spoiled that
    connection: it must not be reused for the next request (which got a 502)."""
    await warm(gw, "/fp/warm")
    async with aiohttp.ClientSession() as s:
        async with s.head(f"{gw.url}/fp/big?leak=1") as r:
            assert r.status == 200
        for i in range(5):
            status, _, doc = await send(s, f"{gw.url}/fp/after-leak-{i}")
            assert (status, doc["path"]) == (200, f"/after-leak-{i}")
