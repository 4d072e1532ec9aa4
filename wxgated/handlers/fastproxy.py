"""The proxy's callback path: a request answered without a task switch.

docs/PERFORMANCE.md's floor (a callback-only proxy on Protocols) costs about 1.25× nginx
per request; the coroutine path costs several times that, mostly in futures, task
wake-ups and the await chain between the two legs. So for the common request (no
body or a small one already whole, no upgrade, filters that can decide synchronously)
the route's FastProxy runs the filters' sync checks, picks and admits a target, writes
the request on an idle keep-alive connection, and the connection's listener answers the
client from the upstream protocol's own callback. (That is worth a quarter of a
request's CPU at low concurrency; at saturation both paths batch and cost the same.)

Everything that needs waiting is handed to the coroutine path at the point it arises,
with what was already done carried over: no idle connection, a stale one, a retry,
a streamed answer. The accounting (`settle`) and the retry decision (`retry_next`)
are the ones `forward` uses, so both paths count and retry alike.
"""

from __future__ import annotations

import time
from typing import Any

from wxgated.http.client import UpstreamConnection
from wxgated.http.envelope import error_response
from wxgated.http.errors import (
    UpstreamConnectError,
    UpstreamError,
    to_http_error,
)
from wxgated.http.headers import forward_target, request_block, response_headers
from wxgated.http.message import Headers, HTTPError, Request, Response, SyncCheck
from wxgated.observe import tracing
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
from wxgated.upstream.pool import Target, Upstream, with_body

__all__ = ["FastProxy", "client_response"]


def client_response(status: int, upstream_headers: Headers, conn: UpstreamConnection,
                    added: Headers | None = None) -> Response:
    """The client's response for an upstream answer, with the filters' `added` headers
    (names the gateway's filters choose, never framing ones): whole when it came with
    its head, else streamed as it arrives."""
    if conn.complete and not conn.head_request:  # the usual answer: the writer frames it
        headers = response_headers(upstream_headers, length=False)
        if added:
            headers += added
        resp = Response(status, headers, conn.take_body())
        resp.no_framing = headers
        return resp
    headers = response_headers(upstream_headers)
    if added:
        headers += added
    if conn.complete:
        return Response(status, headers, conn.take_body())
    return Response(status, headers, stream=conn.stream_body())


class FastProxy:
    """One route's fast path: `(req, proto)`; answers through `proto.answer_now` or
    hands over with `proto.answer_later`. Raises HTTPError for a refusal."""

    __slots__ = ("upstream", "checks", "preserve_host", "read_timeout", "timeout")

    def __init__(self, upstream: Upstream, checks: tuple[SyncCheck, ...],
                 preserve_host: bool, read_timeout: float | None) -> None:
        self.upstream = upstream
        self.checks = checks
        self.preserve_host = preserve_host
        self.read_timeout = read_timeout
        # without retries there is no deadline: the try's timeout is fixed
        self.timeout = timeouts(upstream, read_timeout)[0] if upstream.retry is None else None

    def __call__(self, req: Request, proto: Any) -> None:
        call = Call(self, req, proto)
        for check in self.checks:
            try:
                hdrs = check(req)
            except HTTPError as err:
                raise call.with_added(err) from None
            if hdrs:  # an inner filter's headers come before an outer one's
                call.added = hdrs if call.added is None else hdrs + call.added
        up = self.upstream
        call.lines, call.host = lines, host = request_block(req, self.preserve_host)
        if tracing.tracer is not None:  # the try's span id in the upstream's traceparent
            call.lines = lines = tracing.tracer.outgoing(req, lines)
        call.uri = uri = forward_target(req)  # checked, as the lines are
        if up.budget is not None:
            up.budget.record_request()
        try:
            target = admit(up, req, NO_EXCLUDE)
        except UpstreamError as exc:
            raise call.with_added(to_http_error(exc)) from None
        conn = target.pool.take_idle()
        if conn is None:
            proto.answer_later(req, call.slow(target))
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
            body = req.body  # none, or whole (the server holds a small one back until it is)
            data = body.buffered
            assert data is not None
            conn.transport.write(with_body(
                request_head(req.method, uri, host or target.host_header, lines), body, data))
        except BaseException:
            _give_back(target, conn)
            raise


def _give_back(target: Target, conn: UpstreamConnection) -> None:
    """One request, one answer: after a failure on the fast path, the connection and the
    admission go back before the error is answered, so no stray answer (or count)
    follows it."""
    conn.listener = None
    conn.abort()
    target.active -= 1
    if target.breaker is not None:
        target.breaker.cancel()


class Call:
    """One request on the fast path, from the upstream write to the client answer."""

    __slots__ = ("fp", "req", "proto", "uri", "lines", "host", "added", "target", "start",
                 "deadline")

    def __init__(self, fp: FastProxy, req: Request, proto: Any) -> None:
        self.fp = fp
        self.req = req
        self.proto = proto
        self.uri = b""
        self.lines = b""
        self.host = b""
        self.added: Headers | None = None  # the filters' response headers
        self.target: Target | None = None
        self.start = 0.0
        self.deadline: float | None = None

    def on_head(self, conn: Any) -> None:
        """The connection's listener: the answer head is in, or the exchange failed."""
        target = self.target
        assert target is not None
        up = self.fp.upstream
        req = self.req
        error = conn.error
        if error is not None:
            conn.abort()
            if isinstance(error, UpstreamConnectError) and not conn.got_bytes:
                # a stale keep-alive connection: the try goes on in forward (another
                # idle connection or a fresh one, as exchange_once does); the target
                # keeps its admission
                target.active -= 1
                self.proto.answer_later(req, self.slow(target))
                return
        status = None if error is not None else conn.status
        settle(up, req, target, status, error, self.start)
        if tracing.tracer is not None:
            tracing.tracer.tried(req, up.name, target.key, 1, status, error)
        if retry_next(up, req.method, 1, status, error, True, self.deadline):
            if error is None:
                conn.abort()  # a retried answer's body is not wanted
            self.proto.answer_later(req, self.slow(None, frozenset({target})))
        elif error is not None:
            err = self.with_added(to_http_error(error))
            req.reason = err.reason
            self.proto.answer_now(req, error_response(err, req.trace_id))
        else:
            resp = client_response(conn.status, conn.headers, conn, self.added)
            if resp.stream is None:
                self.proto.answer_now(req, resp)
            else:
                self.proto.answer_later(req, _ready(resp))

    async def slow(self, target: Target | None,
                   tried: frozenset[Target] = NO_EXCLUDE) -> Response:
        """The rest on the coroutine path: from an admitted `target`'s first try, or the
        next try after `tried`."""
        req = self.req
        try:
            ex = await forward(self.fp.upstream, req, req.method, self.uri, self.lines, self.host,
                               req.body, self.fp.read_timeout, target=target,
                               attempt=1 if target is not None else 2, tried=tried,
                               deadline=self.deadline)
        except UpstreamError as exc:
            raise self.with_added(to_http_error(exc)) from None
        return client_response(ex.status, ex.headers, ex.conn, self.added)

    def with_added(self, err: HTTPError) -> HTTPError:
        """A refusal carrying the response headers of the filters that passed."""
        if self.added:
            err.headers = err.headers + self.added
        return err


async def _ready(resp: Response) -> Response:
    return resp

