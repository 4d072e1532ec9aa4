"""Forwarding one request to an upstream: pick a target, guard it, retry wisely.

The loop lives here, apart from the wire client, because it is where the policies
meet: the balancer's pick (skipping ejected targets and open breakers), the breaker's
admission and verdict, passive health, the retry policy with its budget and deadline,
and the per-target metrics. Every attempt is counted where it happened.

The pieces (`timeouts`, `try_timeout`, `request_head`, `settle`, `retry_next`) are
shared with the proxy terminal (wxgated.terminals.proxy), which runs a first try
without a coroutine and hands a new connection or a retry back to `forward`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any, Protocol, TypeVar

from wxgated.http.errors import UpstreamError, UpstreamUnavailable
from wxgated.http.headers import check_request
from wxgated.http.message import Body, Request
from wxgated.observe import tracing
from wxgated.upstream.breaker import classify, min_retry_after
from wxgated.upstream.targets import Exchange, Target, Upstream, exchange_once

NO_EXCLUDE: frozenset[Any] = frozenset()
class _Answer(Protocol):
    status: int


T = TypeVar("T", bound=_Answer)


def timeouts(up: Upstream, read_timeout: float | None) -> tuple[float, float | None]:
    """Each try's read timeout, and the deadline all tries share (None: no deadline)."""
    timeout = read_timeout if read_timeout is not None else up.read_timeout
    retry = up.retry
    if retry is None:
        return timeout, None
    if retry.per_try_timeout:
        timeout = min(timeout, retry.per_try_timeout)
    return timeout, (time.monotonic() + retry.deadline if retry.deadline else None)


def try_timeout(timeout: float, deadline: float | None, now: float) -> float:
    """One try's timeout, cut to what the shared deadline leaves."""
    return timeout if deadline is None else max(0.001, min(timeout, deadline - now))


def request_head(method: str, uri: bytes, host: bytes, lines: bytes) -> bytes:
    """The request line, Host and the forwarded lines, without the blank line."""
    return b"".join((method.encode(), b" ", uri, b" HTTP/1.1\r\nhost: ", host, b"\r\n",
                     lines))


async def forward(up: Upstream, req: Request | None, method: str, uri: bytes, lines: bytes,
                  keep_host: bytes, body: Body, read_timeout: float | None = None, *,
                  target: Target | None = None, attempt: int = 1,
                  tried: frozenset[Target] = NO_EXCLUDE,
                  deadline: float | None = None) -> Exchange:
    """Run the exchange, retrying per policy; raises UpstreamError when all tries fail.

    `target` is an already admitted first target; `attempt`, `tried` and `deadline` say
    where a caller that made earlier tries itself left off (the proxy terminal).

    A head that could be read as more than one request is refused (HTTPError 400)
    before any try. A client body still arriving is read ahead first (`Body.fill`),
    before a target is admitted or a connection taken: a slow client holds only its
    own connection."""
    check_request(uri, lines)
    if body.buffered is None:
        await body.fill()
    if attempt == 1 and target is None and up.budget is not None:
        up.budget.record_request()
    replayable = body.empty or body.buffered is not None
    timeout, fresh_deadline = timeouts(up, read_timeout)
    if deadline is None:
        deadline = fresh_deadline
    head_request = method == "HEAD"
    tracer = tracing.tracer if req is not None else None
    while True:
        if target is None:
            target = admit(up, req, tried)
        if tracer is not None:  # each try's own span id in the upstream's traceparent
            lines = tracer.outgoing(req, lines)
        head = request_head(method, uri, keep_host or target.host_header, lines)
        ex, error = await accounted(up, req, target, exchange_once(
            target, head, body, head_request, up.connect_timeout,
            try_timeout(timeout, deadline, time.monotonic())))
        status = None if ex is None else ex.status
        if tracer is not None:
            tracer.tried(req, up.name, target.key, attempt, status, error)
        if not retry_next(up, method, attempt, status, error,
                          replayable or not body.consumed, deadline):
            if ex is None:
                assert error is not None
                raise error
            return ex
        if ex is not None:
            ex.conn.abort()  # a retried answer's body is not wanted
        tried = tried | {target}
        target = None
        attempt += 1


async def accounted(up: Upstream, req: Request | None, target: Target,
                    attempt: Awaitable[T]) -> tuple[T | None, UpstreamError | None]:
    """Await one try on `target` (its answer has a `.status`), with its accounting:
    the in-flight count, then `settle`; a try abandoned by the client (cancelled, a
    body too large) gives the breaker no verdict."""
    start = time.monotonic()
    target.active += 1
    try:
        result = await attempt
    except UpstreamError as exc:
        settle(up, req, target, None, exc, start)
        return None, exc
    except BaseException:
        target.active -= 1
        if target.breaker is not None:
            target.breaker.cancel()
        raise
    settle(up, req, target, result.status, None, start)
    return result, None


def settle(up: Upstream, req: Request | None, target: Target, status: int | None,
           error: UpstreamError | None, start: float) -> None:
    """Account for one finished try: duration, breaker and passive health, counters."""
    target.active -= 1
    now = time.monotonic()
    elapsed = now - start
    up.duration.observe(elapsed)
    if req is not None:
        req.upstream = up.name
        req.target = target.key
        req.upstream_ms = elapsed * 1000.0
    if target.breaker is not None or target.health is not None:
        record_verdict(target, status, error, now)
    target.count(status if error is None else error.reason)  # type: ignore[arg-type]


def retry_next(up: Upstream, method: str, attempt: int, status: int | None,
               error: UpstreamError | None, replayable: bool, deadline: float | None) -> bool:
    """After try `attempt` ended with `status` or `error`: is another try allowed?"""
    retry = up.retry
    if retry is None or not retry.should_retry(method, attempt, status,
                                               None if error is None else error.reason,
                                               replayable):
        return False
    if deadline is not None and time.monotonic() >= deadline:
        return False
    return up.budget is None or up.budget.try_spend()


def admit(up: Upstream, req: Request | None, tried: Any) -> Target:
    """A target whose breaker lets this request through."""
    now = time.monotonic()
    skipped: set[Target] = set()
    while True:
        target = up.balancer.pick(req, tried | skipped if skipped else tried)
        if target is None or target in skipped:
            raise _unavailable(up, bool(skipped), now)
        breaker = target.breaker
        if breaker is None or breaker.allow(now):
            return target
        skipped.add(target)


def _unavailable(up: Upstream, skipped: bool, now: float) -> UpstreamUnavailable:
    """No target to try: when the client may try again, and why (breakers open, or no
    healthy target)."""
    breakers = [t.breaker for t in up.targets if t.breaker is not None]
    wait = min_retry_after(breakers, now) if breakers else 1.0
    blocked = skipped or any(b.blocked(now) for b in breakers)
    return UpstreamUnavailable(f"upstream {up.name} has no available target", wait,
                               "breaker_open" if blocked else "no_healthy_target")


def record_verdict(target: Target, status: int | None, error: UpstreamError | None,
                   now: float) -> None:
    """A try's verdict for the target's breaker and passive health (`settle` calls it
    only when the target has either)."""
    breaker = target.breaker
    health = target.health
    failed = classify(status, None if error is None else error.reason,
                      target.failure_statuses, target.failure_errors)
    if breaker is not None:
        breaker.record(not failed, now)
    if health is not None:
        health.record_passive(not failed, now)
