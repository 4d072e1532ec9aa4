"""An upstream: its targets, how one is picked, and one exchange with it.

`Target`s (and their connection pools) are long-lived: the registry keeps them across
reloads keyed by (upstream name, target URL), so a reload that leaves a target alone
keeps its warm connections. The `Upstream` object itself is rebuilt per Snapshot.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from wxgated.http.client import ConnectionPool, UpstreamConnection
from wxgated.http.errors import UpstreamConnectError, UpstreamError
from wxgated.http.headers import field_lines
from wxgated.http.message import NO_BODY, Body
from wxgated.http.tls import client_context
from wxgated.observe.metrics import (
    UPSTREAM_DURATION,
    UPSTREAM_REQUESTS,
    local_counter,
    local_histogram,
)


@dataclass(frozen=True)
class TargetSpec:
    url: str
    weight: int = 1
    max_idle: int = 64
    idle_timeout: float = 60.0
    tls_verify: bool = True
    ca_file: str | None = None
    server_name: str | None = None  # SNI and the name the certificate must carry


class Target:
    """One backend address, with its pool and its counters."""

    def __init__(self, upstream: str, spec: TargetSpec) -> None:
        parts = urlsplit(spec.url)
        self.upstream = upstream
        self.key = spec.url
        self.weight = spec.weight
        self.tls = parts.scheme == "https"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.tls else 80)
        default_port = self.port == (443 if self.tls else 80)
        # the service's name when TLS names it (a discovered target is an address): the
        # same name in SNI and Host, as nginx's proxy_ssl_name and $proxy_host
        named = spec.server_name if self.tls and spec.server_name else self.host
        self.host_header = (named if default_port else f"{named}:{self.port}").encode()
        ssl_ctx = client_context(spec.tls_verify, spec.ca_file) if self.tls else None
        self.pool = ConnectionPool(self.host, self.port, ssl_ctx, spec.server_name or self.host,
                                   spec.max_idle, spec.idle_timeout)
        self.active = 0
        self.health: Any = None  # upstream.health.TargetHealth, when health checks are on
        self.breaker: Any = None  # upstream.breaker.CircuitBreaker, when configured
        self.failure_statuses: frozenset[int] = frozenset(range(500, 600))
        self.failure_errors: frozenset[str] | None = None  # None: every transport error
        self._status_children: dict[int | str, Any] = {}

    @property
    def available(self) -> bool:
        health = self.health
        breaker = self.breaker
        if health is None and breaker is None:
            return True
        now = time.monotonic()
        if health is not None and not health.healthy(now):
            return False
        return breaker is None or not breaker.blocked(now)

    def count(self, status: int | str) -> None:
        child = self._status_children.get(status)
        if child is None:
            child = local_counter(UPSTREAM_REQUESTS, self.upstream, self.key, str(status))
            self._status_children[status] = child
        child.n += 1

    def close(self) -> None:
        self.pool.close()


class Exchange:
    """The answer head of one exchange, with the connection still holding the body."""

    __slots__ = ("status", "headers", "conn", "target")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]],
                 conn: UpstreamConnection, target: Target) -> None:
        self.status = status
        self.headers = headers
        self.conn = conn
        self.target = target


async def exchange_once(target: Target, head: bytes, body: Body, head_request: bool,
                        connect_timeout: float, read_timeout: float) -> Exchange:
    """Send one request to one target and read the answer head.

    A reused keep-alive connection can turn out stale (the upstream closed it while it
    sat idle); when that happens before any answer byte and the body can be sent again,
    the request goes once more on a fresh connection, as nginx and browsers do.
    """
    pool = target.pool
    conn = pool.take_idle()
    reused = conn is not None
    if conn is None:
        conn = await pool.connect(connect_timeout)
    while True:
        data = body.arrived()
        # a streamed body: the read timeout starts once it is sent (the client's pauses
        # are the client body timeout's business, not the upstream's)
        conn.begin(head_request, read_timeout if data is not None else 0.0)
        try:
            if data is not None:
                conn.transport.write(with_body(head, body, data))
            else:
                await _send_stream(conn, head, body, read_timeout)
                conn.expect_answer(read_timeout)
            if not conn.head_done:
                await conn.read_head()
            if conn.error is not None:  # broken already, before any of it went out
                raise conn.error
            return Exchange(conn.status, conn.headers, conn, target)
        except UpstreamConnectError:
            conn.abort()
            replayable = body.length == 0 or body.buffered is not None
            if not (reused and not conn.got_bytes and replayable):
                raise
        except BaseException:
            conn.abort()
            raise
        reused = False
        conn = await pool.connect(connect_timeout)


def with_body(head: bytes, body: Body, data: bytes) -> bytes:
    """A request head (without its blank line) and its whole body `data`, ready to write:
    no framing stays none, anything else goes with its Content-Length."""
    if body.length is None and not data:
        return head + b"\r\n"
    return head + b"content-length: %d\r\n\r\n" % len(data) + data


async def _send_stream(conn: UpstreamConnection, head: bytes, body: Body,
                       timeout: float) -> None:
    if body.length is not None:
        await conn.send_body(head + b"content-length: %d\r\n\r\n" % body.length,
                             body.__aiter__(), False, timeout)
    else:
        await conn.send_body(head + b"transfer-encoding: chunked\r\n\r\n", body.__aiter__(),
                             True, timeout)


class Upstream:
    """One named upstream of a Snapshot."""

    def __init__(self, name: str, targets: list[Target], balancer: Any,
                 connect_timeout: float, read_timeout: float, retry: Any = None,
                 budget: Any = None, checker: Any = None) -> None:
        self.name = name
        self.targets = targets
        self.balancer = balancer
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.retry = retry  # upstream.retry.RetryPolicy or None
        self.budget = budget  # upstream.retry.RetryBudget or None
        self.checker = checker  # upstream.health.ActiveChecker, started by the serving Gateway
        self.duration = local_histogram(UPSTREAM_DURATION, name)
        self.rebalance: Callable[[list[Target]], Any] | None = None  # new balancer for targets
        self.watcher: Any = None  # discovery.base.Watcher, for discovered upstreams
        self.discovered: Any = None  # discovery.targets.DiscoveredTargets, likewise

    def set_targets(self, targets: list[Target]) -> None:
        """Discovery changed the target set: new list, new balancer (requests already
        past `pick` keep the target they hold)."""
        assert self.rebalance is not None
        self.balancer = self.rebalance(targets)
        self.targets = targets
        if self.checker is not None:
            self.checker.retarget(targets)

    async def fetch(self, method: str, path_and_query: str, headers: list[tuple[bytes, bytes]],
                    body: bytes, timeout: float) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """A whole buffered exchange, for aggregation and internal calls."""
        from wxgated.upstream.forward import forward

        lines = field_lines(headers)
        uri = path_and_query.encode("utf-8", "surrogateescape")  # forward checks it
        ex = await forward(self, None, method, uri, lines, b"",
                           Body.of(body) if body else NO_BODY, read_timeout=timeout)
        data = ex.conn.take_body() if ex.conn.complete else await _read_all(ex.conn)
        return ex.status, ex.headers, data


async def _read_all(conn: UpstreamConnection) -> bytes:
    parts = [chunk async for chunk in conn.stream_body()]
    return b"".join(parts)


__all__ = ["Exchange", "Target", "TargetSpec", "Upstream", "UpstreamError", "exchange_once",
           "with_body"]
