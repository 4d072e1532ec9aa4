"""The public HTTP/1.1 server: an asyncio Protocol around httptools (llhttp).

Hand-written instead of aiohttp's server because this is the hot path: docs/PERFORMANCE.md
measured ~50 µs of CPU per proxied request on raw protocols against 355–440 µs with
aiohttp on both legs. Owning the protocol means owning its correctness: requests are
answered in order (pipelining), keep-alive follows the request and the response,
llhttp rejects smuggling shapes (CL+TE, duplicate CL, obs-fold, bad header names),
header and body sizes are limited on the wire, a head has `timeouts.header` and a whole
body `timeouts.body` from the end of its head (no chunk extends either), and reading
pauses when a body or a pipeline backs up.

A request goes to the dispatcher (`start`) at the end of its head, or, with a small
Content-Length body all in by the end of the read that brought its head (the usual
wx.request POST), when its message completes, so it goes upstream whole. Its answer
comes back through `answer` (http/cycle.py), now or later; no task per request.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import httptools

from wxgated.http.body import RequestBody
from wxgated.http.cycle import Cycle
from wxgated.http.deadlines import Timed
from wxgated.http.flowcontrol import FlowControl
from wxgated.http.framing import (
    TOO_LARGE,
    Discard,
    Refused,
    fields_size,
    head_fields,
    origin_form,
    refusal_of,
)
from wxgated.http.message import NO_BODY, Body, HTTPError, Request
from wxgated.http.serving import Dispatcher
from wxgated.http.target import request_target
from wxgated.http.writer import ResponseWriter, simple_response
from wxgated.observe.trace import new_trace_id

MAX_PIPELINE = 16  # queued requests before we stop reading from the client
FAST_BODY = 64 * 1024  # a Content-Length body up to this is held until whole, then started
LINGER_SECONDS = 2.0  # how long an unread request body is drained after an early answer
_ZERO_BODY = Body.of(b"")  # an explicit Content-Length: 0, forwarded as such
# never appended to: on_header appends in a head only, after on_message_begin's fresh list
_HEAD_DONE: list[tuple[bytes, bytes]] = []


class GatewayProtocol(Timed):  # an asyncio Protocol by shape: uvloop calls its methods
    def __init__(self, dispatcher: Dispatcher) -> None:
        self.d = dispatcher
        self.cfg = dispatcher.cfg
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: Any = None
        self.peer_ip = ""
        self.flow: FlowControl  # this and the writer: set in connection_made, which comes first
        self.writer: ResponseWriter
        self.cycle = Cycle(self)  # requests are answered one at a time: one serves all
        self.answer = self.cycle.answer  # the sink the gateway answers through
        # made when a request is queued: an empty deque is 760 bytes per idle connection
        self.pipeline: deque[tuple[Request, RequestBody | None]] | None = None
        self.active = False
        self.closed = False
        self.tunnel: Any = None  # set after a protocol upgrade (WebSocket)
        # per message being parsed
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: RequestBody | None = None
        self.bytes_in = 0  # of the request being answered, for the access log
        self.deadline = 0.0
        self.bucket = 0  # the Deadlines bucket we sit in
        self._body_by = 0.0  # the body deadline of the message being read (loop time)
        self._parsing = False
        self._head_timed = False
        self._in_head = False
        self._head_bytes = 0
        self._refusal: bytes | None = None  # a parse error's answer, due after the pipeline
        # a request with a small body, started once the body is in
        self._held: tuple[Request, RequestBody] | None = None

    # -- connection ---------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer_ip = peer[0] if peer else ""
        self.flow = FlowControl(transport)
        self.writer = ResponseWriter(transport, self.flow)
        conns = self.d.connections
        if self.cfg.max_connections and len(conns) >= self.cfg.max_connections:
            transport.write(simple_response(503, b"too many connections"))
            self.closed = True
            self.linger()  # let the client read the 503 before its request is dropped
            return
        conns.add(self)
        self._arm(self.cfg.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.d.connections.discard(self)
        self.d.deadlines.forget(self)
        self.flow.connection_lost()
        if self._body is not None:
            self._body.fail(ConnectionResetError("client disconnected"))
        for req, body in self.pipeline or ():  # never to be answered: no longer in flight
            self.d.abandon(req)
            if body is not None:
                body.fail(ConnectionResetError("client disconnected"))
        self.pipeline = None
        if self.tunnel is not None:
            self.tunnel.client_lost()

    def pause_writing(self) -> None:
        if self.tunnel is not None:
            self.tunnel.client_paused()
        else:
            self.flow.pause_writing()

    def resume_writing(self) -> None:
        if self.tunnel is not None:
            self.tunnel.client_resumed()
        else:
            self.flow.resume_writing()

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.from_client(data)
            return
        self.bytes_in += len(data)
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
            if self._held is not None:  # its body did not all come in this read: streamed
                req, body = self._held
                self._held = None
                self._start(req, body)

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
        headers = head_fields(self._headers, version, cfg.max_header - len(self._url),
                              cfg.allow_underscores)
        self._headers = _HEAD_DONE  # the Request has them; an idle connection keeps no head
        url = self._url
        if url[:1] != b"/":
            url, authority = origin_form(url)
            if authority is not None:  # the target's authority is the host
                headers = [h for h in headers if h[0] != b"host"]
                headers.append((b"host", authority))
        by_name = dict(headers)  # the last of each name, for the few read here
        sent, path, query, plain = request_target(url, cfg.path_rules)
        method = parser.get_method().decode()  # a method token: ASCII (utf-8 is the fast decode)
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
        if self.active or parser.should_upgrade():
            # pipelined: answered in turn; an upgrade: started by _on_upgrade, once the
            # bytes after its head are with it
            queue = self.pipeline = self.pipeline or deque()
            queue.append((req, body))
            if len(queue) > MAX_PIPELINE:
                self.pause_reading()
        elif body is not None and length is not None and length <= FAST_BODY \
                and not body.too_large and not body.expect_continue:
            # the usual wx.request POST, likely all in this read: started when its
            # message completes, so it goes upstream whole (see data_received)
            self.active = True
            self._held = (req, body)
        else:
            if body is None:
                self._parsing = False  # no body: this message is complete
            self._start(req, body)

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
            req.body.arrived()  # whole now: it can go upstream with its head
            self._start(req, body)

    # -- request cycles -----------------------------------------------------
    def _start(self, req: Request, body: RequestBody | None) -> None:
        """Hand a request to the gateway; its answer comes back through its cycle."""
        self.active = True
        self.cycle.body = body
        if body is not None and body.too_large:
            req.keep_alive = False
            self.answer(req, self.d.reject(req, 413, "request body too large",
                                           "body_too_large"))
        else:
            self.d.start(req, self.answer)

    def next(self) -> None:
        """After an answer: the request queued behind it, or idle."""
        if self.pipeline and not self.closed:
            if self.flow.read_paused and len(self.pipeline) <= MAX_PIPELINE // 2:
                self.resume_reading()
            self._start(*self.pipeline.popleft())
        else:
            self._idle()

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

    def linger(self) -> None:
        """Close after answering while the client is still sending a body (a 413, a
        401 before the upload): half-close and discard what arrives for a moment, so
        the client reads our answer instead of a connection reset (nginx's
        lingering_close)."""
        self.tunnel = Discard(self.transport)
        self.flow.resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def _on_upgrade(self, rest: bytes) -> None:
        """llhttp stopped at an Upgrade request; bytes after its head belong to the new
        protocol and wait in the request's ctx until the handler takes over."""
        if self.pipeline:
            req = self.pipeline[-1][0]
            req.ctx["upgrade_buffer"] = rest
            req.keep_alive = False  # refused (not 101): the stream can't carry more HTTP
        self.pause_reading()
        if not self.active:
            self.next()

    def pause_reading(self) -> None:
        if not self.closed and self.flow.pause_reading() and self._body is not None:
            self._disarm()  # we are not reading: the body deadline waits for resume

    def resume_reading(self) -> None:
        if not self.closed and self._refusal is None and self.flow.resume_reading() \
                and self._body is not None:  # the deadline it had: a pause does not extend it
            self.d.deadlines.arm(self, self._body_by)

    def hand_over(self, tunnel: Any) -> tuple[bool, bool]:
        """The WebSocket takeover (after the 101 is written): from now on the client's
        bytes, its flow control and the connection's end go to `tunnel` (`from_client`,
        `client_paused`/`client_resumed`, `client_lost`, `shutdown`), which drives the
        connection back only through `pause_reading`, `resume_reading` and `closed`.
        Returns whether writing to the client is paused and whether the gateway is
        shutting down."""
        self.tunnel = tunnel
        return self.flow.write_paused, self.d.shutting_down

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
