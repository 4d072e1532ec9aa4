"""Why an upstream exchange failed (the wire client raises these; the proxy maps them to
502/503/504 and the retry policy to its reasons). Kept in http/, beside the client, so
the protocol layer imports nothing from upstream/."""

from __future__ import annotations

import math

from wxgated.http.message import HTTPError


class UpstreamError(Exception):
    reason = "error"  # the retry `on:` word this failure counts as
    status = 502
    log_reason = "upstream_error"  # the access log's word (docs/OPERATIONS.md)


class UpstreamConnectError(UpstreamError):
    """Refused, unreachable, or reset before a single response byte: nothing was
    processed upstream as far as we can tell."""

    reason = "connect_error"
    log_reason = "upstream_unreachable"


class UpstreamTimeout(UpstreamError):
    reason = "timeout"
    status = 504
    log_reason = "upstream_timeout"


class UpstreamBroken(UpstreamError):
    """A malformed answer, or the connection died mid-response."""

    reason = "broken"
    log_reason = "upstream_broken"


class UpstreamUnavailable(UpstreamError):
    """No target can take the request (all ejected or their breakers open)."""

    reason = "unavailable"
    status = 503

    def __init__(self, msg: str, retry_after: float = 1.0,
                 log_reason: str = "no_healthy_target") -> None:
        super().__init__(msg)
        self.retry_after = retry_after
        self.log_reason = log_reason  # "breaker_open" when breakers turned targets away


def to_http_error(exc: UpstreamError) -> HTTPError:
    """The gateway envelope for a failed exchange (502, 503 with Retry-After, 504)."""
    headers = []
    if isinstance(exc, UpstreamUnavailable):
        headers.append((b"retry-after", str(max(1, math.ceil(exc.retry_after))).encode()))
    return HTTPError(exc.status, str(exc), headers=headers, reason=exc.log_reason)
