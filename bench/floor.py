"""The floor: what any Python proxy on uvloop + httptools costs, with no features.

    .venv/bin/python bench/floor.py PORT UPSTREAM_PORT

A callback-only reverse proxy: parse the request, write it on a pooled keep-alive
upstream connection, write the answer back from the upstream parser's callback. No
routing, no timeouts, no metrics, no error handling: not a gateway, a yardstick.
bench/run.py runs it as the `floor` scenario so RESULTS.md shows, in the same run, how
far CPython itself is from nginx on this machine; bench/pathcost.py times its Python
work next to wxgated's.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import httptools
import uvloop


class FloorServer(asyncio.Protocol):
    def __init__(self, pool: FloorPool) -> None:
        self.pool = pool
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: list[bytes] = []

    def connection_made(self, t: Any) -> None:
        self.t = t
        self.peer = t.get_extra_info("peername")[0].encode()

    def data_received(self, d: bytes) -> None:
        self.parser.feed_data(d)

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []

    def on_url(self, u: bytes) -> None:
        self.url += u

    def on_header(self, n: bytes, v: bytes) -> None:
        n = n.lower()
        if n not in (b"host", b"connection"):
            self.headers.append(n + b": " + v + b"\r\n")

    def on_message_complete(self) -> None:
        self.pool.send(self, b"GET " + self.url + b" HTTP/1.1\r\nhost: up\r\n"
                       + b"".join(self.headers) + b"x-forwarded-for: " + self.peer + b"\r\n\r\n")


class FloorUpstream(asyncio.Protocol):
    def __init__(self, pool: FloorPool) -> None:
        self.pool = pool
        self.parser = httptools.HttpResponseParser(self)
        self.client: FloorServer | None = None
        self.headers: list[bytes] = []
        self.body: list[bytes] = []

    def connection_made(self, t: Any) -> None:
        self.t = t

    def data_received(self, d: bytes) -> None:
        self.parser.feed_data(d)

    def on_message_begin(self) -> None:
        self.headers = []
        self.body = []

    def on_header(self, n: bytes, v: bytes) -> None:
        n = n.lower()
        if n not in (b"connection", b"keep-alive"):
            self.headers.append(n + b": " + v + b"\r\n")

    def on_body(self, b: bytes) -> None:
        self.body.append(b)

    def on_message_complete(self) -> None:
        c, self.client = self.client, None
        assert c is not None
        c.t.write(b"HTTP/1.1 %d OK\r\n" % self.parser.get_status_code()
                  + b"".join(self.headers) + b"via: 1.1 floor\r\n\r\n" + b"".join(self.body))
        self.pool.idle.append(self)


class FloorPool:
    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[FloorUpstream] = []

    def send(self, client: FloorServer, head: bytes) -> None:
        if self.idle:
            up = self.idle.pop()
            up.client = client
            up.t.write(head)
        else:
            asyncio.get_running_loop().create_task(self._connect(client, head))

    async def _connect(self, client: FloorServer, head: bytes) -> None:
        _, up = await asyncio.get_running_loop().create_connection(
            lambda: FloorUpstream(self), "127.0.0.1", self.port)
        up.client = client
        up.t.write(head)


async def serve(port: int, upstream_port: int) -> None:
    pool = FloorPool(upstream_port)
    srv = await asyncio.get_running_loop().create_server(
        lambda: FloorServer(pool), "127.0.0.1", port, backlog=4096)
    await srv.serve_forever()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1]), int(sys.argv[2])))
