"""A request body fed by the server protocol and read by a handler, with backpressure.

Chunks queue here until the handler reads them; past HIGH_WATER buffered bytes the
client connection stops being read, so a 100 MiB upload moves through in bounded
memory. The size limit is counted on the bytes that actually arrive, so a chunked body
cannot slip past `server.limits.max_body`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from wxgated.http.message import HTTPError
from wxgated.http.waiters import wake

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024


class RequestBody:
    """The server protocol's body feeder (wxgated.http.message.BodyFeeder)."""

    __slots__ = ("proto", "limit", "length", "expect_continue", "chunks_q", "buffered",
                 "received", "done", "error", "waiter", "started", "too_large")

    def __init__(self, proto: Any, limit: int, length: int | None,
                 expect_continue: bool) -> None:
        self.proto = proto
        self.limit = limit
        self.length = length
        self.expect_continue = expect_continue
        self.chunks_q: deque[bytes] = deque()
        self.buffered = 0
        self.received = 0
        self.done = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.started = False
        self.too_large = False

    # -- fed by the protocol --------------------------------------------------
    def feed(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.received > self.limit:
            self.too_large = True
            self.fail(HTTPError(413, "request body too large", reason="body_too_large"))
            return
        self.chunks_q.append(chunk)
        self.buffered += len(chunk)
        if self.buffered > HIGH_WATER and self.buffered > self.proto.cfg.request_buffer:
            self.proto.pause_reading()
        self._wake()

    def finish(self) -> None:
        self.done = True
        self._wake()

    def fail(self, exc: BaseException) -> None:
        if self.error is None and not self.done:
            self.error = exc
            self._wake()

    def _wake(self) -> None:
        w, self.waiter = self.waiter, None
        wake(w)

    # -- read by the handler ---------------------------------------------------
    def whole(self) -> bytes | None:
        if not self.done or self.started or self.error is not None:
            return None  # still arriving, already streaming, or failed
        if self.received > self.proto.cfg.request_buffer:
            return None  # larger than the buffer: it streams, however fast it came in
        self.started = True
        data = b"".join(self.chunks_q)
        self.chunks_q.clear()
        if self.buffered > HIGH_WATER:  # reading was paused for this body: it is read now
            self.proto.resume_reading()
        self.buffered = 0
        return data

    async def fill(self) -> None:
        """Wait, reading nothing, until the body is all in or `request_buffer` bytes of
        it are (the queue holds them: reading pauses only past the larger of that and
        HIGH_WATER). Raises the body's error."""
        limit = self.proto.cfg.request_buffer
        if self.expect_continue and not self.done:
            self.expect_continue = False  # the client waits for this before sending
            self.proto.send_continue()
        while self.error is None and not self.done and self.received < limit:
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        if self.error is not None:
            raise self.error

    async def chunks(self) -> AsyncIterator[bytes]:
        if self.started:
            raise RuntimeError("request body already consumed")
        self.started = True
        if self.expect_continue and not self.done:
            self.expect_continue = False
            self.proto.send_continue()
        q = self.chunks_q
        while True:
            if self.error is not None:
                raise self.error
            if q:
                chunk = q.popleft()
                self.buffered -= len(chunk)
                if self.buffered < LOW_WATER:
                    self.proto.resume_reading()
                yield chunk
            elif self.done:
                return
            else:
                self.waiter = asyncio.get_running_loop().create_future()
                await self.waiter
