"""The `upstream` terminal: the request to an upstream pool, the answer back.

The common request (no body, or a whole one; an idle keep-alive connection to an
admitted target) is written at once and answered from the upstream connection's own
callback: no task, no future (docs/PERFORMANCE.md: a callback-only proxy on Protocols
is the floor; each task switch on the way costs a share of a request). Whatever needs
waiting goes on in `forward` in a task, from where it arose: no idle connection, a stale
one, a retry, a body still arriving, a WebSocket upgrade. The accounting (`settle`) and
the retry decision (`retry_next`) are `forward`'s own, so both count and retry alike.
"""

from __future__ import annotations

import time
from typing import Any

from wxgated.config.spec import duration
from wxgated.http.client import UpstreamConnection
from wxgated.http.errors import UpstreamConnectError, UpstreamError, to_http_error
from wxgated.http.headers import forward_target, request_block, response_headers
from wxgated.http.message import Headers, HTTPError, Request, Response
from wxgated.observe import tracing
from wxgated.terminals.base import Terminal, register_terminal
from wxgated.upstream.forward import (
    NO_EXCLUDE,
    admit,
    forward,
    request_head,
    retry_next,
    settle,
    timeouts,
    try_timeout,
)
from wxgated.upstream.targets import Target, Upstream, with_body
from wxgated.websocket.upgrade import build_upgrader, wants_websocket

SCHEMA = {"type": "string", "description": "name of an upstream under `upstreams:`"}


def client_response(status: int, upstream_headers: Headers,
                    conn: UpstreamConnection) -> Response:
    """The client's response for an upstream answer: whole when it came with its head,
    else streamed as it arrives."""
    if conn.complete and not conn.head_request:  # the usual answer: the writer frames it
        headers = response_headers(upstream_headers, length=False)
        resp = Response(status, headers, conn.take_body())
        resp.no_framing = headers
        return resp
    headers = response_headers(upstream_headers)
    if conn.complete:
        return Response(status, headers, conn.take_body())
    return Response(status, headers, stream=conn.stream_body())


class Proxy:
    """One route's proxy terminal, everything per-route resolved at compile time."""

    __slots__ = ("upstream", "preserve_host", "upgrade", "read_timeout", "timeout")

    def __init__(self, upstream: Upstream, route: dict[str, Any]) -> None:
        self.upstream = upstream
        self.preserve_host = bool(route.get("preserve_host", False))
        self.upgrade = build_upgrader(upstream, route) if route.get("websocket", True) else None
        self.read_timeout = duration(route["timeout"], 0.0) if "timeout" in route else None
        # without retries there is no deadline: the try's timeout is fixed
        self.timeout = timeouts(upstream, self.read_timeout)[0] \
            if upstream.retry is None else None

    def start(self, req: Request, flow: Any) -> None:
        if req.ctx.get("upgrade_buffer") is not None and wants_websocket(req):
            if self.upgrade is None:
                raise HTTPError(400, "websocket not allowed on this route")
            flow.wait(self.upgrade(req))
            return
        call = Call(self, req, flow)
        lines, host, uri = call.lines, call.host, call.uri
        body = req.body
        data = body.buffered
        if data is None:  # a body still arriving: read ahead first, in forward
            flow.wait(call.forward(None, 1, NO_EXCLUDE))
            return
        if tracing.tracer is not None:  # the try's span id in the upstream's traceparent
            call.lines = lines = tracing.tracer.outgoing(req, lines)
        up = self.upstream
        if up.budget is not None:
            up.budget.record_request()
        try:
            target = admit(up, req, NO_EXCLUDE)
        except UpstreamError as exc:
            raise to_http_error(exc) from None
        conn = target.pool.take_idle()
        if conn is None:
            flow.wait(call.forward(target, 1, NO_EXCLUDE))
            return
        target.active += 1
        call.target = target
        call.start = start = time.monotonic()
        try:
            timeout = self.timeout
            if timeout is None:  # retries: each try within their deadline
                timeout, call.deadline = timeouts(up, self.read_timeout)
                timeout = try_timeout(timeout, call.deadline, start)
            conn.begin(req.method == "HEAD", timeout)
            conn.listener = call.on_head
            conn.transport.write(with_body(
                request_head(req.method, uri, host or target.host_header, lines), body, data))
        except BaseException:
            _give_back(target, conn)
            raise


    async def __call__(self, req: Request) -> Response:
        """The proxy as a handler, for a terminal that forwards on its own terms (a
        WeChat push): every try in `forward`."""
        return await Call(self, req, None).forward(None, 1, NO_EXCLUDE)


def _give_back(target: Target, conn: UpstreamConnection) -> None:
    """One request, one answer: after a failure on the first write, the connection and
    the admission go back before the error is answered, so no stray answer (or count)
    follows it."""
    conn.listener = None
    conn.abort()
    target.active -= 1
    if target.breaker is not None:
        target.breaker.cancel()


class Call:
    """One request to the upstream, from its head (built and checked here, before a
    target is admitted) to the answer."""

    __slots__ = ("proxy", "req", "flow", "uri", "lines", "host", "target", "start",
                 "deadline")

    def __init__(self, proxy: Proxy, req: Request, flow: Any) -> None:
        self.proxy = proxy
        self.req = req
        self.flow = flow
        self.lines, self.host = request_block(req, proxy.preserve_host)
        self.uri = forward_target(req)  # checked, as the lines are
        self.target: Target | None = None
        self.start = 0.0
        self.deadline: float | None = None

    def on_head(self, conn: Any) -> None:
        """The connection's listener: the answer head is in, or the exchange failed."""
        target = self.target
        assert target is not None
        up = self.proxy.upstream
        req = self.req
        error = conn.error
        if error is not None:
            conn.abort()
            if isinstance(error, UpstreamConnectError) and not conn.got_bytes:
                # a stale keep-alive connection: the try goes on in forward (another
                # idle connection or a fresh one, as exchange_once does); the target
                # keeps its admission
                target.active -= 1
                self.flow.wait(self.forward(target, 1, NO_EXCLUDE))
                return
        status = None if error is not None else conn.status
        settle(up, req, target, status, error, self.start)
        if tracing.tracer is not None:
            tracing.tracer.tried(req, up.name, target.key, 1, status, error)
        if retry_next(up, req.method, 1, status, error, True, self.deadline):
            if error is None:
                conn.abort()  # a retried answer's body is not wanted
            self.flow.wait(self.forward(None, 2, frozenset({target})))
        elif error is not None:
            self.flow.fail(to_http_error(error))
        else:
            self.flow.respond(client_response(conn.status, conn.headers, conn))

    async def forward(self, target: Target | None, attempt: int,
                      tried: frozenset[Target]) -> Response:
        """The rest in `forward`: from an admitted `target`'s try `attempt`, or (no
        target) the next try after `tried`."""
        req = self.req
        proxy = self.proxy
        try:
            ex = await forward(proxy.upstream, req, req.method, self.uri, self.lines,
                               self.host, req.body, proxy.read_timeout, target=target,
                               attempt=attempt, tried=tried, deadline=self.deadline)
        except UpstreamError as exc:
            raise to_http_error(exc) from None
        return client_response(ex.status, ex.headers, ex.conn)


def build(value: str, route: dict[str, Any], ctx: Any) -> Proxy:
    return Proxy(ctx.upstreams[value], route)


register_terminal(Terminal("upstream", SCHEMA, build))
