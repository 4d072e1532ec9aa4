"""Upstreams and request helpers of the proxy terminal tests (tests/terminals/proxy/): a
service app, upstreams that close or reset kept-alive connections, routes, raw requests."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import socket
import struct
from typing import Any

from aiohttp import web

from tests.support.e2e_backend import get_many
from tests.support.gateway import GatewayProcess
from tests.support.servers import LoopThread

BIG = random.Random(20240601).randbytes(5 << 20)  # 5 MiB, no repeating blocks
BIG_SHA = hashlib.sha256(BIG).hexdigest()
NO_PASSIVE = {"enabled": False}


# --- upstreams -------------------------------------------------------------------------


def svc_app() -> web.Application:
    """Echoes method, path and headers (after an optional `?s=` sleep); serves BIG."""

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        await asyncio.sleep(float(request.query.get("s", "0")))
        return web.json_response({
            "method": request.method, "path": request.path_qs, "len": len(body),
            "headers": [[k.lower(), v] for k, v in request.headers.items()]})

    async def big(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        if request.query.get("chunked"):
            resp.enable_chunked_encoding()
        else:
            resp.content_length = len(BIG)
        await resp.prepare(request)
        # aiohttp sends what is written, HEAD or not; ?leak=1 lets a HEAD answer leak
        if request.method != "HEAD" or request.query.get("leak"):
            for i in range(0, len(BIG), 1 << 18):
                await resp.write(BIG[i:i + (1 << 18)])
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/big", big)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


class OneShotUpstream:
    """Answers the first request on each connection with a keep-alive 200, then closes
    the connection when the next request arrives on it, without a byte of answer: what
    an upstream whose keep-alive timer fired just as the gateway reused the connection
    looks like from the gateway. `rst` closes with a reset instead of a FIN."""

    def __init__(self, lt: LoopThread, rst: bool) -> None:
        self.rst = rst
        self.connections = 0
        self.answered = 0
        self.dropped = 0
        self.server = lt.run(asyncio.start_server(self.handle, "127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = self.connections
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if served:
                    self.dropped += 1
                    if self.rst:
                        sock = writer.get_extra_info("socket")
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
                    break
                served += 1
                self.answered += 1
                path = head.split(b" ", 2)[1]
                body = json.dumps({"conn": conn, "path": path.decode()}).encode()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\n\r\n" % len(body) + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def proxied(name: str, upstream: str, *filters: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """`/NAME/...` proxied to `upstream` as `/...`."""
    return {"name": name, "match": {"path": f"/{name}/*rest"},
            "filters": [*filters, {"strip_prefix": 1}], "upstream": upstream, **extra}


def get(path: str, *extra: str) -> bytes:
    return "\r\n".join([f"GET {path} HTTP/1.1", "Host: fast.test", *extra, "", ""]).encode()


async def warm(gw: GatewayProcess, path: str, n: int = 1) -> None:
    """Leave idle keep-alive connections in the route's upstream pool(s)."""
    results = await get_many(gw.url + path, n)
    assert [s for s, _, _ in results] == [200] * n


RL = ("ratelimit-limit", "ratelimit-remaining", "retry-after", "www-authenticate")


def post(path: str, body: bytes) -> bytes:
    return (b"POST %s HTTP/1.1\r\nhost: fast.test\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n" % (path.encode(), len(body)) + body)
