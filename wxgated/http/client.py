"""The upstream HTTP/1.1 client: keep-alive connections on asyncio Protocols + httptools.

Hand-written for the same reason as the server (docs/PERFORMANCE.md): aiohttp's
ClientSession spends most of a proxied request's CPU on machinery a gateway does not
need. One `UpstreamConnection` carries one exchange at a time (no upstream pipelining).
Small answers that arrive whole with their head are handed over as bytes, so the
common case is one read and one write; larger ones stream with backpressure.

Timeouts are swept by the pool's bucketed Deadlines rather than asyncio.wait_for, which
would cost a Task per request.

An exchange is awaited (`read_head`, `stream_body`) or, by the proxy terminal, watched by a
`listener` called once, from the protocol callbacks, when the head is in or the
exchange failed: no future, no task switch (wxgated.terminals.proxy).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import httptools

from wxgated.http.deadlines import Deadlines, Timed
from wxgated.http.errors import (
    UpstreamBroken,
    UpstreamConnectError,
    UpstreamError,
    UpstreamTimeout,
)
from wxgated.http.framing import fields_size
from wxgated.http.waiters import wake

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024
MAX_HEAD = 64 * 1024  # an answer head past this is a 502 (nginx's proxy_buffer_size is 4-8k)


def _close_delimited(headers: list[tuple[bytes, bytes]]) -> bool:
    """Does the close end this answer's body (RFC 9112 §6.3): no Content-Length and no
    Transfer-Encoding, or a Transfer-Encoding whose last coding is not chunked."""
    te = None
    length = False
    for name, value in headers:
        if name == b"content-length":
            length = True
        elif name == b"transfer-encoding":
            te = value  # the last one counts
    if te is None:
        return not length
    return te.rsplit(b",", 1)[-1].strip().lower() != b"chunked"


class UpstreamConnection(Timed):
    """One upstream connection (an asyncio protocol by shape: the loop calls its methods)."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: Any = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self._reset()
        self.deadline = 0.0
        self.bucket = 0  # the pool's Deadlines bucket
        self._timeout_value = 0.0
        self.write_paused = False
        self._drain: asyncio.Future[None] | None = None

    def _reset(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.complete = False
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.error: UpstreamError | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.listener: Callable[[UpstreamConnection], None] | None = None
        self.got_bytes = False
        self.head_bytes = 0
        self.head_request = False
        self.keep_alive = True
        self.reading_paused = False

    # -- asyncio.Protocol -------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.deadlines.forget(self)
        self.pool.forget(self)
        if (self.head_done and not self.complete and exc is None and self.error is None
                and _close_delimited(self.headers)):  # (a 204/304/HEAD answer is complete)
            self.complete = True  # a clean close is the end of this body
            self.keep_alive = False
        elif not self.complete and self.error is None:
            err = UpstreamConnectError if not self.got_bytes else UpstreamBroken
            self.error = err("upstream closed the connection" + (f": {exc}" if exc else ""))
        self._wake()
        self._wake_drain()

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        if self.complete:  # bytes after a complete answer: unusable connection
            self.keep_alive = False
            if self in self.pool.idle:  # already pooled (a HEAD answer with a body)
                self.abort()
            return
        if not self.head_done:  # at most this much head: checked once the head is in
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
            if not self.head_done and self.head_bytes > MAX_HEAD:
                raise httptools.HttpParserError(f"answer head over {MAX_HEAD} bytes")
        except httptools.HttpParserUpgrade:
            self.complete = True
            self.keep_alive = False
            self._wake()
        except httptools.HttpParserError as exc:
            self.error = UpstreamBroken(f"invalid response from upstream: {exc}")
            self.transport.abort()
            self._wake()
            return
        if self.head_done and self.head_request and not self.complete:
            # llhttp can't know a HEAD answer has no body; end it at the head. Some
            # upstreams send one anyway, maybe later: the connection is not reused.
            self.complete = True
            self.keep_alive = False
            self._wake()
        if not self.complete and self.deadline:  # a streamed body: time from its last byte
            self.pool.deadlines.arm(self, self.loop.time() + self._timeout_value)
        if self.listener is not None and self.head_done:
            self._tell()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_drain()

    # -- httptools callbacks ----------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.head_done:  # trailer fields of a chunked answer are not headers
            self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        if self.head_bytes > MAX_HEAD and fields_size(self.headers) > MAX_HEAD:
            raise ValueError(f"answer head over {MAX_HEAD} bytes")  # → 502 (parse error)
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self.headers = []  # an interim answer (100 Continue): wait for the real one
            return
        self.status = status
        self.head_done = True
        self.keep_alive = self.parser.should_keep_alive()
        if self.waiter is not None:
            self._wake()

    def on_body(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self.buffered += len(chunk)
        if self.buffered > HIGH_WATER and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()
            self._disarm()  # we stopped reading (a slow client): not the upstream's delay
        if self.waiter is not None:
            self._wake()

    def on_message_complete(self) -> None:
        if not self.head_done:
            return  # end of an interim 1xx answer
        self.complete = True
        if self.waiter is not None:
            self._wake()

    # -- helpers ----------------------------------------------------------------------
    def _wake(self) -> None:
        if self.listener is not None:
            self._tell()
            return
        w, self.waiter = self.waiter, None
        wake(w)

    def _tell(self) -> None:
        listener, self.listener = self.listener, None
        assert listener is not None
        listener(self)

    def _wake_drain(self) -> None:
        w, self._drain = self._drain, None
        wake(w)

    def _arm(self, seconds: float) -> None:
        self._timeout_value = seconds
        if seconds > 0:
            self.pool.deadlines.arm(self, self.loop.time() + seconds)
        elif self.deadline:  # no timeout now: a previous exchange's must not fire
            self.pool.deadlines.arm(self, 0.0)

    def _disarm(self) -> None:
        if self.deadline:
            self.pool.deadlines.arm(self, 0.0)

    def on_deadline(self) -> None:
        if self.error is None and not self.complete:
            self.error = UpstreamTimeout("upstream read timed out")
            self.transport.abort()
            self._wake()

    async def _wait(self) -> None:
        self.waiter = self.loop.create_future()
        await self.waiter

    # -- one exchange -------------------------------------------------------------------
    def begin(self, head_request: bool, read_timeout: float) -> None:
        self._reset()
        self.head_request = head_request
        self._arm(read_timeout)

    async def send_body(self, head: bytes, body: AsyncIterator[bytes], chunked: bool,
                        timeout: float) -> None:
        """Stream a request body; a client-side failure propagates unchanged. An
        upstream that stops reading it for `timeout` is a timeout (nginx's
        proxy_send_timeout); waiting for the client is not timed here."""
        transport = self.transport
        transport.write(head)
        async for chunk in body:
            if self.closed or self.error is not None:
                break
            if chunked:
                transport.writelines([b"%x\r\n" % len(chunk), chunk, b"\r\n"])
            else:
                transport.write(chunk)
            if self.write_paused:
                self._arm(timeout)
                while self.write_paused and not self.closed:
                    self._drain = self.loop.create_future()
                    await self._drain
                self._disarm()
        if chunked and not self.closed:
            transport.write(b"0\r\n\r\n")

    def expect_answer(self, timeout: float) -> None:
        """The request is sent: from now on the upstream has `timeout` to answer."""
        if not self.complete:
            self._arm(timeout)

    async def read_head(self) -> None:
        """Wait until the answer head is in (`status`, `headers`)."""
        while not self.head_done:
            if self.error is not None:
                raise self.error
            if self.closed:
                raise UpstreamConnectError("upstream closed the connection")
            self.waiter = self.loop.create_future()
            await self.waiter

    def take_body(self) -> bytes:
        """The whole body, when it arrived with the head (the common small answer)."""
        body = b"".join(self.chunks) if len(self.chunks) != 1 else self.chunks[0]
        self.chunks.clear()
        self.finish()
        return body

    async def stream_body(self) -> AsyncIterator[bytes]:
        """Yield body chunks as they arrive. Closing the generator early (client gone)
        discards the connection; a clean end returns it to the pool."""
        try:
            while True:
                if self.chunks:
                    chunk = self.chunks.popleft()
                    self.buffered -= len(chunk)
                    if self.reading_paused and self.buffered < LOW_WATER:
                        self.reading_paused = False
                        self.transport.resume_reading()
                        self._arm(self._timeout_value)
                    yield chunk
                elif self.error is not None:
                    raise self.error
                elif self.complete:
                    break
                elif self.closed:
                    raise UpstreamBroken("upstream closed the connection mid-body")
                else:
                    await self._wait()
        finally:
            if self.complete and not self.chunks:
                self.finish()
            else:
                self.abort()

    def finish(self) -> None:
        # no disarm: the deadline fires on a complete exchange as a no-op, and the next
        # begin() re-arms (mostly into the same bucket, which costs nothing)
        if self.keep_alive and not self.closed and self.error is None:
            self.pool.release(self)
        else:
            self.abort()

    def abort(self) -> None:
        self._disarm()
        if not self.closed:
            self.closed = True
            self.transport.abort()
        self.pool.forget(self)


class ConnectionPool:
    """Idle keep-alive connections to one target (host, port), most recent first."""

    def __init__(self, host: str, port: int, ssl_ctx: ssl.SSLContext | None = None,
                 server_hostname: str | None = None, max_idle: int = 64,
                 idle_timeout: float = 60.0) -> None:
        self.loop = asyncio.get_running_loop()
        self.host = host
        self.port = port
        self.ssl = ssl_ctx
        self.server_hostname = server_hostname
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self.idle: list[UpstreamConnection] = []
        self.closing = False
        self.deadlines = Deadlines(0.05)  # read timeouts of exchanges in flight

    def take_idle(self) -> UpstreamConnection | None:
        """A live idle keep-alive connection (it may still turn out stale), or None."""
        idle = self.idle
        if not idle:
            return None
        now = self.loop.time()
        while idle:
            conn = idle.pop()
            if conn.closed or now - conn.idle_since > self.idle_timeout:
                conn.abort()
                continue
            return conn
        return None

    async def connect(self, connect_timeout: float) -> UpstreamConnection:
        conn: UpstreamConnection = await self.open(lambda: UpstreamConnection(self),
                                                   connect_timeout)
        return conn

    async def open(self, factory: Callable[[], Any], timeout: float) -> Any:
        """A new connection to this target with `factory`'s protocol (TLS as configured;
        a protocol by shape, as the compiled ones subclass no asyncio class)."""
        try:
            async with asyncio.timeout(timeout):
                _, proto = await self.loop.create_connection(
                    factory, self.host, self.port, ssl=self.ssl,
                    server_hostname=self.server_hostname if self.ssl else None)
        except TimeoutError:
            raise UpstreamTimeout(f"connect to {self.host}:{self.port} timed out") from None
        except (OSError, ssl.SSLError) as exc:
            raise UpstreamConnectError(f"connect to {self.host}:{self.port}: {exc}") from None
        return proto

    def release(self, conn: UpstreamConnection) -> None:
        if self.closing or len(self.idle) >= self.max_idle:
            conn.abort()
            return
        conn.idle_since = self.loop.time()
        self.idle.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        if conn in self.idle:
            self.idle.remove(conn)

    def close(self) -> None:
        """Close idle connections now; busy ones close when their exchange ends."""
        self.closing = True
        for conn in list(self.idle):
            conn.abort()
        self.idle.clear()
