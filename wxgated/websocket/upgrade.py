"""WebSocket proxying for the `upstream` terminal (docs/CONFIG.md: upgrades pass on every
proxied route unless it says `websocket: false`).

The filter chain has already run on the upgrade request (jwt_auth, rate_limit, ...).
Here the handshake goes to one target on a fresh connection, never a pooled one: the
connection stops being HTTP once the upstream says 101. The 101 goes back to the
client and `wxgated.websocket.tunnel.Tunnel` relays the bytes from then on; any other
answer is returned as a plain response and the connection is closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools

from wxgated.config.spec import duration
from wxgated.http.errors import (
    UpstreamBroken,
    UpstreamConnectError,
    UpstreamError,
    UpstreamTimeout,
    to_http_error,
)
from wxgated.http.headers import field_lines, forward_target, request_block, response_headers
from wxgated.http.message import Handler, Request, Response
from wxgated.observe.metrics import WEBSOCKETS_OPEN
from wxgated.upstream.forward import NO_EXCLUDE, accounted, admit, request_head
from wxgated.upstream.targets import Target, Upstream
from wxgated.websocket.tunnel import Tunnel

DEFAULT_IDLE = 300.0
MAX_REFUSAL_BODY = 1 << 20  # a non-101 answer is buffered whole, up to this

def wants_websocket(req: Request) -> bool:
    """An Upgrade to WebSocket (other upgrades, e.g. h2c, are optional for the server
    and are simply proxied as plain requests)."""
    value = req.header(b"upgrade")
    return value is not None and b"websocket" in value.lower()


def build_upgrader(upstream: Upstream, route: dict[str, Any]) -> Handler:
    """The route's upgrade handler, with everything per-route resolved now."""
    idle = duration(route.get("websocket_idle"), DEFAULT_IDLE)
    return WebSocketProxy(upstream, str(route.get("name", "")), idle,
                          bool(route.get("preserve_host", False)))


class WebSocketProxy:
    """One route's upgrade handler: one handshake attempt (no retries: a WebSocket
    client reconnects itself), counted like any upstream request."""

    def __init__(self, upstream: Upstream, route: str, idle: float,
                 preserve_host: bool) -> None:
        self.upstream = upstream
        self.idle = idle
        self.preserve_host = preserve_host
        self.gauge = WEBSOCKETS_OPEN.labels(route)

    async def __call__(self, req: Request) -> Response:
        up = self.upstream
        uri, host, lines = self._parts(req)
        try:
            target = admit(up, req, NO_EXCLUDE)
        except UpstreamError as exc:
            raise to_http_error(exc) from None
        head = request_head(req.method, uri, host or target.host_header, lines) + b"\r\n"
        side, error = await accounted(up, req, target, _handshake(
            target, head, up.connect_timeout, up.read_timeout))
        if error is not None or side is None or not side.switched:
            if side is not None:
                side.transport.close()
            if error is not None:
                raise to_http_error(error) from None
            assert side is not None
            return Response(side.status, response_headers(side.headers),
                            b"".join(side.body))
        target.active += 1  # the tunnel holds its target until it closes
        tunnel = Tunnel(side, target, self.gauge, self.idle,
                        req.ctx.get("upgrade_buffer") or b"", up.read_timeout)
        resp = Response(101, response_headers(side.headers, switching=True))
        resp.upgrade = tunnel.start
        return resp

    def _parts(self, req: Request) -> tuple[bytes, bytes, bytes]:
        """The handshake's target, Host and lines, built (and so checked: `forward_target`,
        `request_block`, `field_lines`) before a target is admitted."""
        lines, host = request_block(req, self.preserve_host)
        lines += field_lines([(b"connection", b"upgrade"),
                              (b"upgrade", req.header(b"upgrade") or b"websocket")])
        return forward_target(req), host, lines


async def _handshake(target: Target, head: bytes, connect_timeout: float,
                     read_timeout: float) -> UpstreamSide:
    """Send the upgrade request on a new connection and read the answer: a 101 (the
    connection is then the upstream end of a tunnel) or a whole refusal."""
    loop = asyncio.get_running_loop()
    side: UpstreamSide = await target.pool.open(lambda: UpstreamSide(loop), connect_timeout)
    side.transport.write(head)
    try:
        async with asyncio.timeout(read_timeout):
            await side.answered
    except TimeoutError:
        side.transport.abort()
        raise UpstreamTimeout("upstream did not answer the upgrade in time") from None
    except BaseException:
        side.transport.abort()
        raise
    return side


class UpstreamSide(asyncio.Protocol):
    """The gateway's connection to the upstream: an HTTP client for one handshake, then
    the upstream end of the tunnel."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: Any = None
        self.answered: asyncio.Future[None] = loop.create_future()
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.size = 0
        self.switched = False  # the answer was 101: the bytes are WebSocket frames now
        self.early: list[bytes] = []  # frames that came before the tunnel started
        self.closed = False
        self.write_paused = False
        self.tunnel: Tunnel | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        tunnel = self.tunnel
        if tunnel is not None:
            tunnel.from_upstream(data)
            return
        if self.switched:
            self.early.append(data)
            return
        if self.answered.done():
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upg:
            if self.status == 101:
                self.switched = True
                rest = data[upg.args[0]:]
                if rest:
                    self.early.append(rest)
                self.transport.pause_reading()  # until the client end is ready
                self._answer(None)
        except httptools.HttpParserError as exc:
            self._answer(UpstreamBroken(f"invalid answer to the upgrade: {exc}"))
        if self.status == 101 and not self.switched:
            self._answer(UpstreamBroken("101 without Connection: upgrade"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.tunnel is not None:
            self.tunnel.upstream_lost()
        elif self.status:
            self._answer(None)  # a refusal whose body ends with the connection
        else:
            self._answer(UpstreamConnectError("upstream closed the connection"))

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.tunnel is not None:
            self.tunnel.upstream_paused()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.tunnel is not None:
            self.tunnel.upstream_resumed()

    def _answer(self, error: Exception | None) -> None:
        if not self.answered.done():
            if error is None:
                self.answered.set_result(None)
            else:
                self.answered.set_exception(error)

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self.headers = []  # interim answer: the real one follows
            return
        self.status = status

    def on_body(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > MAX_REFUSAL_BODY:
            self.transport.abort()
            self._answer(UpstreamBroken("upstream refused the upgrade with a huge body"))
            return
        self.body.append(chunk)

    def on_message_complete(self) -> None:
        if self.status and self.status != 101:
            self._answer(None)
