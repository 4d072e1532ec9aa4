"""Forwarding one request to an upstream: pick a target, guard it, retry wisely.

The loop lives here, apart from the wire client, because it is where the policies
meet: the balancer's pick (skipping ejected targets and open breakers), the breaker's
admission and verdict, passive health, the retry policy with its budget and deadline,
and the per-target metrics. Every attempt is counted where it happened.
"""

from __future__ import annotations

import time
from typing import Any

from wxgated.http.message import Body, Request
from wxgated.upstream.breaker import classify, min_retry_after
from wxgated.upstream.errors import UpstreamError, UpstreamUnavailable
from wxgated.upstream.pool import Exchange, Target, Upstream, exchange_once

_NO_EXCLUDE: frozenset[Any] = frozenset()


async def forward(up: Upstream, req: Request | None, method: str, uri: bytes, lines: bytes,
                  keep_host: bytes, body: Body, read_timeout: float | None = None) -> Exchange:
    """Run the exchange, retrying per policy; raises UpstreamError when all tries fail."""
    retry = up.retry
    budget = up.budget
    if budget is not None:
        budget.record_request()
    replayable = body.empty or body.buffered is not None
    timeout = read_timeout if read_timeout is not None else up.read_timeout
    deadline = None
    if retry is not None:
        if retry.per_try_timeout:
            timeout = min(timeout, retry.per_try_timeout)
        if retry.deadline:
            deadline = time.monotonic() + retry.deadline
    tried: set[Target] | frozenset[Target] = _NO_EXCLUDE
    attempt = 1
    head_request = method == "HEAD"
    while True:
        target = admit(up, req, tried)
        host = keep_host or target.host_header
        head = (method.encode() + b" " + uri + b" HTTP/1.1\r\nhost: " + host + b"\r\n" + lines)
        start = time.monotonic()
        target.active += 1
        status: int | None = None
        error: UpstreamError | None = None
        outcome: int | str  # the status, or the error's reason: what the counter is keyed by
        try:
            try_timeout = timeout
            if deadline is not None:
                try_timeout = max(0.001, min(timeout, deadline - start))
            ex = await exchange_once(target, head, body, head_request, up.connect_timeout,
                                     try_timeout)
            status = outcome = ex.status
        except UpstreamError as exc:
            error = exc
            outcome = exc.reason
        except BaseException:
            if target.breaker is not None:
                target.breaker.cancel()  # no verdict (client gone, body too large)
            raise
        finally:
            target.active -= 1
        elapsed = time.monotonic() - start
        up.duration.observe(elapsed)
        if req is not None:
            req.upstream = up.name
            req.target = target.key
            req.upstream_ms = elapsed * 1000.0
        record_verdict(target, status, error, start + elapsed)
        target.count(outcome)
        if retry is None or not retry.should_retry(method, attempt, status,
                                                   None if error is None else error.reason,
                                                   replayable or not body.consumed) \
                or (deadline is not None and time.monotonic() >= deadline) \
                or (budget is not None and not budget.try_spend()):
            if error is not None:
                raise error
            return ex
        if error is None:
            ex.conn.abort()  # a retried answer's body is not wanted
        tried = tried | {target}
        attempt += 1


def admit(up: Upstream, req: Request | None, tried: Any) -> Target:
    """A target whose breaker lets this request through."""
    now = time.monotonic()
    skipped: set[Target] = set()
    while True:
        target = up.balancer.pick(req, tried | skipped if skipped else tried)
        if target is None or target in skipped:
            breakers = [t.breaker for t in up.targets if t.breaker is not None]
            wait = min_retry_after(breakers, now) if breakers else 1.0
            raise UpstreamUnavailable(f"upstream {up.name} has no available target", wait)
        breaker = target.breaker
        if breaker is None or breaker.allow(now):
            return target
        skipped.add(target)


def record_verdict(target: Target, status: int | None, error: UpstreamError | None,
             now: float) -> None:
    breaker = target.breaker
    health = target.health
    if breaker is None and health is None:
        return
    failed = classify(status, None if error is None else error.reason,
                      target.failure_statuses, target.failure_errors)
    if breaker is not None:
        breaker.record(not failed, now)
    if health is not None:
        health.record_passive(not failed, now)
