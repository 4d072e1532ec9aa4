"""A small pipelined RESP2 client for the per-request Redis calls (single node only).

Hand-written because redis-py's asyncio client cost ≈ 260 µs of CPU per EVALSHA in the
bench (pool checkout, its own wait_for inside our timeout, command packing and RESP
parsing in layers of Python): more than the whole rest of a rate-limited request. Here
one connection carries every call in order (Redis answers in order), the calls of one
loop iteration go out in one write, each waits on one future, and replies are parsed
straight from the read buffer.

Scope: the calls made on the hot path (EVALSHA/EVAL for the rate limiter, GET for the
session check). Redis Cluster and TLS (`rediss://`) stay on redis-py. Every call is
bounded by `timeout` (one sweep per connection: within 1.25× of it); a timeout or a
broken connection fails every call in flight with StateError and the next call
reconnects (the stream can't be trusted after a lost reply).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any
from urllib.parse import unquote, urlsplit

from wxgated.state.base import StateError


class ReplyError(Exception):
    """Redis answered `-ERR ...` (e.g. NOSCRIPT): the connection stays usable."""


def encode(args: tuple[Any, ...]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class _Incomplete(Exception):
    pass


def parse(buf: bytes, pos: int) -> tuple[Any, int]:
    """One reply from `buf[pos:]`: (value, next pos); raises _Incomplete when short."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    kind = buf[pos:pos + 1]
    line = buf[pos + 1:end]
    pos = end + 2
    if kind == b":":
        return int(line), pos
    if kind == b"$":
        n = int(line)
        if n < 0:
            return None, pos
        if len(buf) < pos + n + 2:
            raise _Incomplete
        return buf[pos:pos + n], pos + n + 2
    if kind == b"*":
        n = int(line)
        if n < 0:
            return None, pos
        items = []
        for _ in range(n):
            item, pos = parse(buf, pos)
            items.append(item)
        return items, pos
    if kind == b"+":
        return line.decode(), pos
    if kind == b"-":
        return ReplyError(line.decode(errors="replace")), pos
    raise StateError(f"redis: unexpected reply type {kind!r}")


class _Conn(asyncio.Protocol):
    def __init__(self, timeout: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.timeout = timeout
        self.transport: Any = None
        self.pending: deque[tuple[asyncio.Future[Any], float]] = deque()  # (reply, deadline)
        self.buf = b""
        self.lost = False
        self.out: list[bytes] = []  # commands queued in this loop iteration
        self._sweep: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def call(self, command: bytes) -> asyncio.Future[Any]:
        """Queue a command; its reply comes in the future. The commands of one loop
        iteration go out in one write: under load one epoll wake-up starts many
        requests, and each used to cost a write syscall of its own (and Redis a read)."""
        fut = self.loop.create_future()
        self.pending.append((fut, self.loop.time() + self.timeout))
        if not self.out:
            self.loop.call_soon(self._flush)
        self.out.append(command)
        if self._sweep is None:
            self._sweep = self.loop.call_later(self.timeout / 4, self._check)
        return fut

    def _flush(self) -> None:
        out = self.out
        self.out = []
        if out and not self.lost:
            self.transport.write(b"".join(out))

    def _check(self) -> None:
        """The timeout of every call, from one timer per connection instead of one each:
        replies come in order, so only the oldest call can be the first one late. A
        call fails within 1.25 x `timeout`; the connection goes with it (a late reply
        would be taken for the next call's)."""
        self._sweep = None
        if not self.pending or self.lost:
            return
        if self.pending[0][1] <= self.loop.time():
            self.fail(StateError(f"redis did not answer within {self.timeout:g}s"))
            return
        self._sweep = self.loop.call_later(self.timeout / 4, self._check)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        pos = 0
        pending = self.pending
        try:
            while pos < len(buf):
                value, pos = parse(buf, pos)
                fut = pending.popleft()[0]
                if not fut.done():  # a caller that gave up (cancelled): reply dropped
                    if isinstance(value, ReplyError):
                        fut.set_exception(value)
                    else:
                        fut.set_result(value)
        except _Incomplete:
            pass
        except (StateError, ValueError, IndexError) as exc:
            self.fail(StateError(f"redis: bad reply stream: {exc}"))
            return
        self.buf = buf[pos:]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.fail(StateError("redis closed the connection"))

    def fail(self, exc: StateError) -> None:
        self.lost = True
        self.out.clear()
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        while self.pending:
            fut = self.pending.popleft()[0]
            if not fut.done():
                fut.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()


class RespClient:
    """Calls in order on one lazily (re)opened connection, each bounded by `timeout`."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 6379
        self.timeout = timeout
        self._hello: list[tuple[Any, ...]] = []
        if parts.password:
            user = unquote(parts.username) if parts.username else None
            auth = ("AUTH", user, unquote(parts.password)) if user else (
                "AUTH", unquote(parts.password))
            self._hello.append(auth)
        db = parts.path.lstrip("/")
        if db and db != "0":
            self._hello.append(("SELECT", db))
        self._conn: _Conn | None = None
        self._connecting: asyncio.Future[_Conn] | None = None

    async def _connection(self) -> _Conn:
        conn = self._conn
        if conn is not None and not conn.lost:
            return conn
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
        try:
            return await asyncio.shield(self._connecting)
        finally:
            if self._connecting is not None and self._connecting.done():
                self._connecting = None

    async def _open(self) -> _Conn:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(lambda: _Conn(self.timeout),
                                                   self.host, self.port)
        except OSError as exc:
            raise StateError(f"redis: connect {self.host}:{self.port}: {exc}") from None
        for cmd in self._hello:
            try:
                await conn.call(encode(cmd))
            except ReplyError as exc:
                conn.fail(StateError(f"redis: {cmd[0]} refused: {exc}"))
                raise StateError(f"redis: {cmd[0]} refused") from None
        self._conn = conn
        return conn

    async def call(self, *args: Any) -> Any:
        """One command; ReplyError for a Redis error reply, StateError for the rest
        (within `timeout`: the connection's sweep, or this timeout while connecting)."""
        conn = self._conn
        if conn is None or conn.lost:
            try:
                # wait_for, not asyncio.timeout: the request engine may run this before
                # its first wait outside any task (wxgated.gateway.engine)
                conn = await asyncio.wait_for(self._connection(), self.timeout)
            except TimeoutError:
                raise StateError(f"redis did not answer within {self.timeout:g}s") from None
        return await conn.call(encode(args))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.fail(StateError("redis client closed"))
            self._conn = None
