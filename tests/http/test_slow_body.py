"""Slow request bodies, through a real `wxgated run` and a real aiohttp upstream.

A client that drips its body must not hold connections for ever: the whole body has
`server.timeouts.body` from the end of its head (408, connection closed), however
steadily it drips; and a body within `server.limits.request_buffer` is read whole
before an upstream connection is taken, so the upstream sees nothing of a slow client.
The upstream counts the TCP connections it accepts (its aiohttp protocol factory is
wrapped), the requests it gets and the bodies cut short under it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.support.gateway import GatewayProcess, metric_value
from tests.support.rawhttp import read_response
from tests.support.servers import LoopThread

BODY_TIMEOUT = 1.0  # server.timeouts.body
HEADER_TIMEOUT = 10.0  # far longer: a 408 before it is the body deadline's
BUFFER = 64 * 1024  # server.limits.request_buffer
ROUTES = ["fast", "slow"]  # without filters, and with a response-phase filter


class Upstream:
    """An aiohttp echo upstream that counts accepted connections."""

    def __init__(self, lt: LoopThread) -> None:
        self.connections = 0
        self.requests = 0
        self.cut = 0  # request bodies the gateway stopped sending part-way
        self.lt = lt
        self.port = lt.run(self._start())

    async def _start(self) -> int:
        app = web.Application(client_max_size=0)
        app.router.add_route("*", "/{tail:.*}", self.echo)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        aio = self.runner.server
        assert aio is not None

        def factory() -> Any:
            self.connections += 1
            return aio()

        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(factory, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def echo(self, request: web.Request) -> web.Response:
        self.requests += 1
        try:
            body = await request.read()
        except Exception:
            self.cut += 1
            raise
        return web.json_response({
            "len": len(body), "sha256": hashlib.sha256(body).hexdigest(),
            "chunked": request.headers.get("Transfer-Encoding", ""),
        })

    def seen(self) -> tuple[int, int]:
        return self.connections, self.requests

    def stop(self) -> None:
        async def stop() -> None:
            self.server.close()
            await self.runner.cleanup()

        self.lt.run(stop())


@pytest.fixture(scope="module")
def upstream(loop_thread: LoopThread) -> Iterator[Upstream]:
    up = Upstream(loop_thread)
    yield up
    up.stop()


@pytest.fixture(scope="module")
def gw(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    route = {"upstream": "echo"}
    config = {
        "server": {"limits": {"max_body": "16MiB", "request_buffer": "64KiB"},
                   "timeouts": {"header": f"{HEADER_TIMEOUT}s",
                                "body": f"{int(BODY_TIMEOUT * 1000)}ms",
                                "shutdown_grace": "1s"}},
        "upstreams": {"echo": {"targets": [{"url": f"http://127.0.0.1:{upstream.port}"}],
                               "passive_health": {"enabled": False}}},
        "routes": [
            {"name": "fast", "match": {"path": "/fast/*rest"},
             "filters": [{"strip_prefix": 1}], **route},
            {"name": "slow", "match": {"path": "/slow/*rest"},  # no fast path
             "filters": [{"strip_prefix": 1}, {"response_headers": {}}], **route},
        ],
    }
    proc = GatewayProcess(tmp_path_factory.mktemp("gw-slow-body"), config).start()
    yield proc
    proc.stop()


def head(route: str, *fields: str) -> bytes:
    return "\r\n".join([f"POST /{route}/upload HTTP/1.1", "Host: x", *fields, "", ""]).encode()


async def drip(writer: asyncio.StreamWriter, data: bytes, every: float) -> None:
    """Send `data` a byte at a time; stop quietly when the gateway closes."""
    try:
        for i in range(len(data)):
            writer.write(data[i:i + 1])
            await writer.drain()
            await asyncio.sleep(every)
    except ConnectionError:
        pass


async def wait_for(cond: Any, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(0.02)
    return bool(cond())



def assert_echoed(status: int, body: bytes, data: bytes) -> None:
    """The upstream answered 200 with the length and digest of exactly `data`."""
    assert status == 200
    doc = json.loads(body)
    assert (doc["len"], doc["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())

@pytest.mark.parametrize("route", ROUTES)
async def test_dripped_body_gets_408_and_the_connection_closes(
        gw: GatewayProcess, upstream: Upstream, route: str) -> None:
    before = upstream.seen()
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    t0 = time.monotonic()
    writer.write(head(route, "Content-Length: 100", "X-Trace-ID: drip-" + route))
    dripper = asyncio.ensure_future(drip(writer, b"x" * 100, 0.05))  # 5 s at this pace
    try:
        async with asyncio.timeout(HEADER_TIMEOUT / 2):
            status, headers, body = await read_response(reader)
            rest = await reader.read()  # the gateway closes the connection
    finally:
        dripper.cancel()
        writer.close()
    elapsed = time.monotonic() - t0
    assert status == 408 and rest == b""
    assert headers["content-type"].startswith("application/json")
    assert headers.get("connection") == "close"
    doc = json.loads(body)
    assert doc["code"] == 408 and doc["trace_id"] == "drip-" + route, doc
    assert BODY_TIMEOUT <= elapsed < BODY_TIMEOUT + 1.5, elapsed
    assert upstream.seen() == before  # not a connection, not a request


@pytest.mark.parametrize("route", ROUTES)
async def test_small_body_is_read_whole_before_the_upstream_sees_anything(
        gw: GatewayProcess, upstream: Upstream, route: str) -> None:
    data = os.urandom(BUFFER // 2)
    before = upstream.seen()
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        writer.write(head(route, f"Content-Length: {len(data)}") + data[:1000])
        await writer.drain()
        for part in (data[1000:2000], data[2000:3000]):  # slow, within the deadline
            await asyncio.sleep(BODY_TIMEOUT / 5)
            assert upstream.seen() == before
            writer.write(part)
        await asyncio.sleep(BODY_TIMEOUT / 5)
        assert upstream.seen() == before
        writer.write(data[3000:])
        async with asyncio.timeout(5):
            status, _, body = await read_response(reader)
    finally:
        writer.close()
    assert_echoed(status, body, data)
    assert upstream.requests == before[1] + 1


@pytest.mark.parametrize("route", ROUTES)
async def test_normal_post_works(gw: GatewayProcess, route: str) -> None:
    data = b'{"hello": "world"}'
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{gw.url}/{route}/echo", data=data) as r:
            assert r.status == 200
            doc = await r.json()
    assert (doc["len"], doc["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())


@pytest.mark.parametrize("route", ROUTES)
async def test_body_larger_than_the_buffer_streams_once_the_buffer_is_full(
        gw: GatewayProcess, upstream: Upstream, route: str) -> None:
    data = os.urandom(1 << 20)
    before = upstream.requests
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        writer.write(head(route, f"Content-Length: {len(data)}") + data[:BUFFER + 1000])
        await writer.drain()
        # the buffer is full: the request goes upstream while the rest is still coming
        assert await wait_for(lambda: upstream.requests == before + 1, BODY_TIMEOUT / 2)
        writer.write(data[BUFFER + 1000:])
        async with asyncio.timeout(5):
            status, _, body = await read_response(reader)
    finally:
        writer.close()
    assert_echoed(status, body, data)


async def test_large_chunked_body_streams_intact(gw: GatewayProcess) -> None:
    blocks = [os.urandom(10_000) for _ in range(100)]

    async def gen() -> Any:
        for b in blocks:
            yield b

    async with aiohttp.ClientSession() as s:
        async with s.post(f"{gw.url}/slow/echo", data=gen()) as r:
            assert r.status == 200
            doc = await r.json()
    whole = b"".join(blocks)
    assert (doc["len"], doc["sha256"]) == (len(whole), hashlib.sha256(whole).hexdigest())
    assert doc["chunked"] == "chunked"  # larger than the buffer: streamed as it came


@pytest.mark.parametrize("route", ROUTES)
async def test_stalled_streaming_body_gets_408_and_the_upstream_connection_is_cut(
        gw: GatewayProcess, upstream: Upstream, route: str) -> None:
    before_cut = upstream.cut
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        writer.write(head(route, "Content-Length: 1000000") + b"x" * (BUFFER + 1000))
        dripper = asyncio.ensure_future(drip(writer, b"x" * 1000, 0.05))
        async with asyncio.timeout(HEADER_TIMEOUT / 2):
            status, _, _ = await read_response(reader)
            rest = await reader.read()
        dripper.cancel()
    finally:
        writer.close()
    assert status == 408 and rest == b""
    # the upstream's half-sent request is aborted, not left open for ever
    assert await wait_for(lambda: upstream.cut == before_cut + 1)


async def test_in_flight_gauge_returns_to_zero(gw: GatewayProcess) -> None:
    async def leave_mid_body(route: str) -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(head(route, "Content-Length: 100") + b"x" * 10)
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.close()

    async def drip_until_408(route: str) -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(head(route, "Content-Length: 100"))
        dripper = asyncio.ensure_future(drip(writer, b"x" * 100, 0.05))
        try:
            async with asyncio.timeout(HEADER_TIMEOUT / 2):
                return (await read_response(reader))[0]
        finally:
            dripper.cancel()
            writer.close()

    statuses = await asyncio.gather(*(drip_until_408(r) for r in ROUTES * 3),
                                    *(leave_mid_body(r) for r in ROUTES * 3))
    assert statuses[:6] == [408] * 6
    # metrics are flushed twice a second
    assert await wait_for(lambda: metric_value(gw.metrics(), "wxgated_requests_in_flight")
                          == 0, 3.0)
    assert metric_value(gw.metrics(), "wxgated_requests_in_flight") == 0
