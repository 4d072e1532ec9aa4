"""One JSON POST from the gateway itself to a named upstream: the login hook, and the
verified phone/decrypt results sent on to a backend.

The call goes through `Upstream.fetch`, so the upstream's balancing, health checks,
breaker, retries, timeouts and metrics apply as for proxied traffic, and its header
lines pass `field_lines` (a control byte is refused, never written). A failure reaches
the client as one of two envelopes with the trace id: 503 with `Retry-After` when the
backend could not be reached in time (connect error, timeout, breaker open, no healthy
target: trying again later may work) and 502 when it answered something unusable.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from dataclasses import dataclass
from typing import Any

from wxgated.config.errors import SemanticError
from wxgated.config.units import DURATION_PATTERN, parse_duration
from wxgated.http.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from wxgated.http.headers import traceparent
from wxgated.http.message import Headers, HTTPError, Request

log = logging.getLogger("wxgated.wechat.backend")

DURATION: dict[str, Any] = {"type": ["string", "number"], "pattern": DURATION_PATTERN}
JSON_HEADERS: Headers = [(b"content-type", b"application/json"),
                         (b"accept", b"application/json")]
ANSWER_LIMIT = 1024 * 1024  # a bigger answer is no login hook's or phone backend's


class BadAnswer(Exception):
    """The backend answered, but not with what the gateway can use (→ 502)."""


@dataclass(frozen=True)
class BackendCall:
    upstream: Any  # wxgated.upstream.targets.Upstream (wechat/ imports nothing of upstream/)
    name: str  # the upstream's name, for messages and logs
    path: str
    timeout: float  # the whole call, retries included
    what: str  # "login hook" | "backend": how messages name it

    async def post(self, req: Request, doc: Any, headers: Headers) -> tuple[int, bytes]:
        """(status, body) of the backend's answer, or HTTPError 502/503."""
        body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        tid = req.trace_id
        try:
            async with asyncio.timeout(self.timeout):
                status, _, data = await self.upstream.fetch("POST", self.path,
                                                            JSON_HEADERS + headers, body,
                                                            self.timeout)
        except (TimeoutError, UpstreamTimeout):
            raise self.unreachable(tid, f"timed out after {self.timeout:g}s") from None
        except UpstreamUnavailable as exc:
            raise self.unreachable(tid, "no available target", str(exc),
                                   exc.retry_after) from None
        except UpstreamError as exc:
            if exc.reason == "connect_error":
                raise self.unreachable(tid, "cannot connect", str(exc)) from None
            raise self.bad(tid, "broken answer", str(exc)) from None
        except OSError as exc:
            raise self.unreachable(tid, "cannot connect", str(exc)) from None
        if len(data) > ANSWER_LIMIT:
            raise self.bad(tid, f"answer over {ANSWER_LIMIT} bytes")
        return status, data

    def unreachable(self, trace_id: str, why: str, detail: str = "",
                    retry_after: float = 1.0) -> HTTPError:
        """503: the client may try again. `detail` (addresses, errno text) is logged only."""
        log.warning("%s %s %s: %s%s (trace %s)", self.what, self.name, self.path, why,
                    f" ({detail})" if detail else "", trace_id)
        after = str(max(1, math.ceil(retry_after))).encode()
        return HTTPError(503, f"{self.what} unavailable: {why}",
                         headers=[(b"retry-after", after)])

    def bad(self, trace_id: str, why: str, detail: str = "") -> HTTPError:
        """502: the backend answered, and nothing the client does will change that."""
        log.warning("%s %s %s answered badly: %s%s (trace %s)", self.what, self.name,
                    self.path, why, f" ({detail})" if detail else "", trace_id)
        return HTTPError(502, f"{self.what} answered badly: {why}")


def parse_json(data: bytes) -> Any:
    """The answer as JSON (empty → None), or BadAnswer. NaN and Infinity are refused:
    Python reads them, but they are not JSON and would not survive into a token."""
    if not data:
        return None
    try:
        return json.loads(data, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise BadAnswer("not JSON") from None


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def compile_call(opts: dict[str, Any], ctx: Any, what: str,
                 at: tuple[str, ...] = ()) -> BackendCall:
    """A BackendCall from `{upstream, path, timeout}`; errors at their key (under `at`)."""
    name = opts["upstream"]
    upstream = ctx.upstreams.get(name)
    if upstream is None:
        raise SemanticError(f"unknown upstream {name!r}", (*at, "upstream"))
    if "timeout" in opts:
        try:
            timeout = parse_duration(opts["timeout"])
        except ValueError as exc:
            raise SemanticError(str(exc), (*at, "timeout")) from None
        if timeout <= 0:
            raise SemanticError("timeout must be above 0", (*at, "timeout"))
    else:
        timeout = float(upstream.read_timeout)
    return BackendCall(upstream, name, opts["path"], timeout, what)


def identity_headers(req: Request, openid: str, unionid: str | None,
                     phone: str | None) -> Headers:
    """What jwt_auth tells proxied routes about the caller, plus the trace. The values
    come from the verified token and the session; `field_lines` still checks them."""
    tid = req.trace_id
    headers: Headers = [(b"x-trace-id", tid.encode()), (b"traceparent", traceparent(tid)),
                        (b"x-wx-openid", openid.encode())]
    if unionid:
        headers.append((b"x-wx-unionid", unionid.encode()))
    if phone:
        headers.append((b"x-wx-phone", phone.encode()))
    if req.client_ip:
        headers.append((b"x-forwarded-for", req.client_ip.encode()))
    return headers
