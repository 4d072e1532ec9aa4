"""The public HTTP/1.1 server: an asyncio Protocol around httptools (llhttp).

Hand-written instead of aiohttp's server because this is the hot path: docs/PERFORMANCE.md
measured ~50 µs of CPU per proxied request on raw protocols against 355–440 µs with
aiohttp on both legs. Owning the protocol means owning its correctness: requests are
answered in order (pipelining), keep-alive follows the request and the response,
llhttp rejects smuggling shapes (CL+TE, duplicate CL, obs-fold, bad header names),
header and body sizes are limited on the wire, a head has `timeouts.header` and a whole
body `timeouts.body` from the end of its head (no chunk extends either), and reading
pauses when a body or a pipeline backs up.

A request on a route with a fast path is answered from callbacks (`Dispatcher.fast` →
wxgated.handlers.fastproxy → `answer_now`, or a task of its own when it must wait:
`answer_later`) when it has no body, or a small Content-Length body that is all in by
the end of the read that brought its head (the usual wx.request POST): that one is
held until its message completes. Everything else runs in one task per connection,
parked between requests (`_cycle`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable
from typing import Any

import httptools

from wxgated.http.body import RequestBody
from wxgated.http.framing import (
    TOO_LARGE,
    Discard,
    Refused,
    fields_size,
    head_fields,
    origin_form,
    refusal_of,
)
from wxgated.http.message import NO_BODY, Body, HTTPError, Request, Response
from wxgated.http.serving import Dispatcher
from wxgated.http.target import request_target
from wxgated.http.waiters import wake
from wxgated.http.writer import ResponseWriter, simple_response
from wxgated.observe.trace import new_trace_id

MAX_PIPELINE = 16  # queued requests before we stop reading from the client
FAST_BODY = 64 * 1024  # a Content-Length body up to this may take the fast path whole
LINGER_SECONDS = 2.0  # how long an unread request body is drained after an early answer
_ZERO_BODY = Body.of(b"")  # an explicit Content-Length: 0, forwarded as such


class GatewayProtocol(asyncio.Protocol):
    def __init__(self, dispatcher: Dispatcher) -> None:
        self.d = dispatcher
        self.cfg = dispatcher.cfg
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: Any = None
        self.peer_ip = ""
        self.writer: ResponseWriter | None = None
        self.pipeline: deque[tuple[Request, RequestBody | None]] = deque()
        self.active = False
        self.closed = False
        self.reading_paused = False
        self.tunnel: Any = None  # set after a protocol upgrade (WebSocket)
        # per message being parsed
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: RequestBody | None = None
        self._bytes_in = 0
        self.deadline = 0.0
        self.bucket = 0  # the Deadlines bucket we sit in
        self._body_by = 0.0  # the body deadline of the message being read (loop time)
        self._parsing = False
        self._head_timed = False
        self._waiter: asyncio.Future[None] | None = None  # the cycle task, parked
        self._in_head = False
        self._head_bytes = 0
        self._refusal: bytes | None = None  # a parse error's answer, due after the pipeline
        # a request with a small body, held back until the body is in (fast path)
        self._held: tuple[Request, RequestBody] | None = None

    # -- connection ---------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer_ip = peer[0] if peer else ""
        self.writer = ResponseWriter(transport, self)
        conns = self.d.connections
        if self.cfg.max_connections and len(conns) >= self.cfg.max_connections:
            transport.write(simple_response(503, b"too many connections"))
            self.closed = True
            self._linger()  # let the client read the 503 before its request is dropped
            return
        conns.add(self)
        self._arm(self.cfg.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.d.connections.discard(self)
        self._disarm()
        self._wake_cycle()
        if self.writer is not None:
            self.writer.connection_lost()
        if self._body is not None:
            self._body.fail(ConnectionResetError("client disconnected"))
        for req, body in self.pipeline:  # never to be answered: no longer in flight
            self.d.abandon(req)
            if body is not None:
                body.fail(ConnectionResetError("client disconnected"))
        self.pipeline.clear()
        if self.tunnel is not None:
            self.tunnel.client_lost()

    def pause_writing(self) -> None:
        if self.tunnel is not None:
            self.tunnel.client_paused()
        elif self.writer is not None:
            self.writer.pause()

    def resume_writing(self) -> None:
        if self.tunnel is not None:
            self.tunnel.client_resumed()
        elif self.writer is not None:
            self.writer.resume()

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.from_client(data)
            return
        self._bytes_in += len(data)
        in_head = self._in_head
        try:
            self.parser.feed_data(data)
            if self._in_head:  # a head arriving in pieces: bounded before it completes
                if in_head:
                    self._head_bytes += len(data)  # all of this read is head
                if max(self._head_bytes, self._head_size()) > self.cfg.max_header:
                    self._reject(431, TOO_LARGE)
                    return
            if self._parsing and not self.active and not self._head_timed:
                # a request still incomplete after this read: the header timeout runs from
                # here, once per request (whole requests, the usual case, skip the timer)
                self._head_timed = True
                self._arm(self.cfg.header_timeout)
        except httptools.HttpParserUpgrade as upg:
            self._on_upgrade(data[upg.args[0]:])
        except httptools.HttpParserError as exc:
            self._reject(*refusal_of(exc))
        finally:
            if self._held is not None:  # its body did not all come in this read
                self._queue(*self._held)
                self._held = None

    def eof_received(self) -> bool | None:
        if self._body is not None:  # body cut short by the client
            self._body.fail(ConnectionResetError("client closed before the body ended"))
        return None

    # -- timeouts (swept by the dispatcher's Deadlines, no loop timer per request) -----
    def _arm(self, seconds: float) -> None:
        self.d.deadlines.arm(self, self.loop.time() + seconds if seconds > 0 else 0.0)

    def _disarm(self) -> None:
        if self.deadline:
            self.d.deadlines.arm(self, 0.0)

    def _arm_body(self) -> None:
        """The whole-body deadline, from the end of the head: a client dripping its body
        gets a 408 then, however often a byte arrives (nginx's client_body_timeout
        only bounds the pauses, which a drip stays within)."""
        seconds = self.cfg.body_timeout
        self._body_by = self.loop.time() + seconds if seconds > 0 else 0.0
        self.d.deadlines.arm(self, self._body_by)

    def on_deadline(self) -> None:
        if self.closed:
            return
        body = self._body
        if body is not None and not body.done:  # the client stalled within its body
            body.fail(HTTPError(408, "request body timeout", reason="body_timeout"))
        if self.active:  # its handler answers (a 408 when it reads the body) and closes
            return
        if self._parsing:  # slow client: the head not complete in time
            self._reject(408, "request timeout")
        else:  # idle keep-alive connection
            self.transport.close()

    def _reject(self, status: int, msg: str) -> None:
        """Answer a request the parser refused, then close: the stream is unusable."""
        self._disarm()
        if self.closed:
            return
        if self._body is not None:  # a body being read ends here, with this refusal
            self._body.fail(HTTPError(status, msg))
            self._body = None
        trace_id = new_trace_id()
        self.d.refused(self.peer_ip, status, self._url, trace_id)
        if self.active or self.pipeline:
            # the requests before the bad bytes are answered first, in order; this
            # refusal comes after them, unless one of them ends the connection (bytes
            # after a `Connection: close` request are simply dropped)
            self._refusal = simple_response(status, msg.encode(), trace_id)
            self.pause_reading()
            return
        self.transport.write(simple_response(status, msg.encode(), trace_id))
        self.transport.close()
        self.closed = True

    # -- httptools callbacks ------------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._parsing = True
        self._in_head = True
        self._head_bytes = 0
        self._head_timed = False

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self.cfg.max_header:
            raise Refused(414, "request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        # Sized, lower-cased and filtered all at once when the head is complete
        # (head_fields), rather than step by step in each callback.
        if self._in_head:  # trailer fields of a chunked body are not headers: dropped
            self._headers.append((name, value))

    def _head_size(self) -> int:
        return len(self._url) + fields_size(self._headers)

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self.closed:  # pipelined behind an answer that closed the connection
            return
        parser = self.parser
        version = parser.get_http_version()
        cfg = self.cfg
        self._headers = headers = head_fields(self._headers, version,
                                              cfg.max_header - len(self._url),
                                              cfg.allow_underscores)
        url = self._url
        if url[:1] != b"/":
            url, authority = origin_form(url)
            if authority is not None:  # the target's authority is the host
                headers = [h for h in headers if h[0] != b"host"]
                headers.append((b"host", authority))
                self._headers = headers
        by_name = dict(headers)  # the last of each name, for the few read here
        sent, path, query, plain = request_target(url, cfg.path_rules)
        method = parser.get_method().decode("ascii")
        req = self.d.begin(self.peer_ip, headers, by_name, method, path, query, version,
                           parser.should_keep_alive())
        req.orig_path = sent
        if plain is not None:
            req.plain_target = (path, query, plain)
        req.transport = self.transport
        cl = by_name.get(b"content-length")
        length = None if cl is None else int(cl)
        body = None
        if length or b"transfer-encoding" in by_name:
            expect = by_name.get(b"expect")  # HTTP/1.0 clients' expectations are ignored
            body = RequestBody(self, self.cfg.max_body, length, version == "1.1"
                               and expect is not None and expect.lower() == b"100-continue")
            if length is not None and length > self.cfg.max_body:
                body.too_large = True
            req.body = Body(body, length)
            self._arm_body()
        else:
            req.body = NO_BODY if length is None else _ZERO_BODY
        self._body = body
        if not self.active:
            # no disarm: an idle deadline that fires while a request is active is ignored
            self.active = True
            if not parser.should_upgrade():
                if body is None:
                    self._parsing = False  # no body: this message is complete
                    if self.d.fast(req, self):
                        return
                elif length is not None and length <= FAST_BODY and not body.too_large \
                        and not body.expect_continue:
                    self._held = (req, body)  # likely all in this read: see on_message_complete
                    return
            self._queue(req, body)
        else:
            self.pipeline.append((req, body))
            if len(self.pipeline) > MAX_PIPELINE:
                self.pause_reading()

    def on_body(self, chunk: bytes) -> None:
        # no re-arming here: a chunk now and then must not keep a body alive for ever
        if self._body is not None:
            self._body.feed(chunk)

    def on_message_complete(self) -> None:
        self._parsing = False
        if self._body is not None:
            self._body.finish()
            self._body = None
        if self._held is not None:
            req, body = self._held
            self._held = None
            if req.body.arrived() is not None and self.d.fast(req, self):
                return
            self._queue(req, body)

    def _queue(self, req: Request, body: RequestBody | None) -> None:
        """The first request of a connection in a while, onto the coroutine path."""
        self.pipeline.append((req, body))
        self._run_cycle()

    # -- request cycles -----------------------------------------------------
    async def _cycle(self) -> None:
        """Answer queued requests one at a time, in arrival order.

        One task per connection, parked on a future between requests: creating a Task
        per request was a measurable share of the hot path."""
        while await self._answer_pipeline():
            self._waiter = self.loop.create_future()
            await self._waiter
            if self.closed or not self.active:
                return

    async def _answer_pipeline(self) -> bool:
        """Answer what is queued; False when the connection is done with."""
        writer = self.writer
        assert writer is not None
        d = self.d
        while self.pipeline and not self.closed:
            req, body = self.pipeline.popleft()
            if body is not None and body.too_large:
                resp = d.reject(req, 413, "request body too large", "body_too_large")
                req.keep_alive = False
            else:
                resp = await d.handle(req)
            if self.reading_paused and len(self.pipeline) <= MAX_PIPELINE // 2:
                self.resume_reading()
            unread = body is not None and not body.done
            keep = await writer.write(req, resp, self._may_keep(req, unread))
            if not self._sent(req, resp, keep, unread):
                return False
        return self._idle()

    def answer_now(self, req: Request, resp: Response) -> None:
        """The fast path's answer, with its body whole: written without a task switch."""
        assert self.writer is not None
        keep = self.writer.write_now(req, resp, self._may_keep(req, False))
        if self._sent(req, resp, keep, False):
            self._next()

    def answer_later(self, req: Request, work: Awaitable[Response]) -> None:
        """The fast path's answer when it needs awaiting (a new upstream connection, a
        retry, a streamed body)."""
        self.loop.create_task(self._answer_later(req, work))

    async def _answer_later(self, req: Request, work: Awaitable[Response]) -> None:
        assert self.writer is not None
        resp = await self.d.settle(req, work)
        keep = await self.writer.write(req, resp, self._may_keep(req, False))
        if self._sent(req, resp, keep, False):
            self._next()

    def _may_keep(self, req: Request, unread: bool) -> bool:
        # an unread body still on the wire: the next request can't be found
        return req.keep_alive and not self.d.shutting_down and not unread

    def _sent(self, req: Request, resp: Response, keep: bool, unread: bool) -> bool:
        """Count a written response; False when the connection ends with it."""
        assert self.writer is not None
        self.d.done(req, resp.status, self._bytes_in, self.writer.bytes_out)
        self._bytes_in = 0
        if resp.upgrade is not None and resp.status == 101:
            self.active = False
            resp.upgrade(self.transport, self)
            return False
        if not keep:
            if unread:
                self._linger()
            else:
                self.transport.close()
            self.closed = True
            self.active = False
            return False
        return True

    def _next(self) -> None:
        """After a fast-path answer: the requests that queued behind it, or idle."""
        if self.pipeline and not self.closed:
            self._run_cycle()
        else:
            self._idle()

    def _run_cycle(self) -> None:
        if self._waiter is not None:
            self._wake_cycle()
        else:
            self.loop.create_task(self._cycle())

    def _idle(self) -> bool:
        self.active = False
        if self.closed:
            return False
        if self._refusal is not None:
            self.transport.write(self._refusal)
            self.transport.close()
            self.closed = True
            return False
        if self.d.shutting_down:
            self.transport.close()
            return False
        self._arm(self.cfg.header_timeout if self._parsing else self.cfg.idle_timeout)
        return True

    def _linger(self) -> None:
        """Close after answering while the client is still sending a body (a 413, a
        401 before the upload): half-close and discard what arrives for a moment, so
        the client reads our answer instead of a connection reset (nginx's
        lingering_close)."""
        self.tunnel = Discard(self.transport)
        if self.reading_paused:
            self.reading_paused = False
            self.transport.resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def _wake_cycle(self) -> None:
        w, self._waiter = self._waiter, None
        wake(w)

    def _on_upgrade(self, rest: bytes) -> None:
        """llhttp stopped at an Upgrade request; bytes after its head belong to the new
        protocol and wait in the request's ctx until the handler takes over."""
        if self.pipeline:
            req = self.pipeline[-1][0]
            req.ctx["upgrade_buffer"] = rest
            req.keep_alive = False  # refused (not 101): the stream can't carry more HTTP
        self.pause_reading()

    def pause_reading(self) -> None:
        if not self.reading_paused and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()
            if self._body is not None:
                self._disarm()  # we are not reading: the body deadline waits for resume

    def resume_reading(self) -> None:
        if self.reading_paused and not self.closed and self._refusal is None:
            self.reading_paused = False
            self.transport.resume_reading()
            if self._body is not None:  # the deadline it had: a pause does not extend it
                self.d.deadlines.arm(self, self._body_by)

    def hand_over(self, tunnel: Any) -> tuple[bool, bool]:
        """The WebSocket takeover (after the 101 is written): from now on the client's
        bytes, its flow control and the connection's end go to `tunnel` (`from_client`,
        `client_paused`/`client_resumed`, `client_lost`, `shutdown`), which drives the
        connection back only through `pause_reading`, `resume_reading` and `closed`.
        Returns whether writing to the client is paused and whether the gateway is
        shutting down."""
        self.tunnel = tunnel
        writer = self.writer
        return writer is not None and writer.paused, self.d.shutting_down

    def send_continue(self) -> None:
        if not self.closed:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def close_idle(self) -> bool:
        """For graceful shutdown: close now when nothing is in flight. A WebSocket gets
        its 1001 close frame now and goes once the close handshake is over."""
        if self.tunnel is not None:
            self.tunnel.shutdown()
            return False
        if not self.active and not self.pipeline and self.tunnel is None:
            if not self.closed:
                self.transport.close()
            return True
        return False
