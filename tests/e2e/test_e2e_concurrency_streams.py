"""Black-box: a concurrency_limit slot is held while an answer streams and freed when the
client leaves in the middle of it, through a real `wxgated run`.

The slot is released in the filter's done phase, which the engine runs once the answer
is written, or once writing it ended because the client went away; a slot leaked there
would shed every later request of the route with 503s."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from tests.support.servers import ThreadedApp, served


def upstream_app() -> web.Application:
    async def drip(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(b"x" * 4096)
        try:
            for _ in range(100):  # 10 s unless the gateway goes away first
                await asyncio.sleep(0.1)
                await resp.write(b"y" * 1024)
        except (ConnectionResetError, RuntimeError):
            pass
        return resp

    async def quick(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/drip", drip)
    app.router.add_get("/quick", quick)
    return app


@pytest.fixture(scope="module")
def upstream() -> Iterator[ThreadedApp]:
    yield from served(upstream_app())


@pytest.fixture
def gw(gateway: Any, upstream: ThreadedApp) -> Any:
    return gateway({
        "upstreams": {"svc": {"targets": [{"url": upstream.url}]}},
        "routes": [{"name": "limited", "match": {"path": "/s/*rest"}, "upstream": "svc",
                    "filters": [{"strip_prefix": 1}, {"concurrency_limit": 1}]}],
    })


def status_of(port: int, path: str) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n" % path.encode())
        head = s.recv(65536)
    return int(head.split(b" ", 2)[1])


def test_a_client_leaving_mid_stream_frees_its_slot(gw: Any) -> None:
    client = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    client.sendall(b"GET /s/drip HTTP/1.1\r\nHost: gw\r\n\r\n")
    got = b""
    while b"xxxx" not in got:  # the answer has begun streaming
        got += client.recv(65536)
    assert got.startswith(b"HTTP/1.1 200")
    assert status_of(gw.port, "/s/quick") == 503  # the stream holds the only slot
    client.close()  # gone in the middle of the answer
    deadline = time.monotonic() + 5
    status = 503
    while status == 503 and time.monotonic() < deadline:
        time.sleep(0.1)
        status = status_of(gw.port, "/s/quick")
    assert status == 200, "the slot of a client gone mid-stream was never freed"
